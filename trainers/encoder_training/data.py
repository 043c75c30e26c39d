"""The trainer's view of a label store: splits, examples, a content fingerprint, the held-out split.

Works on in-memory ``list[SplitLabels]`` + ``dict[id, Example]`` or on a label store folder written by
``airsearch.trainers.labels`` (``LabelStore.open(dir)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.fingerprint import fingerprint_bytes, fingerprint_json
from airsearch.labels import SplitLabels


@dataclasses.dataclass
class TrainingLabels:
    splits: list[SplitLabels]
    examples: Mapping[str, Example]
    manifest: dict[str, Any]
    fingerprint: str

    def partition(self, holdout: int) -> tuple[list[SplitLabels], list[SplitLabels]]:
        """(train, held-out): the ``holdout`` splits with the largest ids are never trained on."""
        ordered = sorted(self.splits, key=lambda s: s.split)
        if holdout < 0 or holdout >= len(ordered):
            raise InputError(
                f"{holdout} held-out split(s) leaves none to train on: the labels have "
                f"{len(ordered)} split(s)",
                field="holdout_splits",
            )
        return ordered[: len(ordered) - holdout], ordered[len(ordered) - holdout :]


def labels_fingerprint(splits: Sequence[SplitLabels]) -> str:
    """Fingerprint of the label content: split ids, dev ids, subset members and losses."""
    parts = []
    for s in sorted(splits, key=lambda s: s.split):
        parts.append(fingerprint_json([s.split, s.dev_ids, list(map(int, s.subset_ids)), s.members]).encode())
        parts.append(np.ascontiguousarray(s.losses, dtype=np.float64).tobytes())
    return fingerprint_bytes(parts)


def load_training_labels(
    labels_dir: str | Path | None,
    *,
    splits: Sequence[SplitLabels] | None = None,
    examples: Mapping[str, Example] | None = None,
) -> TrainingLabels:
    """In-memory ``splits``/``examples`` when given, else the label store at ``labels_dir``."""
    manifest: dict[str, Any] = {}
    if splits is None or examples is None:
        if not labels_dir:
            raise InputError("no labels given", field="labels")
        store = _open_store(labels_dir)
        splits = store.splits() if splits is None else splits
        examples = store.examples() if examples is None else examples
        manifest = _as_dict(getattr(store, "manifest", {}))
    splits = list(splits)
    if not splits:
        raise InputError(
            "the labels hold no finished split", path=labels_dir, field=None if labels_dir else "labels"
        )
    for s in splits:
        if len(s.members) < 2:
            raise InputError(
                f"split {s.split} has {len(s.members)} subset(s); ranking needs at least 2",
                path=labels_dir,
                field=None if labels_dir else "labels",
            )
    return TrainingLabels(splits, examples, manifest, labels_fingerprint(splits))


def manifest_summary(labels: TrainingLabels) -> dict[str, Any]:
    """The label facts recorded in an encoder's training info."""
    keep = {
        k: labels.manifest[k]
        for k in ("teacher", "corpus_fingerprint", "model_fingerprint", "config", "code_version")
        if k in labels.manifest
    }
    return {
        "fingerprint": labels.fingerprint,
        "n_splits": len(labels.splits),
        "n_subsets": int(sum(len(s.members) for s in labels.splits)),
        "n_dev": int(sum(len(s.dev_ids) for s in labels.splits)),
        "manifest": keep,
    }


def _open_store(labels_dir: str | Path) -> Any:
    path = Path(labels_dir)
    if not path.is_dir():
        raise InputError("label store folder not found", path=path)
    try:
        from airsearch.trainers.labels import LabelStore
    except ImportError as e:  # pragma: no cover - depends on the label-store package
        raise InputError(f"cannot read label stores: {e}", path=path) from None
    return LabelStore.open(path)


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return {}
