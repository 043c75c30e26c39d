"""In-memory subset-loss labels (AirRep Eq. 8), as read from a label store.

A label store (written by ``airsearch.trainers.labels``) holds, for each cross-validation split, the dev
example ids, the member ids of every subset, and the loss of each dev example after fine-tuning on
each subset. Gradient teachers write the same shape with ``losses = -group score`` so that the same
normalisation applies.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from airsearch.errors import InputError

TARGET_CLIP = 10.0


@dataclasses.dataclass
class SplitLabels:
    """Labels of one split: ``losses[k, j]`` is dev example ``dev_ids[j]``'s loss after subset ``k``."""

    split: int
    dev_ids: list[str]
    subset_ids: list[int]
    members: list[list[str]]  # members[k]: training example ids of subset k
    losses: np.ndarray  # [n_subsets, n_dev], float

    def __post_init__(self) -> None:
        self.losses = np.asarray(self.losses, dtype=np.float64)
        if self.losses.shape != (len(self.members), len(self.dev_ids)):
            raise InputError(
                f"split {self.split}: losses shape {self.losses.shape} != "
                f"({len(self.members)} subsets, {len(self.dev_ids)} dev examples)"
            )

    def targets(self, clip: float = TARGET_CLIP) -> np.ndarray:
        """Eq. 8 labels, ``[n_subsets, n_dev]``; see :func:`normalise_losses`."""
        return normalise_losses(self.losses, clip=clip)


def normalise_losses(losses: np.ndarray, clip: float | None = TARGET_CLIP) -> np.ndarray:
    """AirRep Eq. 8: ``y(S, z) = -(L_S(z) - mean_S L(z)) / std_S L(z)`` per dev example.

    Mean and (population) std are over the subsets of the split (axis 0); a zero std is treated as 1.
    The result is clipped to ``[-clip, clip]`` as the training objective requires (Eq. 9).
    """
    losses = np.asarray(losses, dtype=np.float64)
    mean = losses.mean(axis=0, keepdims=True)
    std = losses.std(axis=0, keepdims=True)
    std = np.where(std > 0, std, 1.0)
    y = -(losses - mean) / std
    return np.clip(y, -clip, clip) if clip is not None else y
