"""Gradient dot product (TracIn), gradient cosine, and TracIn over several checkpoints (methods.md §2).

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
from airsearch.lm.compat import require_same_model
from airsearch.methods.base import AttributionMethod
from airsearch.methods.features import GradientFeaturizer
from airsearch.methods.gradients import ParamSet
from airsearch.methods.options import GradientOptions
from airsearch.methods.plugin import MethodModels, gradient_plugin
from airsearch.methods.precondition import Precondition, Side
from airsearch.methods.projection import Projector
from airsearch.methods.store import VectorManifest


def lm_identity(lm: Any) -> str:
    """A short name for a checkpoint in manifests: its source path or hub name."""
    return str(getattr(lm, "source", type(lm).__name__))


class CheckpointFeatures:
    """Gradient featurizers of one or more checkpoints sharing a parameter set, a projection and a
    preconditioning (each checkpoint gets its own K-FAC / EK-FAC factors)."""

    def __init__(
        self,
        lms: Sequence[Any],
        params: ParamSet | None = None,
        projector: Projector | None = None,
        *,
        batch_size: int = 8,
        max_length: int | None = None,
        show_progress: bool = True,
        precondition: Precondition | None = None,
        fields: Sequence[str] | None = None,
    ) -> None:
        """``fields`` names the config field of each model (default ``checkpoints``); every model must
        share the tokenizer and architecture of the target, the last checkpoint
        (:func:`airsearch.lm.compat.require_same_model`)."""
        if not lms:
            raise InputError("at least one checkpoint is needed", field="checkpoints")
        self.lms = list(lms)
        names = list(fields) if fields is not None else ["checkpoints"] * len(self.lms)
        checkpoints = [lm for lm, f in zip(self.lms, names, strict=True) if f == "checkpoints"]
        target = checkpoints[-1] if checkpoints else self.lms[0]
        require_same_model(
            target, [(lm, f) for lm, f in zip(self.lms, names, strict=True) if lm is not target]
        )
        self.params = params or ParamSet()
        self.projector = projector or Projector(dim=None)
        self.precondition = precondition or Precondition()
        self.featurizers = [
            GradientFeaturizer(
                lm,
                self.params,
                self.projector,
                batch_size=batch_size,
                max_length=max_length,
                show_progress=show_progress,
                precondition=self.precondition,
            )
            for lm in self.lms
        ]

    def sides(self, normalize: bool) -> tuple[Side | None, Side | None]:
        """(train side, test side) of the preconditioning: ``(None, "inverse")`` for exact plain dot
        products, ``("whiten", "whiten")`` when a gradient is normalised or the vectors are projected.

        Both give ``g_j^T (H + lambda)^{-1} g_i`` exactly; they differ under a JL projection ``P``.
        ``P (H + lambda)^{-1} g_j`` is nearly orthogonal to ``P g_i`` (the inverse amplifies the
        low-curvature directions where train gradients have little mass: mean |cos| 0.008 against 0.63
        for plain gradients on the tiny LM), and the JL error of an inner product scales with the
        product of the norms, so the estimate drowned in noise (Pearson 0.67 with the unprojected
        influence at 2,048 dims, where grad-dot keeps 0.999: the LDS halving of the reproduction).
        Whitened on both sides, ``P (H + lambda)^{-1/2} g``, the same inner product is estimated from
        vectors that stay correlated (|cos| 0.21; Pearson 0.994). ``tests/test_method_columns.py``
        checks this at 2,048 dims."""
        if not self.precondition.active:
            return None, None
        if normalize or self.projector.dim is not None:
            return "whiten", "whiten"
        return None, "inverse"

    def per_checkpoint(
        self,
        examples: Sequence[Example],
        mode: str = "grad",
        normalize: bool = False,
        side: Side | None = None,
    ) -> list[torch.Tensor]:
        return [f.features(examples, mode=mode, normalize=normalize, side=side) for f in self.featurizers]  # type: ignore[arg-type]

    def token_rows(
        self, example: Example, mode: str = "grad", normalize: bool = False, side: Side | None = None
    ) -> tuple[list[torch.Tensor], list[int]]:
        """Per-checkpoint per-token rows of one train example (see ``GradientFeaturizer.token_features``)."""
        rows, targets = [], None
        for f in self.featurizers:
            r, t = f.token_features(example, mode=mode, normalize=normalize, side=side)  # type: ignore[arg-type]
            if targets is not None and t != targets:
                raise ValueError(
                    "checkpoints tokenise the example differently; per-token scores need one tokenizer"
                )
            rows.append(r)
            targets = t
        return rows, targets or []

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
            extra={**extra, "precondition": self.precondition.describe()}
            if self.precondition.active
            else extra,
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
        side = self.ck.sides(self.normalize)[0]
        return _concat(self.ck.per_checkpoint(examples, normalize=self.normalize, side=side))

    def test_features(self, examples: Sequence[Example]) -> torch.Tensor:
        side = self.ck.sides(self.normalize)[1]
        feats = self.ck.per_checkpoint(examples, normalize=self.normalize, side=side)
        return _concat([f if w == 1.0 else w * f for w, f in zip(self.weights, feats, strict=True)])

    def score_against(self, train: Sequence[Example], queries: torch.Tensor) -> torch.Tensor:
        """Exact scores of Linear-only parameter sets without the train gradient rows: each train
        batch's per-layer gradients meet the queries' matching columns and are dropped
        (:meth:`GradientFeaturizer.products`); otherwise rows then products."""
        if self.ck.sides(self.normalize)[0] is None:
            total, offset = None, 0
            for f in self.ck.featurizers:
                block = f.products(train, queries[:, offset : offset + f.dim()], normalize=self.normalize)
                if block is None:
                    break
                total, offset = block if total is None else total + block, offset + f.dim()
            else:
                return total
        return super().score_against(train, queries)

    def train_token_features(self, example: Example) -> tuple[torch.Tensor, list[int]]:
        side = self.ck.sides(self.normalize)[0]
        rows, targets = self.ck.token_rows(example, normalize=self.normalize, side=side)
        return torch.cat(rows, dim=1), targets

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "normalize": self.normalize,
            "weights": self.weights,
            "checkpoints": len(self.ck.lms),
            "precondition": self.ck.precondition.describe(),
        }

    def manifest(self) -> VectorManifest:
        dim = sum(f.dim() for f in self.ck.featurizers)
        side = self.ck.sides(self.normalize)[0]
        extra = {"method": self.name, **({"train_side": side} if side else {})}
        return self.ck.manifest("grad-unit" if self.normalize else "grad", dim, extra)


def _concat(feats: list[torch.Tensor]) -> torch.Tensor:
    """Checkpoints' feature blocks side by side (one checkpoint: its block, not a copy)."""
    return feats[0] if len(feats) == 1 else torch.cat(feats, dim=1)


def build_tracin(options: GradientOptions, models: MethodModels) -> TracIn:
    """Grad-dot / TracIn over the checkpoints (default: the target LM alone); grad-cos (DDA Eq. 6)
    when the plug-in is ``gradcos``: unit-normalised gradients on both sides."""
    normalize = models.method == "gradcos"
    return TracIn(
        models.gradient_checkpoints(options), normalize=normalize, **models.gradient_kwargs(options)
    )


PLUGINS = (
    gradient_plugin(
        "tracin",
        build_tracin,
        "grad-dot / TracIn: sum over checkpoints of train . test gradients",
        checkpoints=True,
    ),
    gradient_plugin(
        "gradcos", build_tracin, "grad-cos: cosine of train and test gradients", checkpoints=True
    ),
)
