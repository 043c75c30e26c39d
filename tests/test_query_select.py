"""Query and select against plain brute-force references (full score matrices on tiny inputs)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from airsearch.indexers.build import build_index
from airsearch.indexers.config import IndexConfig, SelectConfig
from airsearch.indexers.query import Searcher
from airsearch.indexers.search import exact_topk, faiss_available, group_scores
from airsearch.indexers.select import competition_ranks, select, select_best_rank, select_sum

from airsearch.data.corpus import load_corpus, load_queries, write_rows
from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder
from airsearch.scoring import group_score
from tests.helpers.corpora import TASKS, best_rank_reference, make_rows


def _blocks(x: np.ndarray, size: int):
    return lambda: ((np.arange(s, min(s + size, len(x))), x[s : s + size]) for s in range(0, len(x), size))


def brute_best_rank(targets: np.ndarray, items: np.ndarray, n: int) -> tuple[list[int], list[int]]:
    """Reference App. G: full matrix, competition ranks, best rank; ties: higher score, then row order."""
    return best_rank_reference(targets @ items.T, n)


@pytest.mark.parametrize("backend", ["torch", "faiss"])
@pytest.mark.parametrize("largest", [True, False])
def test_exact_topk_equals_full_sort(backend, largest):
    if backend == "faiss" and not faiss_available():
        pytest.skip("faiss not installed")
    rng = np.random.default_rng(0)
    q, x = rng.normal(size=(7, 16)).astype(np.float32), rng.normal(size=(103, 16)).astype(np.float32)
    scores, ids = exact_topk(q, _blocks(x, 10)(), 5, largest=largest, backend=backend, query_block=3)
    full = q @ x.T
    ref = np.argsort(-full if largest else full, axis=1)[:, :5]
    np.testing.assert_array_equal(ids, ref)
    np.testing.assert_allclose(scores, np.take_along_axis(full, ref, 1), rtol=1e-5)


def test_group_scores_equal_eq7_reference():
    rng = np.random.default_rng(1)
    q, x = rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=(50, 8)).astype(np.float32)
    labels = np.array(["a", "b", "c", None, "a"] * 10, dtype=object)
    groups, scores, sizes = group_scores(q, ((x[s : s + 7], labels[s : s + 7]) for s in range(0, 50, 7)))
    assert sorted(groups) == ["a", "b", "c"]
    for g, row, size in zip(groups, scores, sizes, strict=True):
        members = x[labels == g]
        assert size == len(members)
        # numpy reference of Eq. 7: softmax over |e.e_i| weights e.e_i
        d = members.astype(np.float64) @ q.T.astype(np.float64)
        w = np.exp(np.abs(d) - np.abs(d).max(axis=0))
        np.testing.assert_allclose(row, (w * d).sum(0) / w.sum(0), rtol=1e-9)
        np.testing.assert_allclose(
            row, group_score(torch.from_numpy(q), torch.from_numpy(members)).numpy(), rtol=1e-5
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_rank_selection_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    # rounded vectors make many tied scores, the hard case for ranks
    items = np.round(rng.normal(size=(80, 4)), 0).astype(np.float32)
    targets = np.round(rng.normal(size=(6, 4)), 0).astype(np.float32)
    for n in (1, 5, 23, 80):
        sel = select_best_rank(targets, _blocks(items, 9), 80, n, backend="torch", initial_k=2)
        ref_ids, ref_ranks = brute_best_rank(targets, items, n)
        assert sel.row_ids.tolist() == ref_ids
        assert sel.best_rank.tolist() == ref_ranks
        s = targets[sel.best_target] * items[sel.row_ids]
        np.testing.assert_allclose(sel.scores, s.sum(1), rtol=1e-5)


def test_sum_selection_equals_brute_force():
    rng = np.random.default_rng(3)
    items, targets = rng.normal(size=(70, 8)).astype(np.float32), rng.normal(size=(9, 8)).astype(np.float32)
    sel = select_sum(targets, _blocks(items, 16), 12, backend="torch")
    total = (targets.astype(np.float64) @ items.T.astype(np.float64)).sum(0)
    assert sel.row_ids.tolist() == np.argsort(-total, kind="stable")[:12].tolist()
    np.testing.assert_allclose(sel.scores, np.sort(total)[::-1][:12], rtol=1e-4)


def test_competition_ranks():
    s = np.array([[5.0, 4.0, 4.0, 4.0, 1.0], [3.0, 3.0, 2.0, 2.0, 2.0]])
    assert competition_ranks(s).tolist() == [[1, 2, 2, 2, 5], [1, 1, 3, 3, 3]]


@pytest.fixture(scope="module")
def db(tmp_path_factory, corpus_file, tiny_encoder_dir):
    path = tmp_path_factory.mktemp("qs") / "db"
    build_index(IndexConfig(corpus=[str(corpus_file)], db=str(path), encoder=str(tiny_encoder_dir)))
    return path


@pytest.fixture(scope="module")
def brute(corpus_file, tiny_encoder_dir):
    enc = AirRepEncoder.load(tiny_encoder_dir)
    examples = load_corpus(corpus_file).examples
    return enc, examples, enc.encode(examples)


def test_query_proponents_opponents_where_and_groups_equal_brute_force(db, brute, tiny_encoder_dir):
    enc, examples, vecs = brute
    query = Example("q", "[beta] red houses", "green doors")
    e = enc.encode([query])[0]
    s = vecs @ e
    searcher = Searcher(str(db), encoder=str(tiny_encoder_dir))
    r = searcher.search(query, k=5, opponents=True, group_by="task")[0]
    assert [c.id for c in r.proponents] == [examples[i].id for i in np.argsort(-s, kind="stable")[:5]]
    # opponents: the most negative scores, and only negative ones (none here when every row scores > 0)
    assert [c.id for c in r.opponents] == [
        examples[i].id for i in np.argsort(s, kind="stable")[:5] if s[i] < 0
    ]
    assert r.proponents[0].prompt == examples[int(np.argmax(s))].prompt
    # --group-by: exact Eq. 7 over each task's members
    ref = {}
    for task in TASKS:
        members = vecs[[i for i, ex in enumerate(examples) if ex.metadata["task"] == task]]
        ref[task] = float(group_score(torch.from_numpy(e), torch.from_numpy(members)))
    assert [g.group for g in r.groups] == sorted(ref, key=lambda t: -ref[t])
    for g in r.groups:
        assert g.score == pytest.approx(ref[g.group], rel=1e-5) and g.size == 20
    # --where
    rw = searcher.search(query, k=100, where="task = 'beta' AND n >= 10")[0]
    keep = [i for i, ex in enumerate(examples) if ex.metadata["task"] == "beta" and ex.metadata["n"] >= 10]
    assert [c.id for c in rw.proponents] == [examples[i].id for i in sorted(keep, key=lambda i: -s[i])]
    # the rerank hook receives full candidates and reorders by its scores
    seen = {}

    def reverse(q, cands):
        seen["n"], seen["full"] = len(cands), cands[0].prompt
        return [-c.score for c in cands]

    rr = searcher.search(query, k=3, candidates=8, rerank=reverse)[0]
    assert seen["n"] == 8 and seen["full"] == r.proponents[0].prompt
    assert [c.id for c in rr.proponents] == [examples[i].id for i in np.argsort(-s, kind="stable")[:8]][::-1][
        :3
    ]
    assert rr.proponents[0].retrieval_score is not None and rr.reranked_by == "reverse"


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_select_writes_rows_and_manifest_equal_to_brute_force(db, brute, tiny_encoder_dir, tmp_path, fmt):
    enc, examples, vecs = brute
    targets_file = write_rows(tmp_path / "targets.jsonl", make_rows(4, start=900))
    tvecs = enc.encode(load_queries(targets_file).examples)
    out = tmp_path / f"sel.{fmt}"
    summary = select(SelectConfig(db=str(db), targets=str(targets_file), n=7, out=str(out)))
    rows = (
        [json.loads(x) for x in out.read_text().splitlines()]
        if fmt == "jsonl"
        else pq.read_table(out).to_pylist()
    )
    ref_ids, ref_ranks = brute_best_rank(tvecs, vecs, 7)
    assert [r["id"] for r in rows] == [examples[i].id for i in ref_ids]
    assert [r["best_rank"] for r in rows] == ref_ranks and [r["rank"] for r in rows] == list(range(1, 8))
    by_id = {ex.id: ex for ex in examples}
    first = by_id[rows[0]["id"]]
    assert rows[0]["prompt"] == first.prompt and rows[0]["task"] == first.metadata["task"]
    if fmt == "jsonl":
        assert rows[0]["tags"] == first.metadata["tags"]
    manifest = json.loads((tmp_path / f"sel.{fmt}.manifest.json").read_text())
    assert manifest["selected"] == 7 and manifest["targets"] == 4 and summary.selected == 7
    assert manifest["encoder_fingerprint"] == enc.fingerprint
    # sum strategy with --fraction
    out2 = tmp_path / f"sum.{fmt}"
    select(SelectConfig(db=str(db), targets=str(targets_file), fraction=0.1, strategy="sum", out=str(out2)))
    rows2 = (
        [json.loads(x) for x in out2.read_text().splitlines()]
        if fmt == "jsonl"
        else pq.read_table(out2).to_pylist()
    )
    total = (tvecs.astype(np.float64) @ vecs.T.astype(np.float64)).sum(0)
    assert [r["id"] for r in rows2] == [examples[i].id for i in np.argsort(-total, kind="stable")[:6]]
