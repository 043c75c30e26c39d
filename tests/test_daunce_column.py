"""A Daunce method column: built from a finished white-box run, searched exactly, against a plain slow
reference (Pearson correlation of two K-model loss profiles, one pair at a time).

Daunce's score (Daunce Eq. 6) is the correlation across the K perturbed models of a train row's loss and
the query's loss. With each profile standardised (z-scores, ``ddof=1``) the correlation is a dot
product divided by K - 1, so the row side can be stored as a vector column: the column holds
``z / sqrt(K - 1)`` (the unit-normalised centred profile) and a search is one dot product per row."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from airsearch.trainers.daunce import DaunceConfig, run_daunce

from airsearch.data.example import Example
from tests.helpers.cli import run
from tests.helpers.corpora import write_corpus

QUERIES = [
    Example("q0", "What colour is the lemon?", "The lemon is gold."),
    Example("q1", "What colour is the river?", "The river is blue."),
]
K = 4


@pytest.fixture(scope="module")
def daunce_table(tmp_path_factory, tiny_lm_db, tiny_lm_dir, tiny_lm_examples):
    """A copy of the 20-row table, a white-box run over its rows (and the queries), the column."""
    root = tmp_path_factory.mktemp("daunce_column")
    db = root / "db"
    shutil.copytree(tiny_lm_db, db)
    rows = tiny_lm_examples[:20]
    cfg = DaunceConfig(
        models=K, ratio=0.5, steps=2, lr=5e-2, batch_size=4, lora_rank=2, max_length=64, seed=1
    )
    daunce = run_daunce(str(tiny_lm_dir), rows, QUERIES, cfg, root / "run", quiet=True)
    made = run("method-column", "--db", db, "--method", "daunce", "--daunce-run", root / "run", "--json")
    queries = write_corpus(root / "queries.jsonl", [q.to_row() for q in QUERIES])
    return {"db": db, "run": daunce, "rows": rows, "queries": queries, "made": json.loads(made.stdout)}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook correlation of two K-vectors, in plain Python."""
    k = len(a)
    ma, mb = sum(a) / k, sum(b) / k
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    return cov / (va * vb) ** 0.5


def test_daunce_column_holds_standardised_profiles_whose_dot_is_pearson(daunce_table):
    import lance

    made = daunce_table["made"]["column"]
    assert made["method"] == "daunce" and made["dim"] == K and made["rows"] == 20
    losses = daunce_table["run"].train_losses  # [K, n]: each row's loss under each perturbed model
    assert np.std(losses, axis=0).max() > 0  # the K models differ
    tbl = lance.dataset(str(daunce_table["db"] / "corpus.lance")).to_table(columns=["id", made["column"]])
    stored = {
        i: np.asarray(v, dtype=np.float64)
        for i, v in zip(tbl["id"].to_pylist(), tbl[made["column"]].to_pylist(), strict=True)
    }
    for j, row in enumerate(daunce_table["rows"]):
        z = (losses[:, j] - losses[:, j].mean()) / losses[:, j].std(ddof=1)
        np.testing.assert_allclose(stored[row.id], z / np.sqrt(K - 1), rtol=1e-5, atol=1e-6)
    a, b = losses[:, 0], losses[:, 1]
    za, zb = ((x - x.mean()) / x.std(ddof=1) for x in (a, b))
    assert abs(float(za @ zb) / (K - 1) - _pearson(a.tolist(), b.tolist())) < 1e-9  # Pearson = dot / (K-1)


def test_daunce_column_search_is_the_exact_top_k_of_pearson(daunce_table, tiny_lm_dir):
    out = run(
        "query", "--db", daunce_table["db"], "--method", "daunce", "--lm", tiny_lm_dir,
        "--queries", daunce_table["queries"],
        "-k", 5, "--exact", "--json",
    )  # fmt: skip
    results = json.loads(out.stdout)
    train, test = daunce_table["run"].train_losses, daunce_table["run"].test_losses
    ids = [r.id for r in daunce_table["rows"]]
    for q, res in enumerate(results):
        ref = np.array([_pearson(train[:, i].tolist(), test[:, q].tolist()) for i in range(len(ids))])
        order = np.argsort(-ref, kind="stable")[:5]
        got = res["proponents"]
        assert res["score_kind"] == "daunce"
        np.testing.assert_allclose([c["score"] for c in got], ref[order], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            [c["score"] for c in got], [ref[ids.index(c["id"])] for c in got], rtol=1e-5, atol=1e-6
        )
