"""What the method columns' cost measurements rest on (issue 25, ``benchmarks/bench_method_columns.py``):

* ``query --rerank`` encodes its query with the torch-free query encoder (ONNX, the index's export)
  and ranks exactly as with the torch encoder, from stored vectors and by recompute, in every mode;
* a query vector of one example (plain autograd on the model's own parameters) equals the batched
  per-example gradient route;
* a float16 column scores within float16's rounding bound of the float32 column, exact search gives
  the same top-k except near-ties, and ``info`` states the storage per row.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from airsearch.indexers import query as query_module
from airsearch.indexers.config import QueryConfig
from airsearch.indexers.method_search import ColumnSearcher
from airsearch.indexers.query import query

from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder
from airsearch.methods.registry import MethodConfig
from airsearch.query_encoder import QueryEncoder
from tests.helpers.cli import run
from tests.helpers.corpora import write_corpus

QUERIES = [
    Example("q0", "What colour is the lemon?", "The lemon is gold."),
    Example("q1", "Tell me about apples.", "Every apple on the tree turned red."),
]
U16 = 2.0**-11  # float16 unit roundoff (10 stored mantissa bits, round to nearest)
SUB16 = 2.0**-25  # half the spacing of float16 subnormals: the absolute rounding error below 2^-14


@pytest.fixture(scope="module")
def table(tmp_path_factory, tiny_lm_examples, tiny_encoder_dir, tiny_lm_dir):
    """20 rows indexed by the CLI (which writes the encoder's query export), with a float32 and a
    float16 grad-cos column of the same settings."""
    root = tmp_path_factory.mktemp("costs")
    corpus = write_corpus(root / "corpus.jsonl", [e.to_row() for e in tiny_lm_examples[:20]])
    run("index", corpus, "--db", root / "db", "--encoder", tiny_encoder_dir)
    run("method-column", "--db", root / "db", "--method", "gradcos", "--lm", tiny_lm_dir)
    run(
        "method-column", "--db", root / "db", "--method", "gradcos", "--lm", tiny_lm_dir,
        "--column", "m_gc16", "--dtype", "float16",
    )  # fmt: skip
    return root / "db"


def _rerank(db, lm, mode: str, method: str, encoder=None):
    cfg = QueryConfig(
        db=str(db), prompt=QUERIES[0].prompt, response=QUERIES[0].response, k=5, candidates=12, mode=mode,
        rerank=method, method_config=MethodConfig(lm=str(lm)),
    )  # fmt: skip
    (res,) = query(cfg, encoder=encoder)
    return res


@pytest.mark.parametrize("mode", ["vector", "bm25", "hybrid"])
def test_rerank_encodes_with_the_onnx_query_encoder_and_ranks_as_torch(
    table, tiny_lm_dir, tiny_encoder_dir, mode, monkeypatch
):
    used = []
    real_init = query_module.Searcher.__init__

    def spy(self, *a, **kw):  # the real constructor; records which encoder the query got
        real_init(self, *a, **kw)
        used.append(type(self.encoder))

    monkeypatch.setattr(query_module.Searcher, "__init__", spy)
    torch_encoder = AirRepEncoder.load(tiny_encoder_dir, device="cpu")
    for method, how in (
        ("gradcos", "gradcos (stored m_gradcos)"),
        ("tracin", "tracin"),
    ):  # stored, recomputed
        fast = _rerank(table, tiny_lm_dir, mode, method)
        ref = _rerank(table, tiny_lm_dir, mode, method, encoder=torch_encoder)
        assert used[-2:] == [QueryEncoder, AirRepEncoder]
        assert fast.reranked_by == ref.reranked_by == how
        assert [c.id for c in fast.proponents] == [c.id for c in ref.proponents]
        np.testing.assert_allclose(
            [c.score for c in fast.proponents], [c.score for c in ref.proponents], rtol=1e-5
        )
        np.testing.assert_allclose(
            [c.retrieval_score for c in fast.proponents],
            [c.retrieval_score for c in ref.proponents],
            rtol=1e-5,
            atol=1e-6,
        )


def test_one_example_query_vector_equals_the_batched_route(table, tiny_lm_dir, tiny_lm_examples):
    column = ColumnSearcher(str(table), None, "m_gradcos", str(tiny_lm_dir), exact=True)
    gm = column.method.ck.featurizers[0].gm
    assert gm._own_parameters() is not None  # the model's own parameters: no functional_call
    examples = [*QUERIES, *tiny_lm_examples[:3]]
    one = np.stack([column.encode([e])[0] for e in examples])  # batches of one: plain autograd
    batched = column.encode(examples)  # vmap over the batch
    np.testing.assert_allclose(one, batched, rtol=1e-5, atol=1e-5 * np.abs(batched).max())


def test_float16_column_scores_within_rounding_and_same_top_k(table, tiny_lm_dir):
    c32 = ColumnSearcher(str(table), None, "m_gradcos", str(tiny_lm_dir), exact=True)
    c16 = ColumnSearcher(str(table), None, "m_gc16", str(tiny_lm_dir), exact=True, method=c32.method)
    assert (c32.spec.dtype, c16.spec.dtype) == ("float32", "float16")
    assert c16.spec.fingerprint != c32.spec.fingerprint  # the dtype is part of what made the vectors
    k, n = 5, 20
    for q in QUERIES:
        v = c32.encode([q])[0]
        (s32, ids), (s16, ids16) = c32.top_k(v[None], n), c16.top_k(v[None], n)  # every row, exactly
        s32, ids, s16 = s32[0], ids[0], dict(zip(ids16[0].tolist(), s16[0], strict=True))
        s16 = np.array([s16[r] for r in ids.tolist()])  # float16 scores in the float32 order
        r32 = c32.row_vectors(ids)
        # each stored coordinate is rounded to nearest: |x16 - x| <= u|x| (+ SUB16 below float16's
        # normal range), so |s16 - s32| <= u sum|v_i x_i| + SUB16 sum|v_i|
        bound = U16 * np.abs(r32) @ np.abs(v) + SUB16 * np.abs(v).sum()
        assert np.all(np.abs(s16 - s32) <= bound * 1.0001 + 1e-7)
        assert np.abs(s16 - s32).max() > 0  # float16 really is stored
        np.testing.assert_allclose(s16, c16.row_vectors(ids) @ v, rtol=1e-6, atol=1e-7)
        # exact search's top-k agrees, except rows whose float32 scores lie within both bounds of the k-th
        top16 = set(ids16[0][:k].tolist())
        differ = [i for i, r in enumerate(ids.tolist()) if (i < k) != (r in top16)]
        assert all(abs(s32[i] - s32[k - 1]) <= bound[i] + bound[k - 1] for i in differ)
    d = c32.spec.dim
    info = run("info", "--db", table).output
    assert f"m_gc16: gradcos, {d} x float16 ({2 * d:,} bytes per row)" in info
    assert f"m_gradcos: gradcos, {d} x float32 ({4 * d:,} bytes per row)" in info
    listed = json.loads(run("info", "--db", table, "--json").stdout)["tables"][0]["method_columns"]
    assert (listed["m_gc16"]["dtype"], listed["m_gradcos"]["dtype"]) == ("float16", "float32")
