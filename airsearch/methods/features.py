"""Gradient feature vectors of examples under one model: the shared pass behind every gradient method.

For each example, one of (methods.md §0, §4):

- ``grad``: ``g(z, th)``, the gradient of the mean response NLL;
- ``haif-t``: ``sum_j A(grad l_j(z))`` with ``A(v) = v / (||v|| + eps)`` over response tokens j
  (HAIF Eq. 23 without the outer A);
- ``haif``: ``A(sum_j A(grad l_j(z)))`` (HAIF Eq. 23).

``normalize`` scales the full-space vector to unit norm (grad-cos, DDA). All of this happens in the
full parameter space (norms are exact); the result is then projected (:class:`Projector`), so with
``dim=None`` every score is exact and with a projection it is a JL estimate of the exact one.

With a K-FAC / EK-FAC :class:`~airsearch.methods.precondition.Precondition`, ``side="inverse"``
multiplies each full-space gradient by ``(H + lambda)^{-1}`` (query side of unnormalised methods)
and ``side="whiten"`` by ``(H + lambda)^{-1/2}`` (both sides of normalising methods, before the
normalisation; for HAIF every token gradient).

:meth:`GradientFeaturizer.token_features` splits a feature vector into per-response-token rows that
add up to it exactly (``g = (1/n) sum_j grad l_j``; every normalisation is a scalar fixed by the
whole example), which gives token-level scores for every gradient method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from airsearch.data.example import Example
from airsearch.methods.gradients import GradientModel, ParamSet, length_sorted_batches, prepare
from airsearch.methods.linear_layers import LayerReuseError
from airsearch.methods.precondition import Precondition, Preconditioner, Side
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
    precondition: Precondition = field(default_factory=Precondition)
    _gm: GradientModel | None = field(default=None, repr=False)
    _pre: Preconditioner | None = field(default=None, repr=False)

    @property
    def gm(self) -> GradientModel:
        if self._gm is None:
            self._gm = prepare(self.lm, self.params)
        return self._gm

    @property
    def preconditioner(self) -> Preconditioner | None:
        """The model's K-FAC / EK-FAC preconditioner (factors loaded or fitted on first use)."""
        if self._pre is None and self.precondition.active:
            max_length = self.max_length or self.lm.max_length
            self._pre = self.precondition.build(self.lm, self.gm, max_length, self.show_progress)
        return self._pre

    def _transform(self, grads: torch.Tensor, side: Side | None) -> torch.Tensor:
        pre = self.preconditioner
        if side is None or pre is None:
            return grads
        return pre.apply(grads, -1.0 if side == "inverse" else -0.5)

    def dim(self) -> int:
        return self.projector.output_dim(self.gm.num_params)

    def features(
        self,
        examples: Sequence[Example],
        mode: FeatureMode = "grad",
        normalize: bool = False,
        side: Side | None = None,
    ) -> torch.Tensor:
        """``[n, dim]`` float32 feature rows, in the order of ``examples`` (``side``: preconditioning)."""
        n = len(examples)
        out = torch.zeros(n, self.dim())
        for idx, enc in self._batches(examples, f"{mode} gradients"):
            if mode == "grad":
                full = self._transform(self.gm.per_example_grads(enc, chunk_size=self.batch_size), side)
            elif mode in ("haif", "haif-t"):
                full = torch.stack(
                    [
                        haif_combine(
                            self._transform(
                                self.gm.per_token_grads(enc["input_ids"][r], enc["labels"][r]), side
                            ),
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

    def products(
        self, examples: Sequence[Example], queries: torch.Tensor, normalize: bool = False
    ) -> torch.Tensor | None:
        """``[n, q]`` equal to ``features(examples, normalize=normalize) @ queries.T`` without the
        ``[n, p]`` gradient rows: each batch's per-layer gradients are contracted with the matching
        columns of ``queries`` and dropped (memory and time scale with the layers, not the rows).
        Exact features only (no projection, no train-side preconditioning) of Linear-only parameter
        sets; None otherwise (then use :meth:`features`)."""
        if self.projector.dim is not None or self.projector.normalize or not self.gm.linear_route():
            return None
        out = torch.zeros(len(examples), queries.shape[0])
        try:
            for idx, enc in self._batches(examples, "grad gradients"):
                dots, sq_norms = self.gm.per_example_dots(enc, queries, chunk_size=self.batch_size)
                if normalize:  # unit_normalize of the row, applied to its products
                    dots = dots / sq_norms.sqrt().clamp(min=1e-12)[:, None]
                out[idx] = dots.cpu()
        except LayerReuseError:
            return None  # the gradient model has switched to its vmap route
        return out

    def _batches(self, examples: Sequence[Example], desc: str) -> Any:
        """``(row indices, encoded batch)`` of length-sorted batches, with a progress bar."""
        from airsearch.lm import encode_examples, tokenize_example

        if not examples:
            return
        max_length = self.max_length or self.lm.max_length
        if len(examples) == 1:  # a query: one batch, no length pass (it would tokenise it twice)
            batches = [[0]]
        else:
            lengths = [len(tokenize_example(self.lm.tokenizer, ex, max_length)[0]) for ex in examples]
            batches = length_sorted_batches(len(examples), lengths, self.batch_size)
        for idx in progress(batches, desc=desc, unit="batch", quiet=None if self.show_progress else True):
            yield idx, encode_examples(self.lm, [examples[i] for i in idx], max_length)

    def token_features(
        self, example: Example, mode: FeatureMode = "grad", normalize: bool = False, side: Side | None = None
    ) -> tuple[torch.Tensor, list[int]]:
        """Per-response-token rows ``[n_tokens, dim]`` summing to ``features([example])[0]``, and the
        ids of the scored (target) tokens.

        ``grad``: ``grad l_j / n`` (divided by ``||g||`` when normalised); ``haif-t``: ``A(grad l_j)``;
        ``haif``: ``A(grad l_j) / (||sum_j A(grad l_j)|| + eps)``; preconditioning is applied to each
        token gradient first (it is linear), the projection last (also linear).
        """
        from airsearch.lm import encode_examples

        max_length = self.max_length or self.lm.max_length
        enc = encode_examples(self.lm, [example], max_length)
        ids, labels = enc["input_ids"][0], enc["labels"][0]
        targets = ids[1:][labels[1:] != -100].tolist()
        rows = self._transform(self.gm.per_token_grads(ids, labels).cpu(), side)
        if mode == "grad":
            rows = rows / max(len(targets), 1)
            if normalize:
                rows = rows / rows.sum(0).norm().clamp(min=1e-12)
        elif mode in ("haif", "haif-t"):
            rows = rows / (rows.norm(dim=1, keepdim=True) + HAIF_EPS)
            if mode == "haif":
                rows = rows / (rows.sum(0).norm() + HAIF_EPS)
        else:
            raise ValueError(f"unknown feature mode {mode!r}")
        if normalize and mode != "grad":
            rows = rows / rows.sum(0).norm().clamp(min=1e-12)
        plain = Projector(self.projector.dim, self.projector.seed, self.projector.kind)
        out = plain(rows)
        if self.projector.normalize:
            out = out / out.sum(0).norm().clamp(min=1e-12)
        return out, targets

    def describe(self) -> dict[str, Any]:
        return {
            "params": self.params.describe(),
            "projection": self.projector.describe(),
            "max_length": self.max_length or self.lm.max_length,
            "precondition": self.precondition.describe(),
        }
