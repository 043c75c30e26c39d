"""Exact bulk search: many queries against a stream of corpus blocks, never the full score matrix.

Scores are AirRep's single-example scores, plain dot products (methods.md §1). Each corpus block is
read once and scored against every query block; per query only a running top-k (ids and scores) is
kept, in :class:`airsearch.scoring.TopK` (the one top-k heap). FAISS does the per-block search when
it is importable (a GPU index when ``faiss.get_num_gpus() > 0``); otherwise numpy matmul blocks
(``backend="torch"``: torch matmul blocks). Neither of the default paths imports torch.
:func:`group_scores` streams the exact Eq. 7 group score of every metadata group with
:class:`airsearch.scoring.StreamingGroupScore`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from airsearch.errors import InputError
from airsearch.scoring import TopK

BACKENDS = ("auto", "faiss", "numpy", "torch")
QUERY_BLOCK = 2048


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def resolve_backend(backend: str = "auto") -> str:
    if backend not in BACKENDS:
        raise InputError(f"unknown search backend {backend!r}; choose one of {BACKENDS}", field="backend")
    if backend == "auto":
        return "faiss" if faiss_available() else "numpy"
    if backend == "faiss" and not faiss_available():
        raise InputError(
            "the faiss backend needs faiss: pip install 'airsearch[cpu]' (or [gpu])", field="backend"
        )
    return backend


class _FaissBlockSearch:
    def __init__(self, dim: int) -> None:
        import faiss

        self.faiss = faiss
        self.dim = dim
        self.gpu = faiss.get_num_gpus() > 0
        self.res = faiss.StandardGpuResources() if self.gpu else None

    def __call__(self, q: np.ndarray, block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        index = self.faiss.IndexFlatIP(self.dim)
        if self.gpu:
            index = self.faiss.index_cpu_to_gpu(self.res, 0, index)
        index.add(block)
        return index.search(q, min(k, block.shape[0]))


def exact_topk(
    queries: np.ndarray,
    blocks: Iterable[tuple[np.ndarray, np.ndarray]],
    k: int,
    *,
    largest: bool = True,
    backend: str = "auto",
    query_block: int = QUERY_BLOCK,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by dot product. ``blocks`` yields ``(ids [b], vectors [b, d])``.

    Returns ``(scores [q, k'], ids [q, k'])`` sorted best first (``k' = min(k, rows)``); with
    ``largest=False`` the most negative scores (opponents).
    """
    q_all = np.ascontiguousarray(queries, dtype=np.float32)
    if q_all.ndim != 2:
        raise InputError(f"queries must be a [q, dim] matrix, got shape {q_all.shape}")
    backend = resolve_backend(backend)
    sign = 1.0 if largest else -1.0
    starts = list(range(0, q_all.shape[0], query_block)) or [0]
    heaps = [TopK(min(query_block, max(q_all.shape[0] - s, 0)), k, largest=True) for s in starts]
    faiss_search = _FaissBlockSearch(q_all.shape[1]) if backend == "faiss" else None
    for ids, vecs in blocks:
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        ids_np = np.asarray(ids, dtype=np.int64)
        for heap, s in zip(heaps, starts, strict=True):
            qb = sign * q_all[s : s + query_block]
            if qb.shape[0] == 0:
                continue
            if faiss_search is not None:
                d, local = faiss_search(np.ascontiguousarray(qb), vecs, k)
                heap.push(d, ids_np[local])
            elif backend == "torch":
                import torch

                heap.push(torch.from_numpy(qb) @ torch.from_numpy(vecs).T, torch.from_numpy(ids_np))
            else:
                heap.push(qb @ vecs.T, ids_np)
    scores = np.concatenate([h.result()[0] for h in heaps], axis=0) * sign
    out_ids = np.concatenate([h.result()[1] for h in heaps], axis=0)
    return scores.astype(np.float32), out_ids


def group_scores(
    queries: np.ndarray, blocks: Iterable[tuple[np.ndarray, Sequence[Any]]]
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Exact Eq. 7 score of every group, streamed: ``blocks`` yields ``(vectors [b, d], labels [b])``.

    ``score(S, z) = sum_i softmax_i(|e_z . e_i|) (e_z . e_i)`` over all members of each group S.
    Returns ``(groups, scores [groups, q], sizes [groups])``; rows with a null label are skipped.
    """
    from airsearch.scoring import StreamingGroupScore

    q = np.ascontiguousarray(queries, dtype=np.float32)
    acc: dict[Any, StreamingGroupScore] = {}
    for vecs, labels in blocks:
        labels = np.asarray(labels, dtype=object)
        keys = [k for k in dict.fromkeys(labels.tolist()) if k is not None]
        for key in keys:
            members = vecs[labels == key]
            acc.setdefault(key, StreamingGroupScore(q)).update(members)
    groups = list(acc)
    if not groups:
        return [], np.zeros((0, q.shape[0])), np.zeros(0, dtype=np.int64)
    scores = np.stack([acc[g].result() for g in groups])
    sizes = np.array([acc[g].count for g in groups], dtype=np.int64)
    return groups, scores, sizes
