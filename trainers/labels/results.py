"""Typed views of a label store's progress and loss statistics (:mod:`airsearch.results`)."""

from __future__ import annotations

from dataclasses import dataclass

from airsearch.results import Result


@dataclass(frozen=True)
class SplitProgress(Result):
    split: int
    done: int
    total: int


@dataclass(frozen=True)
class LabelProgress(Result):
    """Finished subset jobs out of all, overall and per split."""

    done: int
    total: int
    complete: bool
    per_split: list[SplitProgress]


@dataclass(frozen=True)
class SplitStats(Result):
    """One split's loss statistics; the spread is each dev example's loss std across subsets."""

    split: int
    subsets: int
    dev: int
    loss_mean: float
    loss_std: float
    spread_mean: float
    spread_min: float
    spread_max: float
    zero_spread_dev: int  # dev examples whose loss is the same after every subset (Eq. 8 gives 0)


@dataclass(frozen=True)
class LabelStats(Result):
    """Loss statistics of the finished jobs (``None`` while no job has finished)."""

    labels: int
    loss_mean: float | None
    loss_std: float | None
    spread_mean: float | None
    per_split: list[SplitStats]
