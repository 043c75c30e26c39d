"""The torch-free query path (issue 28): ``query`` and ``select`` encode with ONNX Runtime and
``tokenizers`` from a query export made once per encoder, search with numpy and Lance, and give the
vectors the torch encoder gives (to 1e-5 relative). Speed is measured in ``benchmarks/bench_startup.py``;
these tests check what is imported and what is computed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from airsearch.indexers.config import QueryConfig, SelectConfig
from airsearch.indexers.query import Searcher, query
from airsearch.indexers.select import select

from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder
from airsearch.query_encoder import META_FILE, QueryEncoder, export_dir
from tests.helpers.cli import run
from tests.helpers.corpora import make_rows, write_corpus

HEAVY = ("torch", "transformers", "sympy", "lancedb", "sentence_transformers")
# a cold command in a new process: its exit code, output and which heavy packages it imported
RUNNER = """
import json, sys
from click.testing import CliRunner
from airsearch.cli.main import app
res = CliRunner().invoke(app, ARGV)
print(json.dumps({"code": res.exit_code, "out": res.output, "heavy": sorted(m for m in HEAVY if m in sys.modules)}))
"""
ODD_ROWS = [
    Example("long", "tell me a long story " * 80, "once upon a time " * 150),
    Example("uni", "  Übersetze «naïve café» ", "naive cafe \n"),
    Example("short", "a", "ok"),
]


def _cold(argv: list[str], cache: Path) -> dict:
    code = f"ARGV = {argv!r}\nHEAVY = {HEAVY!r}\n" + RUNNER
    env = {**os.environ, "AIRSEARCH_CACHE": str(cache), "AIRSEARCH_QUIET": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.splitlines()[-1])


@pytest.fixture()
def fast_db(tiny_encoder_dir, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """An index of 12 rows (tiny encoder) built by the CLI with its own export cache: (db, cache)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("AIRSEARCH_CACHE", str(cache))
    db = tmp_path / "db"
    rows = make_rows(12) + [e.to_row() for e in ODD_ROWS]
    run("index", write_corpus(tmp_path / "c.jsonl", rows), "--db", db, "--encoder", tiny_encoder_dir)
    return db, cache


def test_index_writes_a_query_export_whose_vectors_equal_the_index_time_vectors(fast_db, tiny_encoder_dir):
    db, _ = fast_db
    enc = AirRepEncoder.load(tiny_encoder_dir, device="cpu")
    meta = json.loads((export_dir(enc.weights_fingerprint) / META_FILE).read_text())
    assert meta["usable"] is True and meta["fingerprint"] == enc.weights_fingerprint

    searcher = Searcher(str(db), fast=True)
    assert isinstance(searcher.encoder, QueryEncoder)  # no torch encoder was loaded
    stored = {}
    for _, vecs, batch in searcher.table.iter_blocks(columns=["id"]):
        stored.update(zip(batch.column("id").to_pylist(), vecs, strict=True))
    queries = [Example(r["id"], r["prompt"], r["response"]) for r in make_rows(12)] + ODD_ROWS
    assert searcher.encoder.input_ids(queries) == enc.input_ids(queries)  # the long row is cut alike
    got = searcher.encode(queries)
    ref = np.stack([stored[q.id] for q in queries])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("command", ["query", "select"])
def test_a_cold_query_or_select_imports_no_torch_and_answers_as_the_torch_path(
    fast_db, tmp_path, tiny_encoder_dir, command
):
    db, cache = fast_db
    targets = write_corpus(tmp_path / "t.jsonl", make_rows(3, start=50))
    out = tmp_path / "s.jsonl"
    if command == "query":
        argv = ["query", "--db", str(db), "--queries", str(targets), "-k", "4", "--opponents", "--json"]
    else:
        argv = ["select", "--db", str(db), "--targets", str(targets), "-n", "5", "--out", str(out), "--json"]
    fast = _cold(argv, cache)
    assert fast["code"] == 0, fast["out"]
    assert fast["heavy"] == [], fast["heavy"]  # no torch, transformers, sympy or LanceDB

    # the same command on the torch path (the encoder given: no query export is used)
    enc = AirRepEncoder.load(tiny_encoder_dir, device="cpu")
    if command == "query":
        slow = [
            r.to_dict(100)
            for r in query(QueryConfig(db=str(db), queries=str(targets), k=4, opponents=True), encoder=enc)
        ]
        for f, s in zip(json.loads(fast["out"]), slow, strict=True):
            assert {k: v for k, v in f.items() if k not in ("proponents", "opponents")} == {
                k: v for k, v in s.items() if k not in ("proponents", "opponents")
            }
            for side in ("proponents", "opponents"):
                assert [c["id"] for c in f[side]] == [c["id"] for c in s[side]]
                np.testing.assert_allclose(
                    [c["score"] for c in f[side]], [c["score"] for c in s[side]], rtol=1e-5, atol=1e-5
                )
    else:
        fast_rows = out.read_text()
        select(SelectConfig(db=str(db), targets=str(targets), n=5, out=str(out)), encoder=enc)
        assert [json.loads(r)["id"] for r in fast_rows.splitlines()] == [
            json.loads(r)["id"] for r in out.read_text().splitlines()
        ]


def test_a_changed_encoder_folder_an_unusable_export_or_cache_take_the_torch_path(
    fast_db, tiny_encoder_dir, tmp_path, monkeypatch
):
    db, cache = fast_db
    assert isinstance(Searcher(str(db), fast=True).encoder, QueryEncoder)
    assert isinstance(Searcher(str(db)).encoder, AirRepEncoder)  # not asked for (the server, explain)
    # the folder's files changed since its fingerprint was recorded: torch checks the weights again ...
    info = tiny_encoder_dir / "airsearch_encoder.json"
    os.utime(info, ns=(info.stat().st_atime_ns, info.stat().st_mtime_ns + 1_000_000))
    assert isinstance(Searcher(str(db), fast=True).encoder, AirRepEncoder)
    assert isinstance(Searcher(str(db), fast=True).encoder, QueryEncoder)  # ... and records it anew
    # an export found unusable when made is never used
    fingerprint = AirRepEncoder.load(tiny_encoder_dir, device="cpu").weights_fingerprint
    meta_file = export_dir(fingerprint) / META_FILE
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "usable": False}))
    assert isinstance(Searcher(str(db), fast=True).encoder, AirRepEncoder)
    meta_file.write_text(json.dumps(meta))
    # a cache that cannot be read or written: the torch path, and no error
    (tmp_path / "not_a_cache").write_text("")
    monkeypatch.setenv("AIRSEARCH_CACHE", str(tmp_path / "not_a_cache"))
    searcher = Searcher(str(db), fast=True)
    assert isinstance(searcher.encoder, AirRepEncoder) and searcher.search(Example("q", "p", "r"), 2)
