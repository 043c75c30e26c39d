"""Bad inputs a new user meets (issue 15): every one is refused with exit 2 and one line that names the
place (file:line, folder, option), without a traceback, and leaves nothing half-written (no new file,
folder, table or table version)."""

from __future__ import annotations

import functools
import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from airsearch.data.corpus import write_rows
from tests.helpers.cli import run
from tests.helpers.corpora import make_rows, table_with_vector_dim
from tests.helpers.files import tree_state
from tests.helpers.models import make_tiny_lm_examples


def _to_pickle(folder: Path, weights: str = "model.safetensors") -> Path:
    """Replace ``folder/weights`` by the same tensors as a pickle (``pytorch_model.bin``)."""
    tensors = load_file(folder / weights)
    (folder / weights).unlink()
    torch.save(tensors, folder / "pytorch_model.bin")
    return folder


def _with_auto_map(folder: Path) -> Path:
    """``folder`` whose config.json maps its model class to code shipped in the folder (remote code)."""
    config = next(p for p in [folder / "config.json", *folder.glob("*/config.json")] if p.exists())
    data = json.loads(config.read_text())
    data["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    config.write_text(json.dumps(data))
    (config.parent / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    return folder


DEEP_YAML = b"db: " + b"[" * 100_000 + b"]" * 100_000 + b"\n"
DEEP_JSON = b'{"db": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
ALIAS_BOMB = b"".join(  # 9 levels of 9 aliases: 9**9 values once expanded, 414 bytes on disk
    (f"{n}: &{n} [" + ", ".join([f"*{p}" if p else '"lol"'] * 9) + "]\n").encode()
    for p, n in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)


class Assets:
    """Inputs shared by the cases, each made on first use under ``root`` (outside the snapshot)."""

    def __init__(self, root: Path, encoder: Path, lm: Path) -> None:
        self.root, self.encoder, self.lm = root, encoder, lm

    def file(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.write_bytes(data)
        return path

    @functools.cached_property
    def corpus(self) -> Path:
        return write_rows(self.root / "train.jsonl", make_rows(12))

    @functools.cached_property
    def db(self) -> Path:
        run("index", self.corpus, "--db", self.root / "db", "--encoder", self.encoder)
        return self.root / "db"

    @functools.cached_property
    def dim10_db(self) -> Path:
        """A table whose schema records this encoder but whose vectors have 10 dimensions."""
        return table_with_vector_dim(self.db, self.root / "db10", 10)

    @functools.cached_property
    def pickle_encoder(self) -> Path:
        return _to_pickle(Path(shutil.copytree(self.encoder, self.root / "pickle_encoder")))

    @functools.cached_property
    def pickle_dense(self) -> Path:
        folder = Path(shutil.copytree(self.encoder, self.root / "pickle_dense"))
        _to_pickle(folder / "2_Dense")
        return folder

    @functools.cached_property
    def pickle_lm(self) -> Path:
        return _to_pickle(Path(shutil.copytree(self.lm, self.root / "pickle_lm")))

    def tiny_lm(self, name: str, **changes: int) -> Path:
        """An untrained tiny LM made like the target (same tokenizer) with ``changes`` to its config."""
        from airsearch.lm.tiny import TinyLMConfig, build_tiny_lm

        base = dict(vocab_size=400, hidden_size=32, layers=2, heads=2, intermediate_size=64, context=64)
        cfg = TinyLMConfig(**{**base, **changes}, steps=0, min_frequency=1, seed=0)
        return build_tiny_lm(make_tiny_lm_examples(), self.root / name, cfg, show_progress=False)

    @functools.cached_property
    def other_vocab_lm(self) -> Path:
        return self.tiny_lm("lm_vocab300", vocab_size=300)

    @functools.cached_property
    def other_arch_lm(self) -> Path:
        return self.tiny_lm("lm_hidden16", hidden_size=16, intermediate_size=32)

    @functools.cached_property
    def daunce_two_models(self) -> Path:
        from airsearch.trainers.daunce import run_daunce

        from airsearch.methods.daunce_run import DaunceConfig

        examples = make_tiny_lm_examples()[:8]
        cfg = DaunceConfig(models=2, steps=1, batch_size=2, lora_rank=2, max_length=64)
        run_daunce(str(self.lm), examples[:6], examples[6:], cfg, self.root / "daunce2", quiet=True)
        return self.root / "daunce2"

    @functools.cached_property
    def vectors_proj8(self) -> Path:
        """A train-vector store made with --proj-dim 8."""
        vec = self.root / "vectors"
        run(
            "attribute", "--method", "gradcos", "--lm", self.lm, "--corpus", self.lm_corpus, "--queries",
            self.lm_corpus, "--out", self.root / "attr8", "--vectors", vec, "--proj-dim", 8,
        )  # fmt: skip
        return vec

    @functools.cached_property
    def remote_code_encoder(self) -> Path:
        return _with_auto_map(Path(shutil.copytree(self.encoder, self.root / "remote_encoder")))

    @functools.cached_property
    def remote_code_lm(self) -> Path:
        return _with_auto_map(Path(shutil.copytree(self.lm, self.root / "remote_lm")))

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(exist_ok=True)
        return path

    @functools.cached_property
    def lm_corpus(self) -> Path:
        return write_rows(self.root / "lm_rows.jsonl", [e.to_row() for e in make_tiny_lm_examples()[:6]])


Case = Callable[[Assets, Path], list]
LATIN1 = '{"prompt": "caf\xe9", "response": "ok"}\n{"prompt": "cr\xe8me", "response": "br\xfbl\xe9e"}\n'
QUERY = ("query", "--prompt", "p", "--response", "r")


def _index(a: Assets, t: Path, corpus: Path, *extra: object) -> list:
    return ["index", corpus, "--db", t / "db", "--encoder", a.encoder, *extra]


CASES: list[tuple[str, Case, tuple[str, ...]]] = [
    # text input: binary, other encodings, broken gzip, lone surrogates
    ("binary-jsonl", lambda a, t: _index(a, t, a.file("binary.jsonl", bytes(range(256)) * 4)),
     ("binary.jsonl", "not a text file")),
    ("latin1-jsonl", lambda a, t: _index(a, t, a.file("latin1.jsonl", LATIN1.encode("latin-1"))),
     ("latin1.jsonl:1", "option '--encoding'", "not utf-8 text (byte 0xe9")),
    ("latin1-jsonl-every-row-skipped",
     lambda a, t: _index(a, t, a.file("latin1.jsonl", LATIN1.encode("latin-1")), "--skip-bad-rows"),
     ("latin1.jsonl", "all 2 rows were bad and skipped")),
    ("latin1-csv",
     lambda a, t: _index(a, t, a.file("latin1.csv", "prompt,response\ncaf\xe9,ok\n".encode("latin-1"))),
     ("latin1.csv:2", "not utf-8 text", "column 'prompt'")),
    ("latin1-json",
     lambda a, t: _index(a, t, a.file("latin1.json", '[{"prompt": "caf\xe9", "response": "o"}]'.encode("cp1252"))),
     ("latin1.json:1", "not utf-8 text")),
    ("utf16-without-encoding",
     lambda a, t: _index(a, t, a.file("utf16.jsonl", '{"prompt": "a", "response": "b"}\n'.encode("utf-16"))),
     ("utf16.jsonl", "UTF-16 text", "option '--encoding'")),
    ("unknown-encoding", lambda a, t: _index(a, t, a.corpus, "--encoding", "klingon"),
     ("option '--encoding'", "unknown text encoding 'klingon'")),
    ("broken-gzip", lambda a, t: _index(a, t, a.file("rows.jsonl.gz", gzip.compress(b'{"prompt": 1}\n')[:12])),
     ("rows.jsonl.gz", "not a readable gzip file")),
    ("unterminated-json-string", lambda a, t: _index(a, t, a.file("cut.jsonl", b'{"prompt": "abc')),
     ("cut.jsonl:1", "invalid JSON (Unterminated string starting at column 12)")),
    ("lone-surrogate",
     lambda a, t: _index(a, t, a.file("surrogate.jsonl", b'{"prompt": "x\\ud800", "response": "r"}\n')),
     ("surrogate.jsonl:1", "field 'prompt'", "lone surrogate")),
    # models: pickles are never loaded
    ("pickle-only-encoder", lambda a, t: ["index", a.corpus, "--db", t / "db", "--encoder", a.pickle_encoder],
     ("pickle_encoder", "only a pickle (pytorch_model.bin)", "weights_only=True")),
    ("pickle-only-dense-projection",
     lambda a, t: ["index", a.corpus, "--db", t / "db", "--encoder", a.pickle_dense],
     ("pickle_dense/2_Dense", "only a pickle")),
    ("pickle-only-lm",
     lambda a, t: ["attribute", "--method", "gradcos", "--lm", a.pickle_lm, "--corpus", a.lm_corpus,
                   "--queries", a.lm_corpus, "--out", t / "out"],
     ("pickle_lm", "only a pickle")),
    # vector dimensions, unique ids
    ("query-table-of-other-dim", lambda a, t: [*QUERY, "--db", a.dim10_db, "--encoder", a.encoder],
     ("db10/corpus", "option '--encoder'", "vectors have 10 dimensions but the encoder makes 32")),
    ("append-to-table-of-other-dim",
     lambda a, t: ["index", a.corpus, "--db", a.dim10_db, "--encoder", a.encoder, "--append"],
     ("db10/corpus", "vectors have 10 dimensions")),
    ("append-ids-already-there", lambda a, t: ["index", a.corpus, "--db", a.db, "--encoder", a.encoder, "--append"],
     ("option '--append'", "12 row id(s) are already in table 'corpus'", "'r0000', 'r0001'", "and 7 more")),
    ("append-and-upsert", lambda a, t: [*_index(a, t, a.corpus), "--append", "--upsert"],
     ("option '--upsert'", "append and upsert exclude each other")),
    ("upsert-without-table", lambda a, t: [*_index(a, t, a.corpus), "--upsert"],
     ("option '--upsert'", "no table named 'corpus'")),
    # gradient methods combine models of one family only
    ("dda-base-with-other-tokenizer",
     lambda a, t: [*QUERY, "--db", a.db, "--rerank", "dda", "--lm", a.lm, "--checkpoint", a.lm,
                   "--base-lm", a.other_vocab_lm],
     ("lm_vocab300", "option '--base-lm'", "tokenizer vocabulary (300 vs the target's")),
    ("dda-base-with-other-architecture",
     lambda a, t: [*QUERY, "--db", a.db, "--rerank", "dda", "--lm", a.lm, "--checkpoint", a.lm,
                   "--base-lm", a.other_arch_lm],
     ("lm_hidden16", "option '--base-lm'", "architecture field 'hidden_size' (16 vs the target's 32)")),
    ("tracin-checkpoints-of-two-vocabularies",
     lambda a, t: [*QUERY, "--db", a.db, "--rerank", "tracin", "--lm", a.lm, "--checkpoint",
                   a.other_vocab_lm, "--checkpoint", a.lm],
     ("lm_vocab300", "option '--checkpoint'", "tokenizer vocabulary")),
    ("daunce-correlation-of-two-models",
     lambda a, t: ["attribute", "--method", "daunce", "--daunce-run", a.daunce_two_models, "--corpus",
                   a.lm_corpus, "--queries", a.lm_corpus, "--out", t / "out"],
     ("option '--daunce-kind'", "always +1 or -1")),
    ("vector-store-of-other-settings",
     lambda a, t: ["attribute", "--method", "gradcos", "--lm", a.lm, "--corpus", a.lm_corpus, "--queries",
                   a.lm_corpus, "--out", t / "out", "--vectors", a.vectors_proj8],
     ("vectors/manifest.json", "stored vectors were made with")),
    # filters are one SQL expression
    ("query-where-statements", lambda a, t: [*QUERY, "--db", a.db, "--where", "task = 'a'; DROP TABLE corpus; --"],
     ("option '--where'", "';' (a statement separator) is not allowed")),
    ("query-where-comment", lambda a, t: [*QUERY, "--db", a.db, "--where", "task = 'alpha' -- AND n > 3"],
     ("option '--where'", "the SQL comment '--'")),
    ("select-where-statements",
     lambda a, t: ["select", "--db", a.db, "--targets", a.corpus, "-n", 2, "--out", t / "sel.jsonl",
                   "--where", "n > 1; DELETE FROM corpus"],
     ("option '--where'", "';'")),
    ("select-where-unknown-column",
     lambda a, t: ["select", "--db", a.db, "--targets", a.corpus, "-n", 2, "--out", t / "sel.jsonl",
                   "--where", "nosuch = 1"],
     ("option '--where'", "bad filter 'nosuch = 1'", "No field named nosuch")),
    ("delete-where-statements", lambda a, t: ["delete", "--db", a.db, "--where", "n > 1; --"],
     ("option '--where'", "';'")),
    # options: click's own errors are one line too; config files; folders in the way
    ("bad-choice", lambda a, t: [*_index(a, t, a.corpus), "--ann-type", "BOGUS"],
     ("Invalid value for '--ann-type'", "'BOGUS' is not one of", "index --help")),
    ("unknown-option", lambda a, t: [*_index(a, t, a.corpus), "--bogus"], ("No such option '--bogus'", "index --help")),
    ("missing-encoder-folder", lambda a, t: ["index", a.corpus, "--db", t / "db", "--encoder", t / "noenc"],
     ("noenc", "encoder folder not found")),
    ("config-file-not-yaml", lambda a, t: ["index", "--config", a.file("bad.yaml", b"db: [1, 2\n")],
     ("bad.yaml:", "cannot parse config: expected ',' or ']'")),
    ("select-out-under-a-file",
     lambda a, t: ["select", "--db", a.db, "--targets", a.corpus, "-n", 2, "--out", a.corpus / "sel.jsonl"],
     ("train.jsonl/sel.jsonl", "is a file, not a folder")),
    ("attribute-out-is-a-file",
     lambda a, t: ["attribute", "--method", "gradcos", "--lm", a.lm, "--corpus", a.lm_corpus, "--queries",
                   a.lm_corpus, "--out", a.corpus],
     ("option '--out'", "is a file, not a folder")),
    # files named by an option are reported as that option's
    ("missing-queries-file", lambda a, t: ["query", "--db", a.db, "--queries", t / "nope.jsonl"],
     ("nope.jsonl", "option '--queries'", "file not found")),
    # issue 27: empty filters, an output that is a folder, config limits and strict types
    ("query-where-empty", lambda a, t: [*QUERY, "--db", a.db, "--where", ""],
     ("option '--where'", "the filter is empty")),
    ("select-where-empty",
     lambda a, t: ["select", "--db", a.db, "--targets", a.corpus, "-n", 2, "--out", t / "s.jsonl", "--where", " "],
     ("option '--where'", "the filter is empty")),
    ("delete-where-empty", lambda a, t: ["delete", "--db", a.db, "--where", ""],
     ("option '--id'", "give row ids and/or a where filter")),
    ("select-out-is-a-folder",
     lambda a, t: ["select", "--db", a.db, "--targets", a.corpus, "-n", 2, "--out", a.folder("sel.jsonl")],
     ("sel.jsonl", "is a folder; give the path of a file")),
    ("config-nested-100000-deep-yaml", lambda a, t: ["index", "--config", a.file("deep.yaml", DEEP_YAML)],
     ("deep.yaml", "nested deeper than 32 levels")),
    ("config-nested-100000-deep-json", lambda a, t: ["index", "--config", a.file("deep.json", DEEP_JSON)],
     ("deep.json", "nested deeper than 32 levels")),
    ("config-yaml-alias-bomb", lambda a, t: ["index", "--config", a.file("bomb.yaml", ALIAS_BOMB)],
     ("bomb.yaml", "expands to more than 100,000 values (YAML aliases)")),
    ("config-yaml-self-alias", lambda a, t: ["index", "--config", a.file("self.yaml", b"db: &x [*x]\n")],
     ("self.yaml", "alias refers to the value that holds it")),
    ("config-over-1-mb", lambda a, t: ["index", "--config", a.file("big.yaml", b"# " + b"x" * 1_000_001)],
     ("big.yaml", "over 1,000,000 bytes")),
    ("config-is-a-folder", lambda a, t: ["index", "--config", a.folder("conf.yaml")],
     ("conf.yaml", "is a directory")),
    ("config-db-is-a-list",
     lambda a, t: ["index", "--config", a.file("dblist.yaml", f"db: [1, 2]\ncorpus: [{a.corpus}]\n".encode())],
     ("dblist.yaml", "option '--db'", "expected str, got [1, 2]")),
    ("config-batch-size-1.5",
     lambda a, t: ["index", "--config", a.file("bs.yaml", f"db: {t}/db\ncorpus: [{a.corpus}]\nbatch_size: 1.5\n".encode())],
     ("bs.yaml", "option '--batch-size'", "expected int, got 1.5")),
    ("config-bool-not-a-bool",
     lambda a, t: ["index", "--config", a.file("fts.yaml", f"db: {t}/db\ncorpus: [{a.corpus}]\nfts: maybe\n".encode())],
     ("fts.yaml", "option '--fts", "expected bool, got 'maybe'")),
    # model folders that would run their own code are refused (trust_remote_code is off)
    ("encoder-with-remote-code", lambda a, t: ["index", a.corpus, "--db", t / "db", "--encoder", a.remote_code_encoder],
     ("remote_encoder", "'auto_map'", "trust_remote_code is off")),
    ("lm-with-remote-code",
     lambda a, t: ["attribute", "--method", "gradcos", "--lm", a.remote_code_lm, "--corpus", a.lm_corpus,
                   "--queries", a.lm_corpus, "--out", t / "out"],
     ("remote_lm", "'auto_map'", "trust_remote_code is off")),
    # undo
    ("restore-without-a-version", lambda a, t: ["restore", "--db", a.db],
     ("option '--version'", "give --version N or --before-last")),
    ("restore-version-not-kept", lambda a, t: ["restore", "--db", a.db, "--version", 99],
     ("option '--version'", "version 99 is not kept; kept versions: 1-")),
    ("missing-targets-file",
     lambda a, t: ["select", "--db", a.db, "--targets", t / "none.jsonl", "-n", 2, "--out", t / "sel.jsonl"],
     ("none.jsonl", "option '--targets'", "file not found")),
]  # fmt: skip


@pytest.fixture(scope="module")
def assets(tmp_path_factory, tiny_encoder_dir, tiny_lm_dir) -> Assets:
    return Assets(tmp_path_factory.mktemp("bad_inputs"), tiny_encoder_dir, tiny_lm_dir)


@pytest.mark.parametrize(("make_argv", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(assets, tmp_path, make_argv, fragments):
    argv = make_argv(assets, tmp_path)  # inputs are made before the snapshot
    before = tree_state(tmp_path, assets.root)
    res = run(*argv, ok=False)
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output and res.exception.__class__ is SystemExit
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert " at at " not in lines[0] and ".rs:" not in lines[0]  # no stutter, no engine source lines
    assert tree_state(tmp_path, assets.root) == before  # no new file, folder, table or version
