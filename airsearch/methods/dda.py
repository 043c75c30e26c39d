"""DDA: Debias and Denoise Attribution (methods.md §3; DDA paper Eqs. 6, 9-12).

``IS_DD(z_t, z_e) = (1/N) sum_c ĝ(z_e, th_c) . ĝ(z_t, th_c) - beta * ĝ(z_e, th_0) . ĝ(z_t, th_0)``

- denoise (Eq. 10): the mean over the fine-tuning checkpoints th_1..th_N;
- debias, two readings of the paper [D: both offered, ``debias=``]:
  - ``"eq11"`` (default): minus beta times the base model th_0's own score,
    ``- beta * ĝ(z_e, th_0) . ĝ(z_t, th_0)`` (Eq. 11 with beta = 1);
  - ``"eq9"``: the test gradient stays at the fine-tuned model th' (the last checkpoint th_N) and only
    the train gradient is taken at th_0: ``- beta * ĝ(z_e, th_N) . ĝ(z_t, th_0)`` (Eq. 9,
    ``IS_DB = g(z_e, th')^T [g(z_t, th') - beta g(z_t, th_0)]``);
- ĝ: gradients unit-normalised by default [D] (the paper's scores look like cosines).
- contrastive (Eq. 12, aggregated form [D]): ``score(z_t) = sum_{e in bad} IS_DD(z_t, e) -
  sum_{e in good} IS_DD(z_t, e)``.

As a feature method: train vector ``[ĝ_1(z_t), ..., ĝ_N(z_t), ĝ_0(z_t)]``, test vector
``[ĝ_1(z_e)/N, ..., ĝ_N(z_e)/N, -beta ĝ_0(z_e)]`` (Eq. 11) or ``[..., -beta ĝ_N(z_e)]`` (Eq. 9);
their dot product is IS_DD. The train vectors are the same under both readings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.methods.base import AttributionMethod
from airsearch.methods.gradients import ParamSet
from airsearch.methods.names import DEBIAS_READINGS as DEBIAS_READINGS  # re-exported
from airsearch.methods.options import DDAOptions
from airsearch.methods.plugin import MethodModels, gradient_plugin
from airsearch.methods.projection import Projector
from airsearch.methods.store import VectorManifest
from airsearch.methods.tracin import CheckpointFeatures


class DDA(AttributionMethod):
    """DDA over ``checkpoints`` (fine-tuned th_1..th_N) with an optional ``base`` model th_0."""

    name = "dda"

    def __init__(
        self,
        checkpoints: Sequence[Any],
        base: Any | None = None,
        *,
        beta: float = 1.0,
        debias: str = "eq11",
        normalize: bool = True,
        params: ParamSet | None = None,
        projector: Projector | None = None,
        **featurizer_kwargs: Any,
    ) -> None:
        if not checkpoints:
            raise InputError("DDA needs at least one fine-tuned checkpoint", field="checkpoints")
        if debias not in DEBIAS_READINGS:
            raise InputError(f"must be one of {list(DEBIAS_READINGS)}, got {debias!r}", field="debias")
        self.n_checkpoints = len(checkpoints)
        self.beta = float(beta)
        self.debias = debias
        self.use_base = base is not None and self.beta != 0.0
        lms = list(checkpoints) + ([base] if self.use_base else [])
        fields = ["checkpoints"] * len(checkpoints) + (["base_lm"] if self.use_base else [])
        self.ck = CheckpointFeatures(lms, params, projector, fields=fields, **featurizer_kwargs)
        self.normalize = normalize

    def train_features(self, examples: Sequence[Example]) -> torch.Tensor:
        side = self.ck.sides(self.normalize)[0]
        return torch.cat(self.ck.per_checkpoint(examples, normalize=self.normalize, side=side), dim=1)

    def train_token_features(self, example: Example) -> tuple[torch.Tensor, list[int]]:
        side = self.ck.sides(self.normalize)[0]
        rows, targets = self.ck.token_rows(example, normalize=self.normalize, side=side)
        return torch.cat(rows, dim=1), targets

    def test_features(self, examples: Sequence[Example]) -> torch.Tensor:
        side = self.ck.sides(self.normalize)[1]
        featurizers = self.ck.featurizers
        if self.use_base and self.debias == "eq9":
            featurizers = featurizers[: self.n_checkpoints]  # the base's test gradients are not used
        feats = [f.features(examples, normalize=self.normalize, side=side) for f in featurizers]
        scaled = [f / self.n_checkpoints for f in feats[: self.n_checkpoints]]
        if self.use_base:
            base_side = feats[-1] if self.debias == "eq11" else feats[self.n_checkpoints - 1]
            scaled.append(-self.beta * base_side)
        return torch.cat(scaled, dim=1)

    def contrastive_query(self, bad: Sequence[Example], good: Sequence[Example] = ()) -> torch.Tensor:
        """The single test vector of Eq. 12: sum of bad test vectors minus sum of good ones, ``[1, d]``."""
        q = self.test_features(bad).sum(dim=0, keepdim=True)
        if good:
            q = q - self.test_features(good).sum(dim=0, keepdim=True)
        return q

    def contrastive_scores(
        self, train: Sequence[Example], bad: Sequence[Example], good: Sequence[Example] = ()
    ) -> torch.Tensor:
        """``[n_train]``: DD(bad) - DD(good) for every train example."""
        return (self.train_features(train) @ self.contrastive_query(bad, good).T)[:, 0]

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "beta": self.beta,
            "debias": self.debias,
            "normalize": self.normalize,
            "checkpoints": self.n_checkpoints,
            "base": self.use_base,
            "precondition": self.ck.precondition.describe(),
        }

    def manifest(self) -> VectorManifest:
        dim = sum(f.dim() for f in self.ck.featurizers)
        return self.ck.manifest(
            "grad-unit" if self.normalize else "grad", dim, {"method": self.name, "base": self.use_base}
        )


def build_dda(options: DDAOptions, models: MethodModels) -> DDA:
    """DDA over the checkpoints, with the base model (``base_lm``) carrying the debias term."""
    base = models.base_lm
    if base is None and options.base_lm:
        base = models.load(options.base_lm, options.max_length)
    return DDA(
        models.gradient_checkpoints(options),
        base=base,
        beta=options.beta,
        debias=options.debias,
        **models.gradient_kwargs(options),
    )


PLUGINS = (
    gradient_plugin(
        "dda", build_dda, "DDA: debiased and denoised grad-cos (Eq. 9 / 11)", options=DDAOptions,
        spec_options=("beta", "debias"), checkpoints=True,
    ),
)  # fmt: skip
