"""Stored train-side feature vectors (projected gradients, HAIF vectors, Daunce loss profiles).

A store is a folder: ``manifest.json``, ``ids.json`` and shards ``vectors-00000.safetensors`` ...
(one ``[rows, dim]`` float32 tensor named ``vectors`` each), written atomically. The manifest
records what made the vectors: method/feature kind, model fingerprint, checkpoint, parameter set,
projection (seed, kind, dimension) and normalisation. :func:`open_store` with an ``expected``
manifest refuses (:class:`~airsearch.errors.FingerprintMismatch`) a store made differently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from airsearch.atomic import atomic_path
from airsearch.errors import FingerprintMismatch, InputError
from airsearch.fingerprint import fingerprint_json

MANIFEST = "manifest.json"
IDS = "ids.json"
FORMAT_VERSION = 1


@dataclass
class VectorManifest:
    """What made a set of train vectors; every field except ``n``/``shards`` must match on reuse."""

    feature: str  # e.g. "grad", "grad-unit", "haif", "haif-t", "dda", "daunce-corr"
    model_fingerprint: str
    checkpoints: list[str]
    param_set: dict[str, Any]
    projection: dict[str, Any]
    dim: int
    extra: dict[str, Any] = field(default_factory=dict)
    n: int = 0
    ids_fingerprint: str = ""
    shards: list[str] = field(default_factory=list)
    format_version: int = FORMAT_VERSION

    # ``checkpoints`` (where the models were read from) is recorded for people, not matched: the
    # model fingerprint already names the weights in order, so a moved or copied LM folder still matches
    MATCH_FIELDS = ("feature", "model_fingerprint", "param_set", "projection", "dim", "extra")

    def check_against(self, expected: VectorManifest, *, path: str | os.PathLike | None = None) -> None:
        check_fields(
            self,
            expected,
            self.MATCH_FIELDS,
            what="stored vectors were made",
            hint="recompute them (delete the folder) or use the matching settings",
            path=path,
        )


def check_fields(
    have: Any,
    want: Any,
    fields: Sequence[str],
    *,
    what: str,
    hint: str,
    path: str | os.PathLike | None = None,
) -> None:
    """Refuse (:class:`FingerprintMismatch`) when a stored manifest differs from the expected one."""
    for name in fields:
        a, b = getattr(have, name), getattr(want, name)
        if json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            raise FingerprintMismatch(f"{what} with {name}={a!r}, but {b!r} is in use; {hint}", path=path)


class VectorStoreWriter:
    """Append ``[rows, dim]`` blocks; :meth:`close` makes the folder appear complete, atomically."""

    def __init__(self, path: str | Path, manifest: VectorManifest) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self._ctx = atomic_path(self.path, is_dir=True)
        self._tmp = self._ctx.__enter__()
        self._ids: list[str] = []

    def add(self, vectors: torch.Tensor, ids: Sequence[str]) -> None:
        if vectors.shape != (len(ids), self.manifest.dim):
            raise ValueError(f"block shape {tuple(vectors.shape)} != ({len(ids)}, {self.manifest.dim})")
        name = f"vectors-{len(self.manifest.shards):05d}.safetensors"
        save_file({"vectors": vectors.detach().float().contiguous().cpu()}, str(self._tmp / name))
        self.manifest.shards.append(name)
        self._ids.extend(ids)

    def close(self) -> Path:
        self.manifest.n = len(self._ids)
        self.manifest.ids_fingerprint = fingerprint_json(self._ids)
        (self._tmp / IDS).write_text(json.dumps(self._ids))
        (self._tmp / MANIFEST).write_text(json.dumps(asdict(self.manifest), indent=2))
        self._ctx.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        try:
            raise RuntimeError("aborted")
        except RuntimeError as e:
            self._ctx.__exit__(type(e), e, e.__traceback__)


@dataclass
class VectorStore:
    path: Path
    manifest: VectorManifest
    ids: list[str]

    def iter_blocks(self) -> Iterator[torch.Tensor]:
        for shard in self.manifest.shards:
            yield load_file(str(self.path / shard))["vectors"]

    def all(self) -> torch.Tensor:
        blocks = list(self.iter_blocks())
        return torch.cat(blocks) if blocks else torch.zeros(0, self.manifest.dim)


def save_vectors(
    path: str | Path,
    vectors: torch.Tensor,
    ids: Sequence[str],
    manifest: VectorManifest,
    shard_rows: int = 65536,
) -> Path:
    writer = VectorStoreWriter(path, manifest)
    try:
        for s in range(0, max(len(ids), 1), shard_rows):
            if s < len(ids):
                writer.add(vectors[s : s + shard_rows], list(ids[s : s + shard_rows]))
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def open_store(
    path: str | Path, expected: VectorManifest | None = None, expected_ids: Sequence[str] | None = None
) -> VectorStore:
    """Open a store; with ``expected`` (and ``expected_ids``) refuse one made by other settings."""
    path = Path(path)
    if not (path / MANIFEST).exists():
        raise InputError("not a vector store (manifest.json missing)", path=path)
    data = json.loads((path / MANIFEST).read_text())
    if data.get("format_version") != FORMAT_VERSION:
        raise InputError(f"unsupported vector store format {data.get('format_version')}", path=path)
    manifest = VectorManifest(**data)
    ids = json.loads((path / IDS).read_text())
    if expected is not None:
        manifest.check_against(expected, path=path / MANIFEST)
    if expected_ids is not None and fingerprint_json(list(expected_ids)) != manifest.ids_fingerprint:
        raise FingerprintMismatch(
            "stored vectors are for a different list of train examples", path=path / IDS
        )
    return VectorStore(path=path, manifest=manifest, ids=ids)
