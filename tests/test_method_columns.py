"""Method columns: an attribution method's row vectors as a vector column of the index table.

Exactness (column scores = ``airsearch attribute``'s brute-force scores), search over a column
(exact, ANN, --where, --group-by, opponents), rerank from stored vectors, appends / upserts / deletes
that keep every column aligned, and a killed column build that resumes to the same table."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lance
import numpy as np
import pytest
from safetensors.numpy import load_file

from airsearch.data.example import Example
from tests.helpers.cli import assert_one_line_error, run
from tests.helpers.corpora import write_corpus

QUERIES = [
    Example("q0", "What colour is the lemon?", "The lemon is gold."),
    Example("q1", "What colour is the river?", "The river is blue."),
    Example("q2", "Tell me about apples.", "Every apple on the tree turned red."),
]


def _rows(examples: list[Example]) -> list[dict]:
    """Rows with a metadata column (the thing asked about) for --where and --group-by."""
    out = []
    for e in examples:
        words = (e.prompt or e.response).rstrip("?.").split()
        out.append({**e.to_row(), "thing": words[-1] if e.prompt else "text"})
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_lm_examples, tiny_encoder_dir):
    """A 20-row table (with a ``thing`` column), its corpus file, a queries file and a spare db copy."""
    root = tmp_path_factory.mktemp("mcol")
    corpus = write_corpus(root / "corpus.jsonl", _rows(tiny_lm_examples[:20]))
    queries = write_corpus(root / "queries.jsonl", [q.to_row() for q in QUERIES])
    run("index", corpus, "--db", root / "db", "--encoder", tiny_encoder_dir)
    return {"root": root, "db": root / "db", "corpus": corpus, "queries": queries, "enc": tiny_encoder_dir}


@pytest.fixture
def db(base, tmp_path):
    """A fresh copy of the base table for a test that changes it."""
    shutil.copytree(base["db"], tmp_path / "db")
    return tmp_path / "db"


def _query_all(db, column, lm, queries, k=20, *extra):
    out = run(
        "query", "--db", db, "--method", column, "--lm", lm, "--queries", queries, "-k", k, "--json", *extra
    )
    return json.loads(out.stdout)


def _attribute(base, tmp_path, lm, method, opts):
    out = tmp_path / "attr"
    run(
        "attribute", "--corpus", base["corpus"], "--queries", base["queries"], "--out", out,
        "--method", method, "--lm", lm, "--full-matrix", "--k", 5, *opts,
    )  # fmt: skip
    ids = json.loads((out / "scores_ids.json").read_text())
    return load_file(str(out / "scores.safetensors"))["scores"].astype(np.float64), ids


SETTINGS = {
    "gradcos": ("gradcos", []),
    "tracin": ("tracin", []),
    "tracin-proj": ("tracin", ["--proj-dim", "512"]),
    "kfac": ("tracin", ["--params", "linear", "--precondition", "kfac"]),
    "ekfac-gradcos-proj": ("gradcos", ["--params", "linear", "--precondition", "ekfac", "--proj-dim", "256"]),
    "kfac-proj": ("tracin", ["--params", "linear", "--precondition", "kfac", "--proj-dim", "2048"]),
    "dda": ("dda", ["--checkpoint", "{ck}", "--base-lm", "{lm}"]),
    "haif": ("haif", []),
    "haif-t": ("haif-t", []),
    "repsim": ("repsim", []),
}


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, tiny_lm_dir, tiny_lm_examples):
    """One epoch of fine-tuning of the tiny LM (DDA's checkpoint; the tiny LM is its base)."""
    from airsearch.lm import load_lm
    from airsearch.lm.finetune import FinetuneConfig, finetune
    from airsearch.lm.model import save_lm

    root = tmp_path_factory.mktemp("ft")
    lm = finetune(
        load_lm(str(tiny_lm_dir), device="cpu"),
        tiny_lm_examples[30:38],
        FinetuneConfig(epochs=1, lr=5e-3, batch_size=4, max_length=32),
        show_progress=False,
    )
    return save_lm(lm, root / "ck")


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_column_scores_equal_attribute_brute_force(setting, base, db, tmp_path, tiny_lm_dir, request):
    method, opts = SETTINGS[setting]
    if "{ck}" in opts:
        ck = request.getfixturevalue("finetuned")
        opts = [o.format(ck=ck, lm=tiny_lm_dir) for o in opts]
    if "--precondition" in opts:  # both fit their factors on the same sample: the corpus
        opts = [*opts, "--factors-sample", base["corpus"]]
    made = json.loads(
        run("method-column", "--db", db, "--method", method, "--lm", tiny_lm_dir, *opts, "--json").stdout
    )
    column = made["column"]["column"]
    assert made["column"]["rows"] == 20 and made["resumed_rows"] == 0
    ref, ids = _attribute(base, tmp_path, tiny_lm_dir, method, opts)
    got = _query_all(db, column, tiny_lm_dir, base["queries"])
    # DDA is a difference of two cosines over 2 x 32k float32 coordinates: the rounding of both
    # (exact search sums in another order than attribute's matmul) shows at 3.6e-5 of the largest score
    tol = 5e-5 if method == "dda" else 1e-5
    for res in got:
        assert res["method"] == column and res["search"] == "exact"
        scores = {c["id"]: c["score"] for c in res["proponents"]}
        want = ref[:, ids["query_ids"].index(res["query"]["id"])]
        have = np.array([scores[i] for i in ids["train_ids"]])
        np.testing.assert_allclose(have, want, rtol=tol, atol=tol * np.abs(want).max())
        # exact search over the column is attribute's ranking (ties aside)
        order = np.argsort(-want, kind="stable")
        np.testing.assert_allclose(
            [c["score"] for c in res["proponents"]], want[order], rtol=tol, atol=tol * np.abs(want).max()
        )


def test_kfac_projection_keeps_the_correlation_of_grad_dot(tiny_lm_dir, tiny_lm_examples):
    """At 2,048 dims, projected K-FAC influence correlates with the unprojected influence within 0.02
    of what projected grad-dot keeps of unprojected grad-dot (both sides whitened before projecting;
    query-side-only inverse gave 0.67 against 0.999)."""
    from airsearch.data.synthetic import random_word_examples
    from airsearch.lm import load_lm
    from airsearch.methods.gradients import ParamSet
    from airsearch.methods.precondition import Precondition
    from airsearch.methods.projection import Projector
    from airsearch.methods.tracin import TracIn

    lm = load_lm(str(tiny_lm_dir), device="cpu")
    more = random_word_examples(110, seed=7)
    train, test = tiny_lm_examples[:40] + more[:100], tiny_lm_examples[40:50] + more[100:110]

    def scores(kind: str, dim: int | None) -> np.ndarray:
        pre = Precondition(kind, sample=train)
        m = TracIn(
            [lm],
            params=ParamSet.parse("linear"),
            projector=Projector(dim=dim),
            precondition=pre,
            show_progress=False,
        )
        return m.score(train, test).double().numpy()

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean([np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(a.shape[1])]))

    dot = corr(scores("none", 2048), scores("none", None))
    kfac = corr(scores("kfac", 2048), scores("kfac", None))
    assert dot > 0.98
    assert kfac >= dot - 0.02, (kfac, dot)


def _column(db, name):
    ds = lance.dataset(str(Path(db) / "corpus.lance"))
    t = ds.to_table(columns=["id", name])
    assert t.column(name).null_count == 0  # no row lacks a vector
    vecs = t.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return dict(zip(t.column("id").to_pylist(), vecs.reshape(t.num_rows, -1), strict=True))


def test_append_upsert_delete_keep_columns_aligned(db, base, tmp_path, tiny_lm_dir, tiny_lm_examples):
    from airsearch.lm import load_lm
    from airsearch.methods.tracin import TracIn

    run("method-column", "--db", db, "--method", "gradcos", "--lm", tiny_lm_dir)
    run(
        "method-column",
        "--db",
        db,
        "--method",
        "tracin",
        "--lm",
        tiny_lm_dir,
        "--proj-dim",
        "64",
        "--dtype",
        "float16",
    )
    new = tiny_lm_examples[20:25]
    more = write_corpus(tmp_path / "more.jsonl", _rows(new))
    enc = ["--encoder", base["enc"]]
    refused = run("index", more, "--db", db, "--append", *enc, ok=False)
    assert_one_line_error(refused, "method columns", "m_gradcos", "--lm")
    assert len(_column(db, "m_gradcos")) == 20  # nothing written

    run("index", more, "--db", db, "--append", "--lm", tiny_lm_dir, *enc)
    lm = load_lm(str(tiny_lm_dir), device="cpu")
    ref = TracIn([lm], normalize=True, show_progress=False).train_features(new).numpy()
    cols = _column(db, "m_gradcos")
    assert len(cols) == 25
    np.testing.assert_allclose(np.stack([cols[e.id] for e in new]), ref, rtol=1e-5, atol=1e-6)
    assert len(_column(db, "m_tracin")) == 25
    listed = json.loads(run("info", "--db", db, "--json").stdout)["tables"][0]["method_columns"]
    assert {c["rows"] for c in listed.values()} == {25}  # each column's record follows the table

    changed = Example(new[0].id, new[0].prompt, "The sky is blue today.", {"thing": "sky"})
    run(
        "index",
        write_corpus(tmp_path / "up.jsonl", [changed.to_row() | {"thing": "sky"}]),
        "--db",
        db,
        "--upsert",
        "--lm",
        tiny_lm_dir,
        *enc,
    )
    cols = _column(db, "m_gradcos")
    want = TracIn([lm], normalize=True, show_progress=False).train_features([changed]).numpy()[0]
    np.testing.assert_allclose(cols[changed.id], want, rtol=1e-5, atol=1e-6)
    assert len(cols) == 25

    run("delete", "--db", db, "--id", new[1].id, "--where", "thing = 'sky'", "--yes")
    for name in ("m_gradcos", "m_tracin"):
        left = _column(db, name)
        assert len(left) == 23 and new[1].id not in left and changed.id not in left
    table = json.loads(run("info", "--db", db, "--json").stdout)["tables"][0]
    info = table["method_columns"]
    assert set(info) == {"m_gradcos", "m_tracin"}
    assert {c["rows"] for c in info.values()} == {23}
    assert info["m_tracin"]["dtype"] == "float16" and info["m_tracin"]["dim"] == 64
    # the table fingerprint covers the columns: another column changes it
    run("method-column", "--db", db, "--method", "repsim", "--lm", tiny_lm_dir)
    again = json.loads(run("info", "--db", db, "--json").stdout)["tables"][0]
    assert again["fingerprint"] != table["fingerprint"] and "m_repsim" in again["method_columns"]


def test_search_column_where_group_by_opponents_and_ann(db, base, tiny_lm_dir):
    run("method-column", "--db", db, "--method", "gradcos", "--lm", tiny_lm_dir)
    (full,) = _query_all(db, "gradcos", tiny_lm_dir, base["queries"], 20)[:1]
    scores = {c["id"]: c["score"] for c in full["proponents"]}
    things = {c["id"]: c["metadata"].get("thing") for c in full["proponents"]}
    out = run(
        "query", "--db", db, "--method", "m_gradcos", "--lm", tiny_lm_dir, "--prompt", QUERIES[0].prompt,
        "--response", QUERIES[0].response, "-k", 3, "--where", "thing != 'lemon'", "--group-by", "thing",
        "--opponents", "--json",
    )  # fmt: skip
    (res,) = json.loads(out.stdout)
    kept = sorted(s for i, s in scores.items() if things[i] != "lemon")  # ties: compare scores
    assert all(c["metadata"]["thing"] != "lemon" for c in res["proponents"] + res["opponents"])
    np.testing.assert_allclose([c["score"] for c in res["proponents"]], kept[::-1][:3], rtol=1e-5)
    # opponents are the most negative rows only (issue 28): never a positive score
    negative = [s for s in kept if s < 0][:3]
    assert len(res["opponents"]) == len(negative)
    np.testing.assert_allclose([c["score"] for c in res["opponents"]], negative, rtol=1e-5)
    for g in res["groups"]:  # Eq. 7 over the method's scores of the group's rows
        s = np.array([scores[i] for i in scores if things[i] == g["group"]])
        w = np.exp(np.abs(s) - np.abs(s).max())
        np.testing.assert_allclose(g["score"], (w / w.sum() * s).sum(), rtol=1e-5)
    # an ANN index on the column: same best row, exact scores of what it returns
    run("method-column", "--db", db, "--method", "gradcos", "--lm", tiny_lm_dir, "--column", "m_gc_ann",
        "--ann-threshold", 1, "--ann-type", "IVF_FLAT")  # fmt: skip
    (ann,) = json.loads(run(
        "query", "--db", db, "--method", "m_gc_ann", "--lm", tiny_lm_dir, "--prompt", QUERIES[0].prompt,
        "--response", QUERIES[0].response, "-k", 3, "--json").stdout)  # fmt: skip
    assert ann["search"] == "ann"
    for c in ann["proponents"]:
        np.testing.assert_allclose(c["score"], scores[c["id"]], rtol=1e-5)


def test_rerank_reads_stored_vectors_with_the_same_scores(db, base, tiny_lm_dir):
    q = [
        "--prompt",
        QUERIES[0].prompt,
        "--response",
        QUERIES[0].response,
        "-k",
        4,
        "--candidates",
        8,
        "--json",
    ]
    (plain,) = json.loads(run("query", "--db", db, "--rerank", "gradcos", "--lm", tiny_lm_dir, *q).stdout)
    assert plain["reranked_by"] == "gradcos"
    run("method-column", "--db", db, "--method", "gradcos", "--lm", tiny_lm_dir)
    (stored,) = json.loads(run("query", "--db", db, "--rerank", "gradcos", "--lm", tiny_lm_dir, *q).stdout)
    assert stored["reranked_by"] == "gradcos (stored m_gradcos)"
    assert [c["id"] for c in stored["proponents"]] == [c["id"] for c in plain["proponents"]]
    np.testing.assert_allclose(
        [c["score"] for c in stored["proponents"]], [c["score"] for c in plain["proponents"]], rtol=1e-5
    )
    # other settings than the column's: recomputed
    (other,) = json.loads(run("query", "--db", db, "--rerank", "tracin", "--lm", tiny_lm_dir, *q).stdout)
    assert other["reranked_by"] == "tracin"


def test_refusals(db, tiny_lm_dir, tmp_path):
    run("method-column", "--db", db, "--method", "gradcos", "--lm", tiny_lm_dir)
    again = run("method-column", "--db", db, "--method", "gradcos", "--lm", tiny_lm_dir, ok=False)
    assert_one_line_error(again, "already has a column 'm_gradcos'", "--overwrite")
    missing = run(
        "query",
        "--db",
        db,
        "--method",
        "m_haif",
        "--lm",
        tiny_lm_dir,
        "--prompt",
        "a",
        "--response",
        "b",
        ok=False,
    )
    assert_one_line_error(missing, "no method column 'm_haif'", "m_gradcos")
    from tests.helpers.models import build_micro_lm

    other = build_micro_lm(tmp_path / "micro", steps=2)
    wrong = run(
        "query",
        "--db",
        db,
        "--method",
        "m_gradcos",
        "--lm",
        other,
        "--prompt",
        "a",
        "--response",
        "b",
        ok=False,
    )
    assert_one_line_error(wrong, "column 'm_gradcos'", "give the LM the column was built with", code=None)
    # the same LM in another folder makes the same vectors: accepted, with the same scores
    moved = shutil.copytree(tiny_lm_dir, tmp_path / "moved_lm")
    ask = ["--method", "m_gradcos", "--prompt", "a", "--response", "b", "--json"]
    (here,) = json.loads(run("query", "--db", db, "--lm", tiny_lm_dir, *ask).stdout)
    (there,) = json.loads(run("query", "--db", db, "--lm", moved, *ask).stdout)
    assert [(c["id"], c["score"]) for c in there["proponents"]] == [
        (c["id"], c["score"]) for c in here["proponents"]
    ]


def test_killed_column_build_resumes_to_the_same_table(base, tmp_path, tiny_lm_dir):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    shutil.copytree(base["db"], whole)
    shutil.copytree(base["db"], killed)
    args = ["method-column", "--method", "haif", "--lm", str(tiny_lm_dir), "--chunk-size", "2", "--json"]
    cli = [sys.executable, "-m", "airsearch.cli.main"]
    proc = subprocess.Popen(
        [*cli, *args, "--db", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    side, deadline = killed / "_columns", time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        parts = list(side.glob("*.lance")) if side.is_dir() else []
        if parts and (parts[0] / "_versions").is_dir() and len(list((parts[0] / "_versions").iterdir())) >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    resumed = json.loads(run(*args, "--db", killed).stdout)
    assert 0 < resumed["resumed_rows"] < 20
    run(*args, "--db", whole)
    a, b = _column(whole, "m_haif"), _column(killed, "m_haif")
    assert a.keys() == b.keys()
    for i in a:  # the same chunks were computed; CPU kernels may round differently across processes
        np.testing.assert_allclose(a[i], b[i], rtol=1e-5, atol=1e-7)
    assert not list(side.glob("*.lance"))  # the side dataset is gone once merged


def test_query_rerank_options_reach_the_method_config():
    """Every MethodConfig field a command flattens into its flags reaches the method (one conversion,
    ``method_config_from``): ``query --rerank dda`` sets beta, debias and seed."""
    from airsearch.indexers.config import QueryConfig

    cfg = QueryConfig(
        db="x", prompt="a", response="b", rerank="dda", lm="L", beta=0.5, debias="eq9", seed=3, proj_dim=16
    )
    m = cfg.rerank_method()
    assert (m.method, m.lm, m.beta, m.debias, m.seed, m.proj_dim) == ("dda", "L", 0.5, "eq9", 3, 16)
    help_text = run("query", "--help").output
    assert all(flag in help_text for flag in ("--beta", "--debias", "--seed", "--method", "--lora-rank"))


def test_teacher_reads_a_matching_column(tmp_path, tiny_lm_dir, tiny_lm_examples, tiny_encoder_dir):
    """``labels generate --teacher gradcos --teacher-db DB`` reads the pool rows' vectors from the
    table's grad-cos column (same settings: --max-length 32) and writes the same labels."""
    from airsearch.trainers.labels.store import LabelStore

    from airsearch.jobfiles import read_result

    corpus = write_corpus(tmp_path / "corpus.jsonl", [e.to_row() for e in tiny_lm_examples[:24]])
    db = tmp_path / "db"
    run("index", corpus, "--db", db, "--encoder", tiny_encoder_dir)
    run("method-column", "--db", db, "--method", "gradcos", "--lm", tiny_lm_dir, "--max-length", 32)
    sizes = ["--splits", 1, "--dev-size", 3, "--pool-size", 8, "--subset-size", 3, "--subsets-per-split", 2]
    common = [
        "labels",
        "generate",
        corpus,
        "--lm",
        tiny_lm_dir,
        *sizes,
        "--max-length",
        32,
        "--teacher",
        "gradcos",
    ]
    run(*common, "--out", tmp_path / "plain")
    run(*common, "--out", tmp_path / "stored", "--teacher-db", db)
    plain, stored = LabelStore.open(tmp_path / "plain"), LabelStore.open(tmp_path / "stored")
    jobs = plain.done_job_ids()
    assert jobs and jobs == stored.done_job_ids()
    for j in jobs:
        a, b = read_result(plain.results_dir, j), read_result(stored.results_dir, j)
        np.testing.assert_allclose(b["losses"], a["losses"], rtol=1e-5, atol=1e-6)
    # the teacher's method reads the stored rows (and computes a row the table does not hold)
    from airsearch.indexers.method_search import StoredRows, stored_rows

    from airsearch.methods.registry import MethodConfig

    method = stored_rows(str(db), MethodConfig(method="gradcos", lm=str(tiny_lm_dir), max_length=32), None)
    assert isinstance(method, StoredRows)
    rows = method.train_features([*tiny_lm_examples[:5], tiny_lm_examples[30]])
    assert (method.read, method.computed) == (5, 1) and rows.shape[0] == 6


def test_api_searches_a_column_and_reranks_from_it(db, tiny_lm_dir, tiny_encoder_dir):
    """``POST /api/query`` with ``method`` searches the column (the CLI's scores); ``rerank`` reads it."""
    from airsearch.indexers.serve import ServeConfig, create_app
    from fastapi.testclient import TestClient

    from airsearch.encoder import AirRepEncoder

    run("method-column", "--db", db, "--method", "gradcos", "--lm", tiny_lm_dir)
    q = {"prompt": QUERIES[0].prompt, "response": QUERIES[0].response, "k": 3}
    (cli,) = json.loads(
        run("query", "--db", db, "--method", "m_gradcos", "--lm", tiny_lm_dir, "--prompt", q["prompt"],
            "--response", q["response"], "-k", 3, "--json").stdout
    )  # fmt: skip
    cfg = ServeConfig(db=str(db), token="t0ken-long", lm=str(tiny_lm_dir))
    auth = {"Authorization": "Bearer t0ken-long"}
    with TestClient(create_app(cfg, encoder=AirRepEncoder.load(tiny_encoder_dir))) as client:
        (listed,) = client.get("/api/info", headers=auth).json()["method_columns"]  # what the page offers
        assert (listed["column"], listed["method"], listed["dtype"], listed["rows"]) == (
            "m_gradcos", "gradcos", "float32", 20
        )  # fmt: skip
        r = client.post("/api/query", json={**q, "method": "m_gradcos"}, headers=auth)
        assert r.status_code == 200, r.text
        (res,) = r.json()["results"]
        assert res["method"] == "m_gradcos"
        np.testing.assert_allclose(
            [c["score"] for c in res["proponents"]], [c["score"] for c in cli["proponents"]], rtol=1e-5
        )
        r = client.post("/api/query", json={**q, "rerank": "gradcos", "candidates": 8}, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["reranked_by"] == "gradcos (stored m_gradcos)"
        bad = client.post("/api/query", json={**q, "method": "m_nope"}, headers=auth)
        assert bad.status_code in (400, 422) and "no method column" in bad.text
