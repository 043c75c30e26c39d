"""Attribution metrics shared by training (held-out LDS) and evaluation."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from airsearch.errors import InputError


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two vectors (average ranks for ties); NaN if either is constant."""
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def lds_per_example(predicted: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Linear datamodeling score per dev example (equations.md §6).

    ``predicted`` and ``targets`` are ``[n_subsets, n_dev]``: the method's group score for each subset
    and the label (negated, normalised loss) for each subset. Returns the Spearman correlation across
    subsets for each dev example, ``[n_dev]``.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if predicted.shape != targets.shape:
        raise InputError(f"shape mismatch: predicted {predicted.shape} vs targets {targets.shape}")
    return np.array([spearman(predicted[:, j], targets[:, j]) for j in range(predicted.shape[1])])


def lds(predicted: np.ndarray, targets: np.ndarray) -> float:
    """Mean LDS over dev examples, ignoring examples whose labels or scores are constant."""
    per = lds_per_example(predicted, targets)
    return float(np.nanmean(per)) if np.isfinite(per).any() else float("nan")
