"""Deterministic cross-validation splits and training subsets (AirRep §3.2 / App. F; methods.md §1).

The scheme, for ``n`` corpus examples *sorted by id* (so that it depends on the corpus content, not
on row order, like the corpus fingerprint) and a seed:

1. **Splits.** Split ``s`` uses its own generator ``numpy.random.default_rng([seed, s])`` (so adding
   splits never changes the earlier ones). It permutes the corpus positions; the first ``dev_size``
   are the split's dev set, the next ``pool_size`` its train pool. Dev and pool are disjoint within a
   split; different splits overlap freely, like cross-validation folds drawn at random.
2. **Subsets.** From the same generator, subset ``k`` of split ``s`` is ``subset_size`` pool members
   drawn *without replacement*. Subsets of a split may share members, but a subset never repeats: its
   sorted member tuple is checked against the earlier ones and redrawn on a collision. Asking for
   more subsets than ``C(pool_size, subset_size)`` is refused.
3. **Job seeds.** The fine-tune of (split ``s``, subset ``k``) is seeded with
   :func:`job_seed` ``(seed, s, k)``, derived through ``numpy.random.SeedSequence``.

Member order within a subset is the draw order; the fine-tune shuffles with its own seed anyway.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from airsearch.errors import InputError

MAX_REDRAWS = 1000


@dataclasses.dataclass
class SplitPlan:
    """One sampled split: its dev ids, pool ids and the member ids of each subset."""

    split: int
    dev_ids: list[str]
    pool_ids: list[str]
    subsets: list[list[str]]


def job_id(split: int, subset: int) -> str:
    """File-name-safe id of one subset job; sorts in (split, subset) order."""
    return f"s{split:05d}-k{subset:06d}"


def parse_job_id(jid: str) -> tuple[int, int]:
    s, k = jid.split("-")
    return int(s[1:]), int(k[1:])


def job_seed(seed: int, split: int, subset: int) -> int:
    """The fine-tuning seed of one job, a 31-bit int derived from (seed, split, subset)."""
    return int(np.random.SeedSequence([seed, split, subset, 0x5EED]).generate_state(1)[0] & 0x7FFFFFFF)


def sample_splits(
    ids: Sequence[str],
    *,
    splits: int,
    dev_size: int,
    pool_size: int,
    subset_size: int,
    subsets_per_split: int,
    seed: int,
) -> list[SplitPlan]:
    """Draw every split and its subsets as documented in the module docstring."""
    ids = sorted(ids)
    n = len(ids)
    if len(set(ids)) != n:
        raise InputError("corpus ids must be unique to sample label splits", field="corpus")
    if dev_size + pool_size > n:
        raise InputError(
            f"dev_size + pool_size = {dev_size + pool_size} exceeds the corpus size {n}",
            field="pool_size",
        )
    if subset_size > pool_size:
        raise InputError(f"subset_size {subset_size} exceeds pool_size {pool_size}", field="subset_size")
    possible = math.comb(pool_size, subset_size)
    if subsets_per_split > possible:
        raise InputError(
            f"only {possible} distinct subsets of {subset_size} exist in a pool of "
            f"{pool_size}; asked for {subsets_per_split}",
            field="subsets_per_split",
        )
    plans = []
    for s in range(splits):
        rng = np.random.default_rng([seed, s])
        perm = rng.permutation(n)
        dev = perm[:dev_size]
        pool = perm[dev_size : dev_size + pool_size]
        seen: set[tuple[int, ...]] = set()
        subsets: list[list[str]] = []
        for _ in range(subsets_per_split):
            for _attempt in range(MAX_REDRAWS):
                draw = rng.choice(pool_size, size=subset_size, replace=False)
                key = tuple(sorted(draw.tolist()))
                if key not in seen:
                    break
            else:  # pragma: no cover - only when nearly every distinct subset is taken
                raise InputError(
                    f"split {s}: no new distinct subset after {MAX_REDRAWS} draws; "
                    "ask for fewer subsets or a larger pool",
                    field="subsets_per_split",
                )
            seen.add(key)
            subsets.append([ids[pool[i]] for i in draw])
        plans.append(
            SplitPlan(
                split=s, dev_ids=[ids[i] for i in dev], pool_ids=[ids[i] for i in pool], subsets=subsets
            )
        )
    return plans
