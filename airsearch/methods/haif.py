"""HAIF and HAIF-T: heuristically adjusted influence functions (methods.md §4; HAIF Eq. 23).

``I(z_test, z_k) = g(z_test)^T A( sum_j A(grad l_j(z_k)) )``, ``A(v) = v / (||v|| + eps)``

where l_j is the NLL of response token j of the train example. HAIF-T drops the outer A. The test
gradient is not normalised and only the final model is used. The Hessian is the identity, or with
K-FAC / EK-FAC preconditioning every gradient (each token gradient of the train example, and the test
gradient) is whitened by ``(H + lambda)^{-1/2}`` first, so the product is ``g_test^T (H + lambda)^{-1} ...``. The
per-token gradients come from one forward pass per train example and a vmapped pullback
(:meth:`~airsearch.methods.gradients.GradientModel.per_token_grads`); the normalisations are done in
the full parameter space, then the train vector is projected once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from airsearch.data.example import Example
from airsearch.methods.base import AttributionMethod
from airsearch.methods.gradients import ParamSet
from airsearch.methods.options import GradientOptions
from airsearch.methods.plugin import MethodModels, gradient_plugin
from airsearch.methods.precondition import Side
from airsearch.methods.projection import Projector
from airsearch.methods.store import VectorManifest
from airsearch.methods.tracin import CheckpointFeatures


class HAIF(AttributionMethod):
    """HAIF (``outer=True``, name ``haif``) or HAIF-T (``outer=False``, name ``haif-t``) on one model."""

    def __init__(
        self,
        lm: Any,
        *,
        outer: bool = True,
        params: ParamSet | None = None,
        projector: Projector | None = None,
        **featurizer_kwargs: Any,
    ) -> None:
        self.ck = CheckpointFeatures([lm], params, projector, **featurizer_kwargs)
        self.outer = outer
        self.name = "haif" if outer else "haif-t"

    def _side(self) -> Side | None:
        return "whiten" if self.ck.precondition.active else None

    def train_features(self, examples: Sequence[Example]) -> torch.Tensor:
        return self.ck.per_checkpoint(examples, mode=self.name, side=self._side())[0]

    def train_token_features(self, example: Example) -> tuple[torch.Tensor, list[int]]:
        rows, targets = self.ck.token_rows(example, mode=self.name, side=self._side())
        return rows[0], targets

    def test_features(self, examples: Sequence[Example]) -> torch.Tensor:
        return self.ck.per_checkpoint(examples, mode="grad", side=self._side())[0]

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "precondition": self.ck.precondition.describe()}

    def manifest(self) -> VectorManifest:
        return self.ck.manifest(self.name, self.ck.featurizers[0].dim(), {"method": self.name})


def build_haif(options: GradientOptions, models: MethodModels) -> HAIF:
    """HAIF on the target LM (HAIF Eq. 23); HAIF-T (token normalisation on the train side only) when
    the plug-in is ``haif-t``."""
    return HAIF(models.target(options), outer=models.method == "haif", **models.gradient_kwargs(options))


PLUGINS = (
    gradient_plugin("haif", build_haif, "HAIF: normalised sum of normalised token gradients"),
    gradient_plugin("haif-t", build_haif, "HAIF-T: HAIF's token normalisation on the train side"),
)
