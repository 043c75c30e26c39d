"""Fast commands (issue 28): encoders load without sentence-transformers, with the vectors and the
fingerprints that sentence-transformers gave; bad inputs are refused before any heavy import. (Times
are measured in ``benchmarks/bench_startup.py``, not asserted.)"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from airsearch.indexers.query import Searcher
from sentence_transformers import SentenceTransformer

from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder
from airsearch.fingerprint import fingerprint_json, fingerprint_state_dict
from tests.helpers.cli import run
from tests.helpers.corpora import make_rows, write_corpus

HEAVY = ("torch", "transformers", "sentence_transformers", "lancedb", "lance", "pyarrow", "datasets")

PROBE = """
import json, sys
from click.testing import CliRunner
from airsearch.cli.main import app
res = CliRunner().invoke(app, ARGV)
print(json.dumps({"code": res.exit_code, "out": res.output, "heavy": sorted(m for m in HEAVY if m in sys.modules)}))
"""


def _probe(argv: list[str]) -> dict:
    code = f"ARGV = {argv!r}\nHEAVY = {HEAVY!r}\n" + PROBE
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_vectors_and_fingerprint_equal_the_sentence_transformers_path(tiny_encoder_dir):
    enc = AirRepEncoder.load(tiny_encoder_dir, device="cpu")
    st = SentenceTransformer(str(tiny_encoder_dir), device="cpu")
    rows = [Example(str(i), f"prompt {i} " * (3 * i + 1), f"answer {i}") for i in range(6)]
    feats = enc.features(enc.input_ids(rows), "cpu")
    ref = st(dict(feats))["sentence_embedding"].detach().numpy()
    got = enc.encode(rows)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    # the fingerprint is the one sentence-transformers' weights gave, so existing indexes still open
    inputs = f"{enc.info.input_rule}|{enc.info.max_seq_length}|{enc.info.max_prompt_words}"
    legacy = fingerprint_json({"weights": fingerprint_state_dict(st.state_dict()), "inputs": inputs})
    assert (
        enc.fingerprint
        == legacy
        == json.loads((tiny_encoder_dir / "airsearch_encoder.json").read_text())["fingerprint"]
    )


def test_query_vector_equals_the_vector_stored_at_index_time(tiny_encoder_dir, tmp_path):
    rows = make_rows(8)
    db = tmp_path / "db"
    run("index", write_corpus(tmp_path / "c.jsonl", rows), "--db", db, "--encoder", tiny_encoder_dir)
    searcher = Searcher(str(db))
    stored = {}
    for _, vecs, batch in searcher.table.iter_blocks(columns=["id"]):
        stored.update(zip(batch.column("id").to_pylist(), vecs, strict=True))
    again = searcher.encode([Example(r["id"], r["prompt"], r["response"]) for r in rows])
    ref = np.stack([stored[r["id"]] for r in rows])
    np.testing.assert_allclose(again, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_query_does_not_import_sentence_transformers(tiny_encoder_dir, tmp_path):
    db = tmp_path / "db"
    run("index", write_corpus(tmp_path / "c.jsonl", make_rows(5)), "--db", db, "--encoder", tiny_encoder_dir)
    got = _probe(["query", "--db", str(db), "--prompt", "p", "--response", "r", "-k", "2", "--json"])
    assert got["code"] == 0, got["out"]
    assert "sentence_transformers" not in got["heavy"]  # nor torch: tests/test_fast_query.py


def test_bad_inputs_are_refused_before_any_heavy_import(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "p", "response": "r"}\n{"id": "b", "prompt": \n')
    (tmp_path / "db").mkdir()
    good = write_corpus(tmp_path / "good.jsonl", make_rows(2))
    cases = [
        (
            ["query", "--db", str(tmp_path / "nodb"), "--prompt", "p", "--response", "r"],
            "index directory not found",
        ),
        (["index", str(bad), "--db", str(tmp_path / "new")], "bad.jsonl:2"),
        (["query", "--db", str(tmp_path / "db"), "--queries", str(bad)], "bad.jsonl:2"),
        (
            [
                "select",
                "--db",
                str(tmp_path / "db"),
                "--targets",
                str(bad),
                "--out",
                str(tmp_path / "o.jsonl"),
                "-n",
                "1",
            ],
            "bad.jsonl:2",
        ),
        (["info", "--db", str(tmp_path / "nodb")], "index directory not found"),
        (
            ["delete", "--db", str(tmp_path / "db"), "--table", "nosuch", "--id", "a"],
            "no table named 'nosuch'",
        ),
        (
            ["index", str(good), "--db", str(tmp_path / "new"), "--encoder", str(tmp_path / "nofolder")],
            "not found",
        ),
    ]
    for argv, fragment in cases:
        got = _probe(argv)
        assert got["code"] == 2 and fragment in got["out"], (argv, got)
        assert got["heavy"] == [], (argv, got["heavy"])
    assert not (tmp_path / "new").exists()
