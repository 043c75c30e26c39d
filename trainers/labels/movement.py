"""How far a subset fine-tune moves the target LM: parameter distance and loss change.

A gold label (AirRep Eq. 8, ``L_S(z)``) is only informative when fine-tuning on S really changes the
model. With ``LabelConfig.movement`` each subset job records, besides its dev losses,
``||th_S - th_start||_2`` (every weight; LoRA adapters merged), ``||th_start||_2`` and the mean loss of
the subset's own examples before and after; :func:`movement_summary` adds the dev losses at the
start model and averages over jobs. The gold protocols of ``eval gold`` report it for both.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch
from airsearch.trainers.labels.sampling import job_id
from airsearch.trainers.labels.store import LabelStore

from airsearch.data.example import Example
from airsearch.lm.model import TargetLM
from airsearch.results import Result


@dataclasses.dataclass(frozen=True)
class Movement(Result):
    """Means over fine-tunes: how far each moved its start model and how much losses changed."""

    jobs: int  # fine-tunes with a movement record
    param_distance: float | None  # mean ||th_S - th_start||_2
    relative_distance: float | None  # mean ||th_S - th_start|| / ||th_start||
    train_loss_before: float | None  # mean loss of the subset's own examples at the start model
    train_loss_after: float | None  # ... after fine-tuning on them
    dev_loss_before: float | None  # mean dev loss at the start model
    dev_loss_after: float | None  # mean over fine-tunes of the mean dev loss after
    dev_loss_spread: float | None  # mean over dev examples of the std of L_S(z) across subsets
    train_loss_change: float | None  # train_loss_after - train_loss_before
    dev_loss_change: float | None  # dev_loss_after - dev_loss_before


def _diff(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def _weights(lm: TargetLM) -> dict[str, torch.Tensor]:
    model = copy.deepcopy(lm.model).merge_and_unload() if lm.is_peft else lm.model
    return {n: p.detach().float() for n, p in model.named_parameters()}


def parameter_distance(start: TargetLM, tuned: TargetLM) -> tuple[float, float]:
    """``(||th_tuned - th_start||_2, ||th_start||_2)`` over every weight the two models share."""
    a, b = _weights(start), _weights(tuned)
    diff = sum(float(((b[n].to(p.device) - p) ** 2).sum()) for n, p in a.items() if n in b)
    norm = sum(float((p**2).sum()) for p in a.values())
    return math.sqrt(diff), math.sqrt(norm)


def job_movement(
    start: TargetLM, tuned: TargetLM, train: Sequence[Example], *, batch_size: int, max_length: int
) -> dict[str, float]:
    """What one subset job records: parameter distance and norm, subset loss before and after."""
    from airsearch.lm import example_losses

    def mean_loss(lm: TargetLM) -> float:
        return float(
            np.mean(
                example_losses(lm, train, batch_size=batch_size, max_length=max_length, show_progress=False)
            )
        )

    distance, norm = parameter_distance(start, tuned)
    return {
        "param_distance": distance,
        "param_norm": norm,
        "train_loss_before": mean_loss(start),
        "train_loss_after": mean_loss(tuned),
    }


def movement_summary(store: LabelStore, start: TargetLM, *, batch_size: int = 32) -> Movement:
    """:class:`Movement` of a store's finished retraining jobs; ``start`` is the model they started
    from (its dev losses are computed here, once per split)."""
    from airsearch.lm import example_losses

    examples = store.examples()
    max_length = int(store.config.get("max_length") or start.max_length)
    dist, rel, before, after, dev_before, dev_after, spread = [], [], [], [], [], [], []
    for sl in store.splits(min_subsets=1, warn=False):
        dev = [examples[i] for i in sl.dev_ids]
        at_start = example_losses(
            start, dev, batch_size=batch_size, max_length=max_length, show_progress=False
        )
        dev_before.append(float(np.mean(at_start)))
        dev_after.extend(sl.losses.mean(axis=1).tolist())
        spread.append(float(sl.losses.std(axis=0).mean()))
        for k in sl.subset_ids:
            r = store.read_job(job_id(sl.split, k))
            if "param_distance" in r:
                dist.append(float(r["param_distance"]))
                rel.append(float(r["param_distance"]) / max(float(r["param_norm"]), 1e-12))
                before.append(float(r["train_loss_before"]))
                after.append(float(r["train_loss_after"]))

    def mean(v: list[float]) -> float | None:
        return float(np.mean(v)) if v else None

    return Movement(
        jobs=len(dist),
        param_distance=mean(dist),
        relative_distance=mean(rel),
        train_loss_before=mean(before),
        train_loss_after=mean(after),
        dev_loss_before=mean(dev_before),
        dev_loss_after=mean(dev_after),
        dev_loss_spread=mean(spread),
        train_loss_change=_diff(mean(after), mean(before)),
        dev_loss_change=_diff(mean(dev_after), mean(dev_before)),
    )
