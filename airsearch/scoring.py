"""Scores over embeddings: the single-example dot product and AirRep's attention-pooled group score.

Everything here works block by block: a query set against a corpus of any size never materialises
the full n x m score matrix unless the caller asks for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Union

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: a plain index search runs on numpy alone
    import torch

ArrayLike = Union[np.ndarray, "torch.Tensor"]


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    import torch

    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def group_score(query: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """AirRep Eq. 7: ``score(S, z) = sum_i softmax_i(|e_z . e_i|) (e_z . e_i)``.

    ``query`` is ``[d]`` or ``[q, d]``; ``members`` is ``[n, d]`` (the group S). Returns a scalar or
    ``[q]``. There is no temperature and no normalisation of the embeddings. Differentiable.
    """
    import torch

    dots = members @ query.T if query.dim() == 2 else members @ query  # [n, q] or [n]
    attn = torch.softmax(dots.abs(), dim=0)
    return (attn * dots).sum(dim=0)


def sum_group_score(query: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """Sum aggregation, ``sum_i e_z . e_i``: the group score used for additive (gradient) methods."""
    return (members @ query.T if query.dim() == 2 else members @ query).sum(dim=0)


class StreamingGroupScore:
    """Eq. 7 over a group that arrives in blocks, exact, with a running log-sum-exp.

    For each query keeps ``m = max |s|``, ``den = sum exp(|s| - m)`` and ``num = sum exp(|s| - m) s``;
    the score is ``num / den``. Feeding every member once, in any blocking, equals :func:`group_score`.

    Give the query vectors and feed member embeddings with :meth:`update`, or give only
    ``n_queries`` and feed the dot products ``s = e_z . e_i`` themselves with :meth:`update_scores`
    (for scores that some other method computed). This is the one streaming Eq. 7 in airsearch:
    ``query --group-by`` and the evaluation's attention group scores both use it.
    """

    def __init__(self, queries: ArrayLike | None = None, *, n_queries: int | None = None) -> None:
        if (queries is None) == (n_queries is None):
            raise TypeError("give the query vectors or n_queries, not both")
        import torch

        self.queries = None if queries is None else _as_tensor(queries).to(torch.float64)
        q = self.queries.shape[0] if self.queries is not None else int(n_queries or 0)
        self.m = torch.full((q,), -float("inf"), dtype=torch.float64)
        self.num = torch.zeros(q, dtype=torch.float64)
        self.den = torch.zeros(q, dtype=torch.float64)
        self.count = 0

    def update(self, block: ArrayLike) -> None:
        """Add member embeddings ``[b, d]`` (needs the query vectors)."""
        if self.queries is None:
            raise TypeError("this accumulator was made without query vectors; use update_scores")
        import torch

        self.update_scores(_as_tensor(block).to(torch.float64) @ self.queries.T)

    def update_scores(self, dots: ArrayLike, counts: ArrayLike | None = None) -> None:
        """Add members by their scores ``dots [b, q]`` (``s = e_z . e_i``).

        ``counts [b]`` (optional) is how many times each member is in the group: a member counted
        c times enters the softmax c times (its weight ``exp(|s| - m)`` is multiplied by c).
        """
        import torch

        dots = _as_tensor(dots).to(torch.float64)
        if dots.shape[0] == 0:
            return
        a = dots.abs()
        new_m = torch.maximum(self.m, a.max(dim=0).values)
        scale = torch.exp(self.m - new_m)
        w = torch.exp(a - new_m)
        if counts is None:
            self.count += dots.shape[0]
        else:
            c = _as_tensor(counts).to(torch.float64).reshape(-1, 1)
            w = c * w
            self.count += int(c.sum().item())
        self.num = self.num * scale + (w * dots).sum(dim=0)
        self.den = self.den * scale + w.sum(dim=0)
        self.m = new_m

    def result(self) -> np.ndarray:
        """``[q]`` Eq. 7 scores (NaN for a query whose group is still empty)."""
        import torch

        out = torch.where(self.den > 0, self.num / self.den, torch.full_like(self.num, float("nan")))
        return out.numpy()


class TopK:
    """Running top-k (largest or smallest) of query-by-item scores, merged block by block.

    Holds at most ``q x k`` scores and their int64 item ids: each new block is concatenated with the
    kept ones and cut back to k, which is the heap-merge of a k-heap per query done as one array
    operation. :meth:`push` takes explicit ids (e.g. table row ids); :meth:`update` numbers the items
    of consecutive blocks by position. Blocks are torch tensors (kept on their device) or numpy
    arrays (merged with numpy, so an index search needs no torch). This is the one top-k heap in
    airsearch: the exact index search (``airsearch.indexers.search``), the gradient methods and the
    evaluation all use it.
    """

    def __init__(self, n_queries: int, k: int, *, largest: bool = True) -> None:
        self.k = k
        self.largest = largest
        self.scores: Any = np.empty((n_queries, 0), dtype=np.float32)
        self.ids: Any = np.empty((n_queries, 0), dtype=np.int64)

    def push(self, scores: ArrayLike, ids: ArrayLike) -> None:
        """``scores`` ``[q, b]`` for the items ``ids``: ``[b]`` (shared by every query) or ``[q, b]``."""
        if isinstance(scores, np.ndarray):
            self._push_numpy(scores, np.asarray(ids, dtype=np.int64))
            return
        import torch

        if isinstance(self.scores, np.ndarray):
            self.scores, self.ids = torch.from_numpy(self.scores), torch.from_numpy(self.ids)
        ids = _as_tensor(ids).to(scores.device)
        if ids.dim() == 1:
            ids = ids.expand(scores.shape[0], -1)
        all_s = torch.cat([self.scores.to(scores.device), scores.to(torch.float32)], dim=1)
        all_i = torch.cat([self.ids.to(scores.device), ids.to(torch.int64)], dim=1)
        k = min(self.k, all_s.shape[1])
        top = torch.topk(all_s, k, dim=1, largest=self.largest, sorted=True)
        self.scores, self.ids = top.values, torch.gather(all_i, 1, top.indices)

    def _push_numpy(self, scores: np.ndarray, ids: np.ndarray) -> None:
        if ids.ndim == 1:
            ids = np.broadcast_to(ids, scores.shape)
        all_s = np.concatenate([np.asarray(self.scores), scores.astype(np.float32, copy=False)], axis=1)
        all_i = np.concatenate([np.asarray(self.ids), ids], axis=1)
        k = min(self.k, all_s.shape[1])
        key = -all_s if self.largest else all_s
        keep = np.argpartition(key, k - 1, axis=1)[:, :k] if 0 < k < key.shape[1] else None
        if keep is None:
            keep = np.broadcast_to(np.arange(key.shape[1]), key.shape)
        order = np.take_along_axis(
            keep, np.argsort(np.take_along_axis(key, keep, 1), axis=1, kind="stable"), 1
        )
        self.scores, self.ids = np.take_along_axis(all_s, order, 1), np.take_along_axis(all_i, order, 1)

    def update(self, scores: ArrayLike, offset: int) -> None:
        """``scores`` is ``[q, b]`` for items ``offset .. offset+b-1``."""
        self.push(scores, np.arange(offset, offset + scores.shape[1], dtype=np.int64))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [q, k'], ids [q, k'])``, best first; ``k' = min(k, items seen)``."""
        if isinstance(self.scores, np.ndarray):
            return self.scores, self.ids
        return self.scores.cpu().numpy(), self.ids.cpu().numpy()


def blocked_dot_topk(
    queries: ArrayLike, blocks: Iterable[ArrayLike], k: int, *, largest: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k dot-product search over a corpus that arrives in blocks (rows in order)."""
    import torch

    q = _as_tensor(queries).to(torch.float32)
    heap = TopK(q.shape[0], k, largest=largest)
    offset = 0
    for block in blocks:
        b = _as_tensor(block).to(torch.float32)
        heap.update(q @ b.T, offset)
        offset += b.shape[0]
    return heap.result()


def iter_blocks(matrix: ArrayLike, block_size: int) -> Iterator[ArrayLike]:
    for start in range(0, matrix.shape[0], block_size):
        yield matrix[start : start + block_size]
