"""Hybrid retrieval: reciprocal rank fusion, the BM25 index built at index time, --mode on query."""

from __future__ import annotations

import json

import pytest
from airsearch.indexers.build import build_index
from airsearch.indexers.config import IndexConfig, QueryConfig
from airsearch.indexers.query import HYBRID_POOL, Searcher, query

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.fusion import reciprocal_rank_fusion
from tests.helpers.corpora import make_rows, write_corpus


def test_rrf_matches_hand_computation():
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k0=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 62) and fused["d"] == pytest.approx(1 / 63)
    order = [x for x, _ in reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]])]
    assert order == ["a", "c", "b", "d"]
    # a repeated item counts once, at its best rank; ties keep first appearance
    assert reciprocal_rank_fusion([["x", "x", "y"]], k0=0) == [("x", 1.0), ("y", 1 / 3)]
    assert [x for x, _ in reciprocal_rank_fusion([["p"], ["q"]])] == ["p", "q"]


def _rows() -> list[dict]:
    rows = make_rows(40)
    rows[7]["prompt"] = "[beta] the zebra crossed quietly"
    rows[23]["response"] = "zebra zebra"
    return rows


@pytest.fixture(scope="module")
def db(tmp_path_factory, tiny_encoder_dir):
    tmp = tmp_path_factory.mktemp("hybrid")
    corpus = write_corpus(tmp / "train.jsonl", _rows())
    build_index(IndexConfig(corpus=[str(corpus)], db=str(tmp / "db"), encoder=str(tiny_encoder_dir)))
    return tmp / "db"


def test_bm25_mode_finds_the_lexical_matches_and_applies_filters(db):
    searcher = Searcher(str(db))
    assert searcher.table.has_fts() and searcher.table.describe().fts
    q = Example("q", "where is the zebra", "zebra")
    (r,) = searcher.search(q, k=5, mode="bm25")
    assert r.mode == "bm25" and r.search == "full-text"
    assert {c.id for c in r.proponents[:2]} == {"r0007", "r0023"}
    assert all(a.score >= b.score > 0 for a, b in zip(r.proponents, r.proponents[1:], strict=False))
    (only_beta,) = searcher.search(q, k=5, mode="bm25", where="task = 'beta'")
    assert only_beta.proponents[0].id == "r0007"
    assert all(c.metadata["task"] == "beta" for c in only_beta.proponents)
    with pytest.raises(InputError, match="bad filter"):
        searcher.search(q, k=5, mode="bm25", where="nosuchcolumn = 1")


def test_hybrid_is_rrf_of_the_vector_and_bm25_rankings(db):
    searcher = Searcher(str(db))
    q = Example("q", "[alpha] the cat sat on a mat", "zebra dogs")
    vec = searcher.search(q, k=HYBRID_POOL, mode="vector")[0].proponents
    text = searcher.search(q, k=HYBRID_POOL, mode="bm25")[0].proponents
    expected = reciprocal_rank_fusion([[c.row_id for c in vec], [c.row_id for c in text]])[:6]
    (hyb,) = searcher.search(q, k=6, mode="hybrid", opponents=True, group_by="task")
    assert [c.row_id for c in hyb.proponents] == [r for r, _ in expected]
    assert [c.score for c in hyb.proponents] == pytest.approx([s for _, s in expected])
    assert hyb.opponents is not None and hyb.groups is not None  # AirRep's, in every mode
    assert hyb.to_dict()["mode"] == "hybrid"


def test_query_config_mode_and_old_tables_without_fts(db, tmp_path, tiny_encoder_dir):
    cfg = QueryConfig(db=str(db), prompt="the zebra", response="zebra", k=2, mode="bm25")
    assert {c.id for c in query(cfg)[0].proponents} == {"r0007", "r0023"}
    with pytest.raises(InputError, match="mode"):
        QueryConfig(db=str(db), prompt="a", response="b", mode="lexical").validate()
    corpus = write_corpus(tmp_path / "c.jsonl", make_rows(10))
    build_index(
        IndexConfig(
            corpus=[str(corpus)], db=str(tmp_path / "nofts"), encoder=str(tiny_encoder_dir), fts=False
        )
    )
    with pytest.raises(InputError, match="full-text index"):
        query(cfg.replace(db=str(tmp_path / "nofts"), mode="hybrid"))


def test_appended_rows_are_found_by_bm25(tmp_path, tiny_encoder_dir):
    a = write_corpus(tmp_path / "a.jsonl", make_rows(12))
    extra = [
        {"id": "new1", "prompt": "an okapi appears", "response": "okapi", "task": "alpha", "n": 0, "tags": []}
    ]
    b = tmp_path / "b.jsonl"
    b.write_text("".join(json.dumps(r) + "\n" for r in extra))
    cfg = IndexConfig(corpus=[str(a)], db=str(tmp_path / "db"), encoder=str(tiny_encoder_dir))
    build_index(cfg)
    build_index(IndexConfig(**{**cfg.to_dict(), "corpus": [str(b)], "append": True}))
    (r,) = Searcher(str(tmp_path / "db")).search(Example("q", "okapi", "okapi"), k=3, mode="bm25")
    assert [c.id for c in r.proponents] == ["new1"]


def test_eval_hybrid_method_is_rrf_of_its_two_rankings(tmp_path, tiny_encoder_dir):
    import numpy as np
    from airsearch.trainers.evaluation.methods import Method

    from airsearch.data.corpus import load_corpus
    from airsearch.encoder import AirRepEncoder

    train = load_corpus(write_corpus(tmp_path / "t.jsonl", _rows())).examples
    test = [
        Example("q1", "where is the zebra", "zebra"),
        Example("q2", "[gamma] big red houses", "green doors"),
    ]
    enc = AirRepEncoder.load(tiny_encoder_dir)
    hybrid = Method.of("hybrid", encoder=enc, workdir=tmp_path / "h", pool=10)
    hybrid.prepare(train)
    fused = np.concatenate([b for _, b in hybrid.score_blocks(test, block_size=7)])
    base = Method.of("base", encoder=enc)
    base.prepare(train)
    dots = np.concatenate([b for _, b in base.score_blocks(test)])
    for j, q in enumerate(test):
        rows, scores = hybrid.impl.text.query_scores(q)
        text_rank = {int(r): i + 1 for i, r in enumerate(rows[np.argsort(-scores, kind="stable")][:10])}
        vec_rank = {int(r): i + 1 for i, r in enumerate(np.argsort(-dots[:, j], kind="stable")[:10])}
        want = np.zeros(len(train))
        for r in set(text_rank) | set(vec_rank):
            want[r] = sum(1 / (60 + rank[r]) for rank in (text_rank, vec_rank) if r in rank)
        np.testing.assert_allclose(fused[:, j], want, rtol=1e-6)
