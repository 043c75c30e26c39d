"""`airsearch query --rerank M` end to end: AirRep top-N candidates rescored by a gradient method."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder
from airsearch.lm import load_lm
from airsearch.methods.tracin import TracIn
from tests.helpers.cli import assert_one_line_error, fill, run

QUERY = ("What colour is the lemon?", "The lemon is gold.")


def test_query_rerank_gradcos_orders_airrep_candidates_by_method_score(
    tiny_lm_db, tiny_lm_dir, tiny_lm_examples, tiny_encoder_dir
):
    n, k = 6, 4
    out = run(
        "query", "--db", tiny_lm_db, "--prompt", QUERY[0], "--response", QUERY[1], "-k", k,
        "--rerank", "gradcos", "--lm", tiny_lm_dir, "--candidates", n, "--json",
    )  # fmt: skip
    (res,) = json.loads(out.stdout)
    assert res["reranked_by"] == "gradcos"
    got = res["proponents"]
    assert len(got) == k
    assert all("score" in c and "retrieval_score" in c for c in got)
    assert res["score_kind"] == "gradcos" and res["ranked_by"].startswith("grad-cos")
    assert all(c["score_kind"] == "gradcos" and c["retrieval_kind"] == "airrep" for c in got)

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
        "query", "--db", tiny_lm_db, "--prompt", QUERY[0], "--response", QUERY[1], "-k", 2,
        "--rerank", "gradcos", "--lm", tiny_lm_dir, "--candidates", n,
    ).stdout  # fmt: skip
    assert "ranked by grad-cos, gradient cosine in [-1, 1], reranking the top candidates by AirRep" in human
    assert re.search(r"\d\. gradcos +[-+]\d\.\d{4} \(airrep [-+]\d", human), human


@pytest.mark.parametrize(
    ("options", "fragment", "code"),
    [
        pytest.param(("--rerank", "gradcos"), "--lm", 2, id="no-lm"),
        pytest.param(("--rerank", "tracin", "--lm", "{tmp}/nolm"), "nolm", None, id="missing-lm"),
        pytest.param(
            ("--rerank", "gradcos", "--lm", "{tmp}", "--candidates", 0),
            "--candidates",
            2,
            id="no-candidates",
        ),
        pytest.param(("--rerank", "daunce"), "--daunce-run", 2, id="daunce-without-run"),
    ],
)
def test_query_rerank_errors_are_one_line(tmp_path, tiny_lm_db, options, fragment, code):
    argv = ("query", "--db", tiny_lm_db, "--prompt", "p", "--response", "r", *options)
    assert_one_line_error(run(*fill(argv, tmp=tmp_path), ok=False), fragment, code=code)


def test_query_config_file_sets_the_rerank_options(tmp_path, tiny_lm_db, tiny_lm_dir):
    """The rerank options are QueryConfig fields: `query --config FILE` sets them (old spellings too)."""
    flags = ("--rerank", "gradcos", "--lm", tiny_lm_dir, "--candidates", 5, "-k", 3)
    expected = json.loads(
        run(
            "query", "--db", tiny_lm_db, "--prompt", QUERY[0], "--response", QUERY[1], *flags, "--json"
        ).stdout
    )
    assert expected[0]["reranked_by"] == "gradcos"
    cfg = {"db": str(tiny_lm_db), "prompt": QUERY[0], "response": QUERY[1], "k": 3}
    rerank = {"rerank": "gradcos", "lm": str(tiny_lm_dir), "candidates": 5}
    (tmp_path / "q.yaml").write_text(yaml.safe_dump({**cfg, **rerank}))
    got = run("query", "--config", tmp_path / "q.yaml", "--json")
    assert json.loads(got.stdout) == expected and "warning" not in got.stderr

    # a config saved with the old spelling of the LM field still works, with a warning
    (tmp_path / "old.yaml").write_text(yaml.safe_dump({**cfg, **rerank, "model": rerank["lm"], "lm": None}))
    clash = run("query", "--config", tmp_path / "old.yaml", ok=False)
    assert clash.exit_code == 2 and "both 'model'" in clash.output
    old = {**cfg, "rerank": "gradcos", "model": str(tiny_lm_dir), "candidates": 5}
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    got = run("query", "--config", tmp_path / "old.yaml", "--json")
    assert json.loads(got.stdout) == expected
    assert "warning:" in got.stderr and "'model' is now called 'lm'" in got.stderr
    # a flag overrides the file's value, the rest of the file still applies
    plain = json.loads(run("query", "--config", tmp_path / "q.yaml", "--candidates", 7, "--json").stdout)
    assert plain[0]["reranked_by"] == "gradcos" and len(plain[0]["proponents"]) == 3

    # the Python API takes the same config
    from airsearch.indexers.config import QueryConfig
    from airsearch.indexers.query import query

    (res,) = query(QueryConfig.from_dict({**cfg, **rerank}))
    assert [c.id for c in res.proponents] == [c["id"] for c in expected[0]["proponents"]]
    assert res.reranked_by == "gradcos" and all(c.retrieval_score is not None for c in res.proponents)
