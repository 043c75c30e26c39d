"""Evaluation metrics (equations.md §6): LDS with a bootstrap interval, AUC, R@k, classification.

LDS itself is :func:`airsearch.metrics.lds_per_example`; this module adds the statistics the
evaluation tables report on top of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from airsearch.errors import InputError
from airsearch.metrics import lds_per_example, spearman
from airsearch.results import Result

__all__ = [
    "BootstrapCI",
    "LabelAccuracy",
    "PairedDifference",
    "bootstrap_mean_ci",
    "clustered_mean_ci",
    "cluster_bootstrap_means",
    "cluster_bootstrap_mean_ci",
    "lds_with_ci",
    "paired_difference",
    "roc_auc",
    "precision_at_k",
    "top_k_label_accuracy",
    "spearman",
]


@dataclass(frozen=True)
class BootstrapCI(Result):
    """A mean over examples with its percentile-bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float
    n_resamples: int


@dataclass(frozen=True)
class LabelAccuracy(Result):
    """Data classification (AirRep §7): shares of queries whose top-ranked examples have their label."""

    top1: float  # top-1 example has the query's label
    topk_any: float  # at least one of the top k has it
    topk_share: float  # mean share of the top k that have it
    k: int
    n_queries: int


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray, *, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> BootstrapCI:
    """Percentile bootstrap of the mean over examples (NaNs dropped), seeded.

    The point estimate is the mean of the full sample. With few distinct values the percentile
    interval can miss it by rounding; the interval is then widened to include it, so
    ``low <= mean <= high`` always holds.
    """

    def resampled_means(v: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(seed)
        means = np.empty(n_resamples)
        block = max(1, 2_000_000 // max(v.size, 1))  # bound memory: resample in chunks
        for start in range(0, n_resamples, block):
            stop = min(n_resamples, start + block)
            idx = rng.integers(0, v.size, size=(stop - start, v.size))
            means[start:stop] = v[idx].mean(axis=1)
        return means

    return _percentile_ci(values, resampled_means, n_resamples=n_resamples, confidence=confidence)


def _percentile_ci(
    values: Sequence[float] | np.ndarray,
    resampled_means: Callable[[np.ndarray], np.ndarray],
    *,
    n_resamples: int,
    confidence: float,
) -> BootstrapCI:
    """The one percentile interval: the point is the mean of the finite ``values``; the interval holds
    the central ``confidence`` of ``resampled_means(finite values)``, widened to contain the point.
    NaN everywhere (``n`` 0) when no value is finite."""
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        nan = float("nan")
        return BootstrapCI(nan, nan, nan, 0, confidence, n_resamples)
    point = float(finite.mean())
    means = resampled_means(finite)
    means = means[np.isfinite(means)]
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return BootstrapCI(
        point, float(min(low, point)), float(max(high, point)), int(finite.size), confidence, n_resamples
    )


def cluster_bootstrap_means(
    values: Sequence[float] | np.ndarray,
    clusters: Sequence[Any] | np.ndarray,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Means of ``n_resamples`` cluster-bootstrap resamples (NaN values dropped first).

    ``clusters`` gives each value's cluster: a 1-D sequence (one way, e.g. the task), or a 2-D
    ``[n, ways]`` array (e.g. task and split, crossed). Each way's clusters are resampled with
    replacement, independently; a value's weight is the product over ways of the number of times its
    cluster was drawn (the multi-way "pigeonhole" bootstrap, Owen 2007), and the resample's mean is
    the weighted mean. With one way this is the usual cluster bootstrap: whole clusters are drawn.
    """
    v = np.asarray(values, dtype=np.float64)
    keys = np.asarray(clusters, dtype=object)
    if keys.ndim == 1:
        keys = keys[:, None]
    if keys.shape[0] != v.shape[0]:
        raise ValueError(f"{v.shape[0]} values but {keys.shape[0]} cluster labels")
    keep = np.isfinite(v)
    v, keys = v[keep], keys[keep]
    if v.size == 0:
        return np.full(n_resamples, np.nan)
    rng = np.random.default_rng(seed)
    weights = np.ones((n_resamples, v.size))
    for way in range(keys.shape[1]):
        _, code = np.unique(keys[:, way].astype(str), return_inverse=True)
        n_clusters = int(code.max()) + 1
        draws = rng.integers(0, n_clusters, size=(n_resamples, n_clusters))
        counts = np.stack([np.bincount(d, minlength=n_clusters) for d in draws])  # [R, C]
        weights *= counts[:, code]
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (weights * v).sum(axis=1) / np.where(total > 0, total, 1), np.nan)


def cluster_bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray,
    clusters: Sequence[Any] | np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapCI:
    """Percentile interval of the mean from :func:`cluster_bootstrap_means` (clusters resampled).

    Use it whenever values share a cluster (dev examples of one task or one split): an example-level
    bootstrap treats them as independent and gives intervals that are too narrow. ``n`` counts the
    values; the point estimate is the plain mean, and the interval is widened to contain it.
    """
    return _percentile_ci(
        values,
        lambda _: cluster_bootstrap_means(values, clusters, n_resamples=n_resamples, seed=seed),
        n_resamples=n_resamples,
        confidence=confidence,
    )


def clustered_mean_ci(
    values: Sequence[float] | np.ndarray,
    clusters: np.ndarray | None,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> BootstrapCI:
    """:func:`cluster_bootstrap_mean_ci` over ``clusters`` (``[n, ways]``), or the example-level
    :func:`bootstrap_mean_ci` when there is no way with two clusters or more (``clusters`` ``None``)."""
    if clusters is None or np.asarray(clusters).shape[-1] == 0:
        return bootstrap_mean_ci(values, n_resamples=n_resamples, seed=seed)
    return cluster_bootstrap_mean_ci(values, clusters, n_resamples=n_resamples, seed=seed)


@dataclass(frozen=True)
class PairedDifference(Result):
    """Method a minus method b, paired by dev example: the mean difference with its cluster-bootstrap
    interval (``clustered``, the one tables show) and its example-level one (``examples``)."""

    a: str
    b: str
    clustered: BootstrapCI
    examples: BootstrapCI
    share_better: float  # share of the (finite) paired examples where a beats b


def paired_difference(
    a: str,
    b: str,
    values_a: Sequence[float] | np.ndarray,
    values_b: Sequence[float] | np.ndarray,
    clusters: np.ndarray | None,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> PairedDifference:
    """``values_a - values_b`` per example, resampled as the examples are clustered (``clusters``,
    ``[n, ways]``, e.g. task and split crossed; :func:`clustered_mean_ci`) and example by example."""
    diff = np.asarray(values_a, dtype=np.float64) - np.asarray(values_b, dtype=np.float64)
    finite = diff[np.isfinite(diff)]
    return PairedDifference(
        a=a,
        b=b,
        clustered=clustered_mean_ci(diff, clusters, n_resamples=n_resamples, seed=seed),
        examples=bootstrap_mean_ci(diff, n_resamples=n_resamples, seed=seed),
        share_better=float(np.mean(finite > 0)) if finite.size else float("nan"),
    )


def lds_with_ci(
    predicted: np.ndarray, targets: np.ndarray, *, n_resamples: int = 1000, seed: int = 0
) -> tuple[np.ndarray, BootstrapCI]:
    """Per-dev-example LDS (Spearman over subsets) and the bootstrap CI of its mean."""
    per = lds_per_example(predicted, targets)
    return per, bootstrap_mean_ci(per, n_resamples=n_resamples, seed=seed)


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve with positives = injected rows (DDA §5.2), ties counted as 1/2.

    Computed as the Mann-Whitney U statistic from average ranks, which equals
    ``sklearn.metrics.roc_auc_score(positive, scores)``. NaN when one class is empty.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(positive, dtype=bool).ravel()
    if s.shape != y.shape:
        raise InputError(f"shape mismatch: scores {s.shape} vs labels {y.shape}")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def precision_at_k(scores: np.ndarray, positive: np.ndarray, k: int) -> float:
    """R@k as DDA Eq. 13 defines it: the share of positives among the k highest-scored rows.

    Ties at the cut are broken by row order (a stable sort on the negated score).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(positive, dtype=bool).ravel()
    k = min(int(k), s.size)
    if k <= 0:
        return float("nan")
    top = np.argsort(-s, kind="stable")[:k]
    return float(y[top].mean())


def top_k_label_accuracy(
    ranked_labels: Sequence[Sequence[Any]], query_labels: Sequence[Any], k: int
) -> LabelAccuracy:
    """Data classification (AirRep §7) from each query's ranked training labels (best first).

    Returns ``top1`` (share of queries whose top-1 example has the query's label), ``topk_any``
    (share with at least one of the top k) and ``topk_share`` (mean share of the top k that match).
    """
    if len(ranked_labels) != len(query_labels):
        raise InputError("one ranked label list per query is needed")
    if not query_labels:
        nan = float("nan")
        return LabelAccuracy(top1=nan, topk_any=nan, topk_share=nan, k=k, n_queries=0)
    top1, any_k, share = [], [], []
    for ranked, label in zip(ranked_labels, query_labels, strict=True):
        hits = [r == label for r in list(ranked)[:k]]
        top1.append(bool(hits[:1]) and hits[0])
        any_k.append(any(hits))
        share.append(float(np.mean(hits)) if hits else 0.0)
    return LabelAccuracy(
        top1=float(np.mean(top1)),
        topk_any=float(np.mean(any_k)),
        topk_share=float(np.mean(share)),
        k=int(k),
        n_queries=len(query_labels),
    )
