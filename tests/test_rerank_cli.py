"""`airsearch query --rerank M` end to end: AirRep top-N candidates rescored by a gradient method."""

from __future__ import annotations

import json

import numpy as np
import pytest

from airsearch.data.corpus import write_rows
from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder
from airsearch.lm import load_lm
from airsearch.methods.tracin import TracIn
from tests.helpers.cli import assert_one_line_error, fill, run

QUERY = ("What colour is the lemon?", "The lemon is gold.")


@pytest.fixture(scope="module")
def db(tmp_path_factory, tiny_lm_examples, tiny_encoder_dir):
    """The first 20 tiny-LM examples indexed with the tiny AirRep."""
    root = tmp_path_factory.mktemp("rerank")
    corpus = write_rows(root / "corpus.jsonl", [e.to_row() for e in tiny_lm_examples[:20]])
    run("index", corpus, "--db", root / "db", "--encoder", tiny_encoder_dir, "--batch-size", "8")
    return root / "db"


def test_query_rerank_gradcos_orders_airrep_candidates_by_method_score(
    db, tiny_lm_dir, tiny_lm_examples, tiny_encoder_dir
):
    n, k = 6, 4
    out = run(
        "query", "--db", db, "--prompt", QUERY[0], "--response", QUERY[1], "-k", k,
        "--rerank", "gradcos", "--model", tiny_lm_dir, "--candidates", n, "--json",
    )  # fmt: skip
    (res,) = json.loads(out.stdout)
    assert res["reranked_by"] == "gradcos"
    got = res["proponents"]
    assert len(got) == k
    assert all("score" in c and "retrieval_score" in c for c in got)

    # the candidates are the AirRep top-N (plain dot products of the saved encoder)
    enc = AirRepEncoder.load(str(tiny_encoder_dir), device="cpu")
    rows = tiny_lm_examples[:20]
    query = Example("query", *QUERY)
    dots = enc.encode(rows, show_progress=False) @ enc.encode([query], show_progress=False)[0]
    top_n = np.argsort(-dots, kind="stable")[:n]
    cand = [rows[i] for i in top_n]
    for c in got:
        i = next(j for j, e in enumerate(rows) if e.id == c["id"])
        assert i in top_n
        np.testing.assert_allclose(c["retrieval_score"], dots[i], rtol=1e-4, atol=1e-5)

    # the final order is the candidates sorted by grad-cos computed directly (the plain reference)
    method = TracIn([load_lm(str(tiny_lm_dir), device="cpu")], normalize=True, show_progress=False)
    ref = method.score(cand, [query])[:, 0].double().numpy()
    order = np.argsort(-ref, kind="stable")[:k]
    assert [c["id"] for c in got] == [cand[i].id for i in order]
    np.testing.assert_allclose([c["score"] for c in got], ref[order], rtol=1e-4, atol=1e-6)

    human = run(
        "query", "--db", db, "--prompt", QUERY[0], "--response", QUERY[1], "-k", 2,
        "--rerank", "gradcos", "--model", tiny_lm_dir, "--candidates", n,
    ).stdout  # fmt: skip
    assert "reranked by gradcos" in human and "(retrieval " in human


@pytest.mark.parametrize(
    ("options", "fragment", "code"),
    [
        pytest.param(("--rerank", "gradcos"), "--model", 2, id="no-model"),
        pytest.param(("--rerank", "tracin", "--model", "{tmp}/nolm"), "nolm", None, id="missing-model"),
        pytest.param(
            ("--rerank", "gradcos", "--model", "{tmp}", "--candidates", 0),
            "--candidates",
            2,
            id="no-candidates",
        ),
        pytest.param(("--rerank", "daunce"), "--daunce-run", 2, id="daunce-without-run"),
    ],
)
def test_query_rerank_errors_are_one_line(tmp_path, db, options, fragment, code):
    argv = ("query", "--db", db, "--prompt", "p", "--response", "r", *options)
    assert_one_line_error(run(*fill(argv, tmp=tmp_path), ok=False), fragment, code=code)
