"""What ``airsearch labels info`` reports: a label store's config, provenance, progress and statistics."""

from __future__ import annotations

import os
from typing import Any

from airsearch.trainers.labels.store import LabelStore


def label_store_info(store_dir: str | os.PathLike) -> dict[str, Any]:
    """Describe the label store at ``store_dir`` (refused with a clear error when it is not one).

    Keys: ``dir``, ``teacher``, ``config`` (the :class:`~airsearch.trainers.labels.LabelConfig` that made it),
    the corpus and model fingerprints, ``code_version``, ``created``, ``progress`` (jobs done/total)
    and ``stats`` (loss mean/std and the spread of each dev example's loss across subsets, per split).
    """
    store = LabelStore.open(store_dir)
    m = store.manifest
    return {
        "dir": str(store.root),
        "teacher": store.teacher,
        "config": m.get("config", {}),
        "corpus_fingerprint": m.get("corpus_fingerprint"),
        "model_fingerprint": m.get("model_fingerprint"),
        "code_version": m.get("code_version"),
        "created": m.get("created"),
        "progress": store.progress(),
        "stats": store.stats(),
    }
