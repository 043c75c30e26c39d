"""Gradient dot product (TracIn), gradient cosine, and TracIn over several checkpoints (methods.md §5).

- grad-dot, one checkpoint: ``tau(i, j) = g(z_j, th) . g(z_i, th)`` (DDA Eq. 6 with identity Hessian);
- grad-cos: the same with both gradients unit-normalised;
- TracIn over checkpoints th_1..th_N with weights eta_c (e.g. learning rates; default 1):
  ``tau(i, j) = sum_c eta_c g(z_j, th_c) . g(z_i, th_c)``.

Positive means the train example supports the test example: a gradient step on z_i lowers L(z_j).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.methods.base import AttributionMethod
from airsearch.methods.features import GradientFeaturizer
from airsearch.methods.gradients import ParamSet
from airsearch.methods.projection import Projector
from airsearch.methods.store import VectorManifest


def lm_identity(lm: Any) -> str:
    """A short name for a checkpoint in manifests: its source path or hub name."""
    return str(getattr(lm, "source", type(lm).__name__))


class CheckpointFeatures:
    """Gradient featurizers of one or more checkpoints sharing a parameter set and a projection."""

    def __init__(
        self,
        lms: Sequence[Any],
        params: ParamSet | None = None,
        projector: Projector | None = None,
        *,
        batch_size: int = 8,
        max_length: int | None = None,
        show_progress: bool = True,
    ) -> None:
        if not lms:
            raise InputError("at least one checkpoint is needed", field="checkpoint")
        self.lms = list(lms)
        self.params = params or ParamSet()
        self.projector = projector or Projector(dim=None)
        self.featurizers = [
            GradientFeaturizer(
                lm,
                self.params,
                self.projector,
                batch_size=batch_size,
                max_length=max_length,
                show_progress=show_progress,
            )
            for lm in self.lms
        ]

    def per_checkpoint(
        self, examples: Sequence[Example], mode: str = "grad", normalize: bool = False
    ) -> list[torch.Tensor]:
        return [f.features(examples, mode=mode, normalize=normalize) for f in self.featurizers]  # type: ignore[arg-type]

    def fingerprint(self) -> str:
        from airsearch.fingerprint import fingerprint_json

        return fingerprint_json([lm.fingerprint for lm in self.lms])

    def manifest(self, feature: str, dim: int, extra: dict[str, Any]) -> VectorManifest:
        return VectorManifest(
            feature=feature,
            model_fingerprint=self.fingerprint(),
            checkpoints=[lm_identity(lm) for lm in self.lms],
            param_set=self.params.describe(),
            projection=self.projector.describe(),
            dim=dim,
            extra=extra,
        )


class TracIn(AttributionMethod):
    """Grad-dot / TracIn over checkpoints; ``normalize=True`` gives grad-cos (name ``gradcos``)."""

    def __init__(
        self,
        checkpoints: Sequence[Any],
        *,
        normalize: bool = False,
        weights: Sequence[float] | None = None,
        params: ParamSet | None = None,
        projector: Projector | None = None,
        **featurizer_kwargs: Any,
    ) -> None:
        self.ck = CheckpointFeatures(checkpoints, params, projector, **featurizer_kwargs)
        self.normalize = normalize
        self.weights = list(weights) if weights is not None else [1.0] * len(self.ck.lms)
        if len(self.weights) != len(self.ck.lms):
            raise InputError(f"{len(self.weights)} weights for {len(self.ck.lms)} checkpoints")
        self.name = "gradcos" if normalize else "tracin"

    def train_features(self, examples: Sequence[Example]) -> torch.Tensor:
        return torch.cat(self.ck.per_checkpoint(examples, normalize=self.normalize), dim=1)

    def test_features(self, examples: Sequence[Example]) -> torch.Tensor:
        feats = self.ck.per_checkpoint(examples, normalize=self.normalize)
        return torch.cat([w * f for w, f in zip(self.weights, feats, strict=True)], dim=1)

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "normalize": self.normalize,
            "weights": self.weights,
            "checkpoints": len(self.ck.lms),
        }

    def manifest(self) -> VectorManifest:
        dim = sum(f.dim() for f in self.ck.featurizers)
        return self.ck.manifest("grad-unit" if self.normalize else "grad", dim, {"method": self.name})
