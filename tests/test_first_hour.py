"""What a newcomer meets in the first hour (issue 15): unique ids and upserts, readers that follow new
versions, the real vector dimension, filterable mixed metadata, text encodings, models that agree,
defaults that fit the machine, a plan before long work, and texts that say what happened."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from airsearch.indexers.build import build_index
from airsearch.indexers.config import IndexConfig
from airsearch.indexers.query import Searcher
from airsearch.indexers.store import IndexStore, info
from airsearch.trainers.encoder_training.config import STEP_SIZES, TrainConfig

from airsearch.data.corpus import load_corpus, write_rows
from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder
from airsearch.errors import InputError
from airsearch.lm import load_lm
from tests.helpers.cli import run
from tests.helpers.corpora import make_rows, table_with_vector_dim, write_corpus

ROOT = Path(__file__).resolve().parents[1]


def _cfg(db: Path, corpus: Path, enc: Path, **kw) -> IndexConfig:
    return IndexConfig(corpus=[str(corpus)], db=str(db), encoder=str(enc), **kw)


def test_ids_are_unique_on_append_and_upsert_replaces_rows(tmp_path, tiny_encoder_dir):
    db = tmp_path / "db"
    rows = make_rows(10)
    build_index(_cfg(db, write_corpus(tmp_path / "a.jsonl", rows), tiny_encoder_dir))
    version = IndexStore(db).open().version
    again = write_corpus(tmp_path / "b.jsonl", [*make_rows(3, start=10), rows[4]])  # r0004 is there
    with pytest.raises(InputError, match=r"1 row id\(s\) are already in table 'corpus': 'r0004'") as err:
        build_index(_cfg(db, again, tiny_encoder_dir, append=True))
    assert err.value.field == "append"
    assert IndexStore(db).open().version == version  # nothing was added
    changed = [{**rows[4], "response": "a new answer"}, *make_rows(2, start=20)]
    s = build_index(_cfg(db, write_corpus(tmp_path / "c.jsonl", changed), tiny_encoder_dir, upsert=True))
    assert (s.mode, s.rows_added, s.rows_replaced, s.rows_total) == ("upsert", 3, 1, 12)
    table = IndexStore(db).open()
    stored = {e.id: e for e in table.take([r for ids, _, _ in table.iter_blocks() for r in ids])}
    assert len(stored) == 12 and stored["r0004"].response == "a new answer"
    assert stored["r0004"].metadata == {
        k: v for k, v in rows[4].items() if k not in ("id", "prompt", "response")
    }
    enc = AirRepEncoder.load(tiny_encoder_dir)
    (rid,) = [r for ids, _, batch in table.iter_blocks(columns=["id"]) for r, i in
              zip(ids, batch.column("id").to_pylist(), strict=True) if i == "r0004"]  # fmt: skip
    new = load_corpus(tmp_path / "c.jsonl").examples[0]
    np.testing.assert_allclose(table.take_vectors([rid])[0], enc.encode([new])[0], rtol=1e-4, atol=1e-5)
    assert len(table.meta.corpora) == 2  # the upserted corpus is recorded


def test_searcher_refresh_sees_new_versions(tmp_path, tiny_encoder_dir):
    db = tmp_path / "db"
    build_index(_cfg(db, write_corpus(tmp_path / "a.jsonl", make_rows(8)), tiny_encoder_dir))
    pinned = Searcher(str(db), encoder=str(tiny_encoder_dir))
    following = Searcher(str(db), encoder=str(tiny_encoder_dir), auto_refresh=True)
    query = Example("q", "the cat", "sat")
    assert not pinned.refresh()  # nothing new yet
    build_index(
        _cfg(db, write_corpus(tmp_path / "b.jsonl", make_rows(4, start=8)), tiny_encoder_dir, append=True)
    )
    assert len(pinned.search(query, k=50)[0].proponents) == 8  # the version it opened
    assert len(following.search(query, k=50)[0].proponents) == 12  # follows on each search
    assert pinned.refresh() and len(pinned.search(query, k=50)[0].proponents) == 12


def test_info_reports_the_stored_vector_dimension(tmp_path, corpus_file, tiny_encoder_dir):
    build_index(_cfg(tmp_path / "db", corpus_file, tiny_encoder_dir))
    odd = table_with_vector_dim(tmp_path / "db", tmp_path / "db10", 10)
    (table,) = info(odd).tables
    assert table.dim == 10 and IndexStore(odd).open().meta.dim == 32  # what the vectors are, not the record
    assert "dim 10" in run("info", "--db", odd).stdout


def test_mixed_metadata_is_stored_filterable_and_read_back_typed(tmp_path, tiny_encoder_dir):
    rows = [
        {"id": "s", "prompt": "a", "response": "b", "level": "high"},
        {"id": "i", "prompt": "c", "response": "d", "level": 3},
        {"id": "l", "prompt": "e", "response": "f", "level": [1, 2]},
    ]
    db = tmp_path / "db"
    build_index(_cfg(db, write_corpus(tmp_path / "m.jsonl", rows), tiny_encoder_dir))
    table = IndexStore(db).open()
    assert table.meta.columns["level"] == "text"
    assert table.dataset.to_table(columns=["level"]).column("level").to_pylist() == ["high", "3", "[1, 2]"]
    assert [e.metadata["level"] for e in table.take([0, 1, 2])] == ["high", 3, [1, 2]]
    hits = Searcher(str(db)).search(Example("q", "a", "b"), k=3, where="level = 'high'")[0].proponents
    assert [c.id for c in hits] == ["s"]


def test_text_encodings_and_skipped_undecodable_rows(tmp_path, tiny_encoder_dir):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"id": "a", "prompt": "caf\xe9", "response": "cr\xe8me"}\n'.encode("latin-1"))
    s = build_index(_cfg(tmp_path / "db1", latin, tiny_encoder_dir, encoding="latin-1"))
    assert s.rows_added == 1 and IndexStore(tmp_path / "db1").open().take([0])[0].prompt == "café"
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(
        b'{"id": "ok1", "prompt": "a", "response": "b"}\n'
        + '{"id": "bad1", "prompt": "caf\xe9", "response": "b"}\n'.encode("latin-1")
        + b'{"id": "bad2", "prompt": "x\\ud800", "response": "b"}\n'
        + b'{"id": "ok2", "prompt": "c", "response": "d"}\n'
    )
    s = build_index(_cfg(tmp_path / "db2", mixed, tiny_encoder_dir, skip_bad_rows=True))
    assert (s.rows_added, s.skipped) == (2, 2)
    assert [(r.line, r.field) for r in s.skipped_rows] == [(2, "encoding"), (3, "prompt")]
    assert sum(s.skipped_reasons.values()) == 2 and any("lone surrogate" in r for r in s.skipped_reasons)


def test_gradient_methods_refuse_models_that_disagree(tmp_path, tiny_lm_dir, tiny_lm_examples):
    from airsearch.lm.tiny import TinyLMConfig, build_tiny_lm
    from airsearch.methods.dda import DDA
    from airsearch.methods.tracin import TracIn

    def variant(name: str, **changes: int):
        cfg = dict(vocab_size=400, hidden_size=32, layers=2, heads=2, intermediate_size=64, context=64)
        made = build_tiny_lm(tiny_lm_examples, tmp_path / name, TinyLMConfig(**{**cfg, **changes}, steps=0,
                             min_frequency=1), show_progress=False)  # fmt: skip
        return load_lm(made, device="cpu")

    target = load_lm(tiny_lm_dir, device="cpu")
    same_family = variant("untrained")  # same tokenizer and architecture, other weights: fine
    DDA([target], base=same_family, show_progress=False)
    with pytest.raises(InputError, match="tokenizer vocabulary") as err:
        DDA([target], base=variant("vocab", vocab_size=300), show_progress=False)
    assert err.value.field == "base_lm" and err.value.path.endswith("vocab")
    with pytest.raises(
        InputError, match="architecture field 'num_hidden_layers' \\(1 vs the target's 2\\)"
    ) as err:
        TracIn([variant("layers", layers=1), target], show_progress=False)
    assert err.value.field == "checkpoints"


def test_train_step_sizes_fit_the_device():
    cfg = TrainConfig(out="x")
    cpu, note = cfg.with_step_sizes("cpu")
    assert (cpu.subsets_per_step, cpu.dev_per_step) == STEP_SIZES["cpu"] == (8, 128)
    assert "a CPU" in note and "32 subsets x 1000 dev examples" in note
    gpu, note = cfg.with_step_sizes("cuda:0")
    assert (gpu.subsets_per_step, gpu.dev_per_step) == (32, 1000) and "a GPU" in note
    given, note = cfg.replace(subsets_per_step=4, dev_per_step=9, max_steps=50, eval_every=5).with_step_sizes(
        "cpu"
    )
    assert (given.subsets_per_step, given.dev_per_step, note) == (4, 9, "")
    half, note = cfg.replace(dev_per_step=9).with_step_sizes("cpu")
    assert (half.subsets_per_step, half.dev_per_step) == (8, 9) and "dev_per_step" not in note
    assert cpu.run_identity()["subsets_per_step"] == 8  # a resume compares the sizes actually used


def test_index_prints_a_plan_before_encoding(tmp_path, corpus_file, tiny_encoder_dir):
    from airsearch.cli.main import app
    from click.testing import CliRunner

    res = CliRunner(env={"AIRSEARCH_QUIET": "0"}).invoke(
        app, ["index", str(corpus_file), "--db", str(tmp_path / "db"), "--encoder", str(tiny_encoder_dir)]
    )
    assert res.exit_code == 0, res.output
    plan = next(line for line in res.output.splitlines() if line.startswith("plan:"))
    assert f"plan: index ~60 rows of {corpus_file} -> table 'corpus' in {tmp_path / 'db'} (create)" in plan
    assert re.search(r"about \d+ s left, [\d,]+ rows/s \(warm-up on 60 rows\)", plan), plan
    assert res.output.index("plan:") < res.output.index("create: table 'corpus'")


def test_texts_say_what_happened(tmp_path, corpus_file, tiny_encoder_dir):
    from airsearch.cli.labels_cmd import _generate_text
    from airsearch.trainers.labels.generate import LabelSummary

    db = tmp_path / "db"
    run("index", corpus_file, "--db", db, "--encoder", tiny_encoder_dir)
    out = run("query", "--db", db, "--prompt", "the cat", "--response", "sat", "-k", 2).stdout
    assert "\nquery (ranked by AirRep, exact search)" in out and "query query" not in out
    assert "proponents (highest first; airrep: AirRep dot product" in out
    teacher = LabelSummary("o", "tracin", 16, 16, 0, 16, 1.5, None, "teacher", "c", "m")
    assert "no jobs run" not in _generate_text(teacher) and "one scoring pass" in _generate_text(teacher)
    nothing = LabelSummary("o", "retrain", 16, 16, 16, 0, 0.1, None, "local", "c", "m")
    assert "nothing to run: all 16 were already done" in _generate_text(nothing)
    trained = {"source": "/x/airrep", "base_encoder": "default:all-MiniLM-L6-v2", "trained": True}
    from airsearch.indexers.results import describe_encoder

    assert describe_encoder(trained) == "/x/airrep (trained AirRep)"
    assert describe_encoder({"source": "default", "base_encoder": "default:all-MiniLM-L6-v2"}).startswith(
        "default"
    )


def test_readme_scripts_with_workers_guard_their_entry_point():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs" / "usage").glob("*.md"))]
    blocks = [b for d in docs for b in re.findall(r"```python\n(.*?)```", d.read_text(), re.S)]
    with_workers = [b for b in blocks if re.search(r"workers=[2-9]", b)]
    assert with_workers and all('if __name__ == "__main__":' in b for b in with_workers)


def test_query_file_rows_are_titled_by_id(tmp_path, corpus_file, tiny_encoder_dir):
    db = tmp_path / "db"
    run("index", corpus_file, "--db", db, "--encoder", tiny_encoder_dir)
    queries = write_rows(tmp_path / "q.jsonl", [{"id": "q7", "prompt": "p", "response": "r"}])
    out = run("query", "--db", db, "--queries", queries, "-k", 1).stdout
    assert "\nquery 'q7' (ranked by AirRep, exact search)" in out
    assert (
        json.loads(run("query", "--db", db, "--queries", queries, "-k", 1, "--json").stdout)[0]["query"]["id"]
        == "q7"
    )
