"""Hessian-aware (K-FAC / EK-FAC) preconditioning of gradient features (methods.md §0a).

Influence with a curvature estimate ``H`` (Koh & Liang 2017; Grosse et al. 2023, Eq. 5):
``tau(i, j) = g(z_j)^T (H + lambda I)^{-1} g(z_i)``. With the Kronecker-factored ``H`` of
:mod:`~airsearch.methods.kfac`, any power of ``H + lambda I`` is applied module by module in the
eigenbasis (George et al. 2018, Eq. 12):

``G -> Q_S [ (Q_S^T G Q_A) * (Lambda + lambda)^power ] Q_A^T``

with ``Lambda[o, i] = l_S[o] l_A[i]`` (K-FAC) or the corrected eigenvalues (EK-FAC), ``G`` the
``[out, in (+1)]`` gradient matrix of the module. Two uses:

- ``power = -1`` on the query side only: grad-dot / TracIn / undebiased DDA scores become
  ``g_j^T (H + lambda)^{-1} g_i``; train vectors stay plain gradients (query gradients are
  preconditioned once, train gradients pass untouched);
- ``power = -1/2`` on both sides (whitening) when a method normalises a gradient (grad-cos, DDA,
  HAIF): the product of whitened vectors is the same ``g_j^T (H + lambda)^{-1} g_i`` and norms are
  taken in the ``(H + lambda)^{-1}`` metric; train gradients stream through it block by block.

**Damping [D]**: ``lambda`` per module defaults to 0.1 x the mean of that module's eigenvalues
``Lambda`` (the heuristic Kronfluence uses); a number overrides it for every module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.methods.gradients import GradientModel
from airsearch.methods.kfac import (
    DAMPING_FRACTION,
    DAMPING_RULE,
    FactorKind,
    FisherKind,
    KroneckerFactors,
    fit_factors,
)
from airsearch.methods.linear_layers import linear_blocks
from airsearch.methods.names import PRECONDITION_KINDS, PreconditionKind

Side = Literal["inverse", "whiten"]


class Preconditioner:
    """``g -> (H + lambda I)^power g`` for flat gradient rows ``[n, p]`` in ``gm.param_names`` order."""

    def __init__(self, factors: KroneckerFactors, gm: GradientModel, damping: float | None = None) -> None:
        self.factors = factors
        self.damping_value = damping
        offsets, start = {}, 0
        for name in gm.param_names:
            numel = gm.params[name].numel()
            offsets[name] = (start, start + numel)
            start += numel
        self.num_params = start
        self.offsets = offsets
        missing = set(gm.param_names) - {b.weight for b in factors.blocks} - {b.bias for b in factors.blocks}
        if missing:
            raise InputError(
                f"the factors do not cover {sorted(missing)[:4]}; refit them for this parameter set",
                field="factors",
            )
        self.damping: dict[str, float] = {}
        for block in factors.blocks:
            mean = float(factors.eigenvalues(block).double().mean())
            self.damping[block.module] = float(damping) if damping is not None else DAMPING_FRACTION * mean

    def apply(self, grads: torch.Tensor, power: float = -1.0) -> torch.Tensor:
        """``(H + lambda I)^power`` applied to every row of ``grads`` ``[n, p]``."""
        if grads.shape[-1] != self.num_params:
            raise ValueError(f"gradient rows of width {grads.shape[-1]}, expected {self.num_params}")
        out = torch.empty_like(grads, dtype=torch.float32)
        n = grads.shape[0]
        for block in self.factors.blocks:
            ws, we = self.offsets[block.weight]
            parts = [grads[:, ws:we].reshape(n, block.out_features, block.in_features)]
            if block.bias:
                bs, be = self.offsets[block.bias]
                parts.append(grads[:, bs:be].reshape(n, block.out_features, 1))
            g = torch.cat(parts, dim=2).float()
            qa = self.factors.get(block, "qa").to(g.device, torch.float32)
            qs = self.factors.get(block, "qs").to(g.device, torch.float32)
            scale = (self.factors.eigenvalues(block).to(g.device).double() + self.damping[block.module]).pow(
                power
            )
            rotated = qs.T @ g @ qa
            res = qs @ (rotated * scale.float()) @ qa.T
            out[:, ws:we] = res[:, :, : block.in_features].reshape(n, -1)
            if block.bias:
                out[:, bs:be] = res[:, :, block.in_features]
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.factors.kind,
            "fisher": self.factors.fisher,
            "damping": self.damping_value if self.damping_value is not None else DAMPING_RULE,
        }


def sample_positions(n: int, max_samples: int, seed: int = 0) -> list[int]:
    """Positions (ascending) of the fitting sample among ``n`` rows sorted by id: all of them when
    ``max_samples`` is 0 or at least ``n``, else a seeded random subset of ``max_samples``."""
    if max_samples <= 0 or n <= max_samples:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=max_samples, replace=False).tolist())


def fitting_sample(examples: Sequence[Example], max_samples: int, seed: int = 0) -> list[Example]:
    """At most ``max_samples`` examples: all of them, or a seeded random subset in id order."""
    ordered = sorted(examples, key=lambda ex: ex.id)
    return [ordered[i] for i in sample_positions(len(ordered), max_samples, seed)]


def sample_description(examples: Sequence[Example], max_length: int, seed: int) -> dict[str, Any]:
    from airsearch.data.corpus import fingerprint_examples

    ordered = sorted(examples, key=lambda ex: ex.id)
    return {
        "n": len(ordered),
        "fingerprint": fingerprint_examples(ordered),
        "max_length": max_length,
        "seed": seed,
    }


@dataclass
class Precondition:
    """How gradients are preconditioned: ``none``, ``kfac`` or ``ekfac``, with damping and factors.

    ``sample`` is the fitting sample (at most ``max_samples`` of it is used, seeded); ``factors_dir``
    keeps one sub-folder of factors per model (``<kind>-<model fingerprint>``), fitted on first use and
    reused after, refused when fitted on another parameter set, Fisher or sample. Without a sample,
    the factors must already be in ``factors_dir``.
    """

    kind: PreconditionKind = "none"
    damping: float | None = None
    fisher: FisherKind = "empirical"
    factors_dir: str | None = None
    sample: Sequence[Example] | None = None
    max_samples: int = 1000
    seed: int = 0
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.kind not in PRECONDITION_KINDS:
            raise InputError(
                f"must be one of {list(PRECONDITION_KINDS)}, not {self.kind!r}", field="precondition"
            )
        if self.damping is not None and self.damping < 0:
            raise InputError("must be >= 0", field="damping")

    @property
    def active(self) -> bool:
        return self.kind != "none"

    def describe(self) -> dict[str, Any]:
        if not self.active:
            return {"kind": "none"}
        return {
            "kind": self.kind,
            "fisher": self.fisher,
            "damping": self.damping if self.damping is not None else DAMPING_RULE,
        }

    def folder_for(self, lm: Any) -> Path | None:
        if not self.factors_dir:
            return None
        return Path(self.factors_dir) / f"{self.kind}-{lm.fingerprint[:16]}"

    def build(
        self, lm: Any, gm: GradientModel, max_length: int, show_progress: bool = True
    ) -> Preconditioner | None:
        """The preconditioner for ``lm`` (factors loaded from ``factors_dir`` or fitted now)."""
        if not self.active:
            return None
        factors = self.factors_for(lm, gm, max_length, show_progress)
        return Preconditioner(factors, gm, self.damping)

    def factors_for(
        self, lm: Any, gm: GradientModel, max_length: int, show_progress: bool = True
    ) -> KroneckerFactors:
        from airsearch.methods.factor_store import FactorManifest, manifest_for, open_factors, save_factors

        kind: FactorKind = self.kind  # type: ignore[assignment]
        folder = self.folder_for(lm)
        sample = fitting_sample(self.sample, self.max_samples, self.seed) if self.sample else None
        sample_desc = sample_description(sample, max_length, self.seed) if sample else {}
        if folder is not None and folder.exists():
            expected = FactorManifest(
                kind=kind,
                fisher=self.fisher,
                model_fingerprint=lm.fingerprint,
                param_set=gm.spec.describe(),
                modules=[b.describe() for b in linear_blocks(gm)],
                sample=sample_desc,
            )
            factors, _ = open_factors(folder, expected, check_sample=bool(sample))
            return factors
        if not sample:
            raise InputError(
                "no stored factors for this model and no fitting sample to fit them on",
                path=folder,
                field=None if folder else "factors",
            )
        factors = fit_factors(
            gm,
            lm,
            sample,
            kind,
            fisher=self.fisher,
            seed=self.seed,
            batch_size=self.batch_size,
            max_length=max_length,
            show_progress=show_progress,
        )
        if folder is not None:
            save_factors(
                folder, factors, manifest_for(factors, lm.fingerprint, gm.spec.describe(), sample_desc)
            )
        return factors
