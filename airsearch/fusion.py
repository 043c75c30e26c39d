"""Reciprocal rank fusion of several rankings (hybrid retrieval: AirRep vectors + BM25).

Cormack, Clarke and Büttcher (SIGIR 2009), Eq. 1: a document d ranked by several systems r gets

``RRF(d) = sum_r 1 / (k0 + rank_r(d))``

with 1-based ranks and ``k0 = 60``; a document a system did not return adds nothing for it. Only
ranks enter, so scores on different scales (dot products, BM25) need no calibration.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

RRF_K0 = 60


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Hashable]], *, k0: int = RRF_K0
) -> list[tuple[Hashable, float]]:
    """``[(item, fused score)]`` best first (RRF, Cormack et al. 2009 Eq. 1).

    Each ranking lists items best first; an item repeated within one ranking counts at its best rank.
    Ties in fused score keep the order of first appearance (earlier rankings first), so the fusion is
    deterministic.
    """
    if k0 < 0:
        raise ValueError("k0 must be >= 0")
    fused: dict[Hashable, float] = {}
    for ranking in rankings:
        seen: set[Hashable] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            fused[item] = fused.get(item, 0.0) + 1.0 / (k0 + rank)
    order = sorted(enumerate(fused.items()), key=lambda t: (-t[1][1], t[0]))
    return [item for _, item in order]
