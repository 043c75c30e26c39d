"""Stored K-FAC / EK-FAC factors (methods.md §0a): one folder per (model, parameter set), checked on reuse.

A factor folder holds ``factors.safetensors`` (every tensor of :class:`KroneckerFactors`, in the
dtype it was fitted in) and ``manifest.json`` (:class:`FactorManifest`: factor kind, Fisher kind,
model fingerprint, parameter set, covered modules, the fitting sample and the damping rule). It is
written atomically. :func:`open_factors` with an expected manifest refuses
(:class:`~airsearch.errors.FingerprintMismatch`) factors fitted on another model, parameter set,
Fisher or sample. **[D]** Damping is not a property of the factors: it is added when they are used,
so one fit serves every damping value; the manifest records the default damping rule and each
module's mean eigenvalue (from which the default damping follows).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from airsearch.atomic import atomic_path
from airsearch.errors import InputError
from airsearch.methods.kfac import DAMPING_RULE, KroneckerFactors
from airsearch.methods.linear_layers import LinearBlock
from airsearch.methods.store import check_fields

MANIFEST = "manifest.json"
TENSORS = "factors.safetensors"
FORMAT_VERSION = 1


@dataclass
class FactorManifest:
    """What made a set of factors; the ``MATCH_FIELDS`` must agree before the factors are reused."""

    kind: str
    fisher: str
    model_fingerprint: str
    param_set: dict[str, Any]
    modules: list[dict[str, Any]]
    sample: dict[str, Any]
    damping: dict[str, Any] = field(default_factory=dict)
    n_examples: int = 0
    n_tokens: int = 0
    format_version: int = FORMAT_VERSION

    MATCH_FIELDS = ("kind", "fisher", "model_fingerprint", "param_set", "modules", "sample")

    def check_against(
        self, expected: FactorManifest, *, path: str | os.PathLike | None = None, check_sample: bool = True
    ) -> None:
        check_fields(
            self,
            expected,
            [f for f in self.MATCH_FIELDS if check_sample or f != "sample"],
            what="the stored factors were fitted",
            hint="delete the folder to refit, or use another factors folder",
            path=path,
        )


def manifest_for(
    factors: KroneckerFactors, model_fingerprint: str, param_set: dict[str, Any], sample: dict[str, Any]
) -> FactorManifest:
    """The manifest of freshly fitted ``factors`` (records each module's mean eigenvalue)."""
    means = {b.module: float(factors.eigenvalues(b).double().mean()) for b in factors.blocks}
    return FactorManifest(
        kind=factors.kind,
        fisher=factors.fisher,
        model_fingerprint=model_fingerprint,
        param_set=param_set,
        modules=[b.describe() for b in factors.blocks],
        sample=sample,
        damping={"default_rule": DAMPING_RULE, "mean_eigenvalue": means},
        n_examples=factors.n_examples,
        n_tokens=factors.n_tokens,
    )


def save_factors(path: str | Path, factors: KroneckerFactors, manifest: FactorManifest) -> Path:
    """Write the factor folder atomically (a partial folder never appears)."""
    path = Path(path)
    with atomic_path(path, is_dir=True) as tmp:
        save_file({k: v.contiguous().cpu() for k, v in factors.tensors.items()}, str(tmp / TENSORS))
        blocks = [asdict(b) for b in factors.blocks]
        (tmp / MANIFEST).write_text(json.dumps({**asdict(manifest), "blocks": blocks}, indent=2))
    return path


def open_factors(
    path: str | Path, expected: FactorManifest | None = None, *, check_sample: bool = True
) -> tuple[KroneckerFactors, FactorManifest]:
    """Load a factor folder; with ``expected``, refuse factors fitted with other settings."""
    path = Path(path)
    if not (path / MANIFEST).exists():
        raise InputError("not a factor folder (manifest.json missing)", path=path)
    data = json.loads((path / MANIFEST).read_text())
    if data.get("format_version") != FORMAT_VERSION:
        raise InputError(f"unsupported factor folder format {data.get('format_version')}", path=path)
    blocks = [LinearBlock(**b) for b in data.pop("blocks")]
    manifest = FactorManifest(**data)
    if expected is not None:
        manifest.check_against(expected, path=path / MANIFEST, check_sample=check_sample)
    tensors = load_file(str(path / TENSORS))
    factors = KroneckerFactors(
        manifest.kind,  # type: ignore[arg-type]
        manifest.fisher,  # type: ignore[arg-type]
        blocks,
        tensors,
        manifest.n_examples,
        manifest.n_tokens,
    )
    return factors, manifest
