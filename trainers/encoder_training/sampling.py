"""What one training step draws, reproducibly: seeds, the split order of an epoch and the subsets and
dev examples of a step (each from a generator seeded by ``(seed, epoch, step)``, so a resumed run
draws exactly what an uninterrupted one would); and dropout off (methods.md §1 [C])."""

from __future__ import annotations

import random

import numpy as np
import torch
from airsearch.trainers.encoder_training.config import TrainConfig

from airsearch.labels import SplitLabels


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def disable_dropout(model: torch.nn.Module) -> None:
    """Dropout off (methods.md §1 [C]): every dropout probability 0 and eval mode."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    model.eval()


def sample_step(
    split: SplitLabels, cfg: TrainConfig, epoch: int, index: int
) -> tuple[np.ndarray, np.ndarray]:
    """(subset rows, dev columns) of one step, from a generator seeded by (seed, epoch, index)."""
    rng = np.random.default_rng([cfg.seed, epoch, index])
    k, d = split.losses.shape
    subsets = rng.choice(k, size=min(cfg.subsets_per_step, k), replace=False)
    dev = rng.choice(d, size=min(cfg.dev_per_step, d), replace=False)
    return subsets, dev


def epoch_order(n_train: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 2**31 - 1]).permutation(n_train)
