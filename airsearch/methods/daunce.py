"""Daunce: attribution through the covariance of losses across perturbed models (methods.md §5).

White-box objective (Daunce Eq. 5, linear term in logit space as the official code):

``J(th) = mean_i [ L_i(th) - L_i(th0) - c_i <logits_i(th) - logits_i(th0), dL_i/dlogits(th0)> ]``,
``c_i = 1 + rho (2 xi_i - 1)``, ``xi_i ~ U(0, 1)`` per example (seeded), rho = 1.

The inner product is summed over the example's positions and the vocabulary. At th = th0 the gradient
of the first two terms is ``grad L_i`` and that of the linear term ``-c_i grad L_i`` (chain rule through
the logits), so ``grad J(th0) = mean_i -rho (2 xi_i - 1) grad L_i``: each model starts by stepping
along a random signed mix of the example gradients (tested numerically).

Score (Eq. 6): with ``M[k, i] = L_i(th^k)`` recorded for every train and test example under each of
the K models, ``tau(i, j) = corr_k(M[:, i], M[:, j])`` (Pearson, default) or the covariance. As a
feature method each example's vector is its centred loss profile over the K models, divided by its
norm (correlation) or by ``sqrt(K - 1)`` (covariance), so a dot product gives the score.

Black-box (Table 2): plain fine-tuning on random subsets, needing only per-example losses. That is
expressed with two small interfaces: a :class:`LossProvider` (examples -> losses under one model) and
a :class:`PerturbedModelFactory` (a subset -> a fine-tuned model's LossProvider). The local
implementations use :func:`airsearch.lm.finetune`; an API-backed factory would upload the subset to a
fine-tuning endpoint in ``fit`` and return a provider whose ``losses`` requests the log-probabilities
of the response tokens (e.g. with ``echo``/``logprobs``) and averages their negatives. Nothing else
changes: the K loss profiles feed the same correlation score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.methods.base import AttributionMethod
from airsearch.methods.names import ScoreKind
from airsearch.methods.store import VectorManifest


# ------------------------------------------------------------------------------------- objective
def logit_grad_of_mean_nll(base_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``dL_i/dlogits`` at th0 for the mean response NLL, in closed form: ``(softmax - onehot) / n_i``.

    ``base_logits`` ``[b, t, V]``, ``labels`` ``[b, t]`` (-100 masked). Position t's logits predict
    ``labels[t + 1]``; rows of unscored positions (and the last position) are zero.
    """
    shift = base_logits[:, :-1].float()
    targets = labels[:, 1:]
    mask = targets != -100
    probs = torch.softmax(shift, dim=-1)
    onehot = torch.zeros_like(probs).scatter_(-1, targets.clamp(min=0).unsqueeze(-1), 1.0)
    n = mask.sum(dim=1).clamp(min=1).to(probs.dtype)
    g = (probs - onehot) * mask.unsqueeze(-1) / n[:, None, None]
    return torch.cat([g, torch.zeros_like(base_logits[:, :1].float())], dim=1)


def perturbed_objective(
    logits: torch.Tensor, base_logits: torch.Tensor, labels: torch.Tensor, xi: torch.Tensor, rho: float = 1.0
) -> torch.Tensor:
    """Daunce Eq. 5 on one batch (a scalar; the mean over the batch's examples)."""
    from airsearch.lm import masked_token_nll

    base_logits = base_logits.detach().float()
    loss = masked_token_nll(logits, labels, "mean")
    base_loss = masked_token_nll(base_logits, labels, "mean")
    coef = 1.0 + rho * (2.0 * xi.to(loss.dtype) - 1.0)
    grad0 = logit_grad_of_mean_nll(base_logits, labels)
    linear = ((logits.float() - base_logits) * grad0).sum(dim=(1, 2))
    return (loss - base_loss - coef * linear).mean()


def example_xi(seed: int, model_index: int, ids: Sequence[str]) -> np.ndarray:
    """``xi_i^k ~ U(0, 1)``, reproducible per (seed, model k, example id) whatever the batch order."""
    from airsearch.fingerprint import fingerprint_json

    out = np.empty(len(ids))
    for j, i in enumerate(ids):
        h = int(fingerprint_json([seed, model_index, i]), 16)
        out[j] = np.random.default_rng(h).random()
    return out


# ----------------------------------------------------------------------------------------- scores
def loss_profile_features(losses: np.ndarray, kind: ScoreKind = "corr") -> np.ndarray:
    """``[n, K]`` rows whose dot products are the Eq. 6 scores, from a ``[K, n]`` loss matrix."""
    m = np.asarray(losses, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 2:
        raise InputError(f"Daunce needs losses under at least 2 models, got shape {m.shape}")
    centred = (m - m.mean(axis=0, keepdims=True)).T
    if kind == "cov":
        return centred / np.sqrt(m.shape[0] - 1)
    if kind == "corr":
        norm = np.linalg.norm(centred, axis=1, keepdims=True)
        return centred / np.where(norm > 0, norm, 1.0)
    raise InputError(f"unknown Daunce score kind {kind!r}; use corr or cov", field="daunce_kind")


def daunce_scores(train_losses: np.ndarray, test_losses: np.ndarray, kind: ScoreKind = "corr") -> np.ndarray:
    """``[n_train, n_test]`` correlation (default) or covariance of losses across the K models."""
    return loss_profile_features(train_losses, kind) @ loss_profile_features(test_losses, kind).T


# --------------------------------------------------------------------------------- loss providers
class LossProvider(Protocol):
    """Per-example losses ``L(z, th^k)`` (mean response NLL) under one model that may be a black box."""

    def losses(self, examples: Sequence[Example]) -> np.ndarray: ...


class PerturbedModelFactory(Protocol):
    """Trains one perturbed model on a subset and returns its :class:`LossProvider` (black-box Daunce)."""

    def fit(self, subset: Sequence[Example], seed: int) -> LossProvider: ...


@dataclass
class LocalLMLosses:
    """A :class:`LossProvider` over a local :class:`airsearch.lm.TargetLM`."""

    lm: Any
    batch_size: int = 16

    def losses(self, examples: Sequence[Example]) -> np.ndarray:
        from airsearch.lm import example_losses

        return example_losses(self.lm, examples, batch_size=self.batch_size, show_progress=False)


@dataclass
class LocalFinetuneFactory:
    """Table 2's black-box objective done locally: plain fine-tuning (LoRA or full) on the subset."""

    lm: Any
    config: Any  # airsearch.lm.finetune.FinetuneConfig

    def fit(self, subset: Sequence[Example], seed: int) -> LossProvider:
        from airsearch.lm.finetune import finetune

        tuned = finetune(self.lm, subset, self.config.replace(seed=seed), show_progress=False)
        return LocalLMLosses(tuned)


@dataclass
class RecordedLosses:
    """A :class:`LossProvider` reading losses recorded during training, with an optional live fallback."""

    by_id: Mapping[str, float]
    fallback: LossProvider | None = None

    def losses(self, examples: Sequence[Example]) -> np.ndarray:
        missing = [ex for ex in examples if ex.id not in self.by_id]
        extra: dict[str, float] = {}
        if missing:
            if self.fallback is None:
                raise InputError(
                    f"no recorded loss for {len(missing)} example(s), e.g. '{missing[0].id}'; "
                    "they were not in the Daunce run",
                )
            extra = dict(zip([ex.id for ex in missing], self.fallback.losses(missing), strict=True))
        return np.array([self.by_id[ex.id] if ex.id in self.by_id else extra[ex.id] for ex in examples])


def subset_indices(n: int, ratio: float, seed: int, model_index: int) -> np.ndarray:
    """The seeded random subset (ratio r of n, at least 1) that perturbed model k trains on."""
    rng = np.random.default_rng([seed, model_index])
    size = max(1, int(round(ratio * n)))
    return np.sort(rng.choice(n, size=size, replace=False))


def blackbox_providers(
    factory: PerturbedModelFactory, train: Sequence[Example], k: int, ratio: float = 0.5, seed: int = 0
) -> list[LossProvider]:
    """Black-box Daunce: K models, each fitted by ``factory`` on a random subset (Table 2)."""
    return [
        factory.fit([train[i] for i in subset_indices(len(train), ratio, seed, m)], seed + m)
        for m in range(k)
    ]


# ----------------------------------------------------------------------------------------- method
class Daunce(AttributionMethod):
    """Daunce over K loss providers (white-box perturbed LoRA models or black-box fine-tunes)."""

    name = "daunce"

    def __init__(
        self,
        providers: Sequence[LossProvider],
        kind: ScoreKind = "corr",
        model_fingerprint: str = "",
        extra: dict[str, Any] | None = None,
    ) -> None:
        if len(providers) < 2:
            raise InputError("Daunce needs at least 2 perturbed models")
        if kind == "corr" and len(providers) < 3:
            # with K = 2 every example's centred loss profile is a multiple of (1, -1): correlations are +-1
            raise InputError(
                f"with {len(providers)} perturbed models the correlation across models is always +1 or -1 "
                "(every score would be 1.0 in size); use at least 3 models, or the covariance score 'cov'",
                field="daunce_kind",
            )
        self.providers = list(providers)
        self.kind = kind
        self.model_fingerprint = model_fingerprint  # the run / LM it scores with (in the manifest)
        self.extra = extra or {}

    def loss_matrix(self, examples: Sequence[Example]) -> np.ndarray:
        """``[K, n]``: each example's loss under each model."""
        return np.stack([np.asarray(p.losses(examples), dtype=np.float64) for p in self.providers])

    def _features(self, examples: Sequence[Example]) -> torch.Tensor:
        if not examples:
            return torch.zeros(0, len(self.providers))
        return torch.from_numpy(loss_profile_features(self.loss_matrix(examples), self.kind)).float()

    train_features = _features
    test_features = _features

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "kind": self.kind, "models": len(self.providers), **self.extra}

    def manifest(self) -> VectorManifest:
        return VectorManifest(
            feature=f"daunce-{self.kind}",
            model_fingerprint=self.model_fingerprint,
            checkpoints=[],
            param_set={},
            projection={},
            dim=len(self.providers),
            extra={"method": self.name, **self.extra},
        )
