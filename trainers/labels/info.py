"""What ``airsearch labels info`` reports: a label store's config, provenance, progress and statistics."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from airsearch.trainers.labels.config import LabelConfig
from airsearch.trainers.labels.results import LabelProgress, LabelStats
from airsearch.trainers.labels.store import LabelStore

from airsearch.config import renamed_fields
from airsearch.results import Result


@dataclass(frozen=True)
class LabelStoreInfo(Result):
    """A label store's config, provenance, progress and loss statistics."""

    dir: str
    teacher: str
    config: dict[str, Any]  # the LabelConfig that made the store, as recorded in its manifest
    corpus_fingerprint: str | None
    model_fingerprint: str | None
    code_version: dict[str, Any] | None  # airsearch version and git commit
    created: str | None
    progress: LabelProgress
    stats: LabelStats


def label_store_info(store_dir: str | os.PathLike) -> LabelStoreInfo:
    """Describe the label store at ``store_dir`` (refused with a clear error when it is not one)."""
    store = LabelStore.open(store_dir)
    m = store.manifest
    return LabelStoreInfo(
        dir=str(store.root),
        teacher=store.teacher,
        config=renamed_fields(LabelConfig, m.get("config", {}), path=store.root / "manifest.json"),
        corpus_fingerprint=m.get("corpus_fingerprint"),
        model_fingerprint=m.get("model_fingerprint"),
        code_version=m.get("code_version"),
        created=m.get("created"),
        progress=store.progress(),
        stats=store.stats(),
    )
