"""Subset-loss labels for AirRep training (AirRep §3.2, Eq. 8; methods.md §1).

Public API (``trainers`` names are not exported from ``airsearch``; import them from here)::

    from airsearch.trainers.labels import generate_labels, LabelConfig, LabelStore

    summary = generate_labels(LabelConfig(corpus=["train.jsonl"], lm="lm/", out="labels/"))
    store = LabelStore.open("labels/")
    for split in store.splits():          # list[airsearch.labels.SplitLabels], split order
        y = split.targets()               # Eq. 8 targets [n_subsets, n_dev]

- :mod:`airsearch.trainers.labels.config`: :class:`LabelConfig` (the ``airsearch labels generate`` options)
- :mod:`airsearch.trainers.labels.sampling`: the deterministic split/subset scheme (:func:`sample_splits`)
- :mod:`airsearch.trainers.labels.store`: :class:`LabelStore` (reader and writer, layout documented there)
- :mod:`airsearch.trainers.labels.generate`: :func:`generate_labels`, the per-subset job, teacher plug-ins
- :mod:`airsearch.trainers.labels.info`: :func:`label_store_info` (what ``airsearch labels info`` shows)
"""

from typing import TYPE_CHECKING

from airsearch.lazy import lazy_exports

if TYPE_CHECKING:
    from airsearch.trainers.labels.config import LabelConfig
    from airsearch.trainers.labels.generate import TEACHERS, LabelSummary, generate_labels, run_subset_job
    from airsearch.trainers.labels.info import LabelStoreInfo, label_store_info
    from airsearch.trainers.labels.sampling import SplitPlan, job_id, job_seed, sample_splits
    from airsearch.trainers.labels.store import LabelStore, job_result, make_manifest

_EXPORTS = {
    "LabelConfig": "config",
    "TEACHERS": "generate",
    "LabelSummary": "generate",
    "generate_labels": "generate",
    "run_subset_job": "generate",
    "LabelStoreInfo": "info",
    "label_store_info": "info",
    "SplitPlan": "sampling",
    "job_id": "sampling",
    "job_seed": "sampling",
    "sample_splits": "sampling",
    "LabelStore": "store",
    "job_result": "store",
    "make_manifest": "store",
}
__all__ = [
    "LabelConfig",
    "LabelStore",
    "LabelStoreInfo",
    "LabelSummary",
    "SplitPlan",
    "TEACHERS",
    "generate_labels",
    "job_id",
    "job_result",
    "job_seed",
    "label_store_info",
    "make_manifest",
    "run_subset_job",
    "sample_splits",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
