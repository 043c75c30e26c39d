"""Gradient feature vectors of examples under one model: the shared pass behind every gradient method.

For each example, one of (methods.md §0, §3):

- ``grad``: ``g(z, th)``, the gradient of the mean response NLL;
- ``haif-t``: ``sum_j A(grad l_j(z))`` with ``A(v) = v / (||v|| + eps)`` over response tokens j
  (HAIF Eq. 23 without the outer A);
- ``haif``: ``A(sum_j A(grad l_j(z)))`` (HAIF Eq. 23).

``normalize`` scales the full-space vector to unit norm (grad-cos, DDA). All of this happens in the
full parameter space (norms are exact); the result is then projected (:class:`Projector`), so with
``dim=None`` every score is exact and with a projection it is a JL estimate of the exact one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from airsearch.data.example import Example
from airsearch.methods.gradients import GradientModel, ParamSet, length_sorted_batches, prepare
from airsearch.methods.projection import Projector, unit_normalize
from airsearch.progress import progress

FeatureMode = Literal["grad", "haif", "haif-t"]
HAIF_EPS = 1e-8


def haif_combine(token_grads: torch.Tensor, *, outer: bool, eps: float = HAIF_EPS) -> torch.Tensor:
    """``sum_j A(v_j)`` (HAIF-T) or ``A(sum_j A(v_j))`` (HAIF) of per-token gradients ``[n_tokens, p]``."""
    summed = (token_grads / (token_grads.norm(dim=1, keepdim=True) + eps)).sum(dim=0)
    return summed / (summed.norm() + eps) if outer else summed


@dataclass
class GradientFeaturizer:
    """Feature vectors of examples under one target LM (``lm`` is a :class:`airsearch.lm.TargetLM`)."""

    lm: Any
    params: ParamSet = field(default_factory=ParamSet)
    projector: Projector = field(default_factory=lambda: Projector(dim=None))
    batch_size: int = 8
    max_length: int | None = None
    show_progress: bool = True
    _gm: GradientModel | None = field(default=None, repr=False)

    @property
    def gm(self) -> GradientModel:
        if self._gm is None:
            self._gm = prepare(self.lm, self.params)
        return self._gm

    def dim(self) -> int:
        return self.projector.output_dim(self.gm.num_params)

    def features(
        self, examples: Sequence[Example], mode: FeatureMode = "grad", normalize: bool = False
    ) -> torch.Tensor:
        """``[n, dim]`` float32 feature rows, in the order of ``examples``."""
        from airsearch.lm import encode_examples, tokenize_example

        n = len(examples)
        out = torch.zeros(n, self.dim())
        if n == 0:
            return out
        max_length = self.max_length or self.lm.max_length
        lengths = [len(tokenize_example(self.lm.tokenizer, ex, max_length)[0]) for ex in examples]
        batches = length_sorted_batches(n, lengths, self.batch_size)
        for idx in progress(
            batches, desc=f"{mode} gradients", unit="batch", quiet=None if self.show_progress else True
        ):
            enc = encode_examples(self.lm, [examples[i] for i in idx], max_length)
            if mode == "grad":
                full = self.gm.per_example_grads(enc, chunk_size=self.batch_size)
            elif mode in ("haif", "haif-t"):
                full = torch.stack(
                    [
                        haif_combine(
                            self.gm.per_token_grads(enc["input_ids"][r], enc["labels"][r]),
                            outer=mode == "haif",
                        )
                        for r in range(len(idx))
                    ]
                )
            else:
                raise ValueError(f"unknown feature mode {mode!r}")
            if normalize:
                full = unit_normalize(full)
            out[idx] = self.projector(full.cpu())
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "params": self.params.describe(),
            "projection": self.projector.describe(),
            "max_length": self.max_length or self.lm.max_length,
        }
