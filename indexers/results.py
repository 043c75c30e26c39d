"""Typed results of ``airsearch info`` and ``airsearch delete`` (:mod:`airsearch.results`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airsearch.indexers.ann import IndexStatus

from airsearch.results import Result
from airsearch.runtime import recorded_runtime, runtime_label


@dataclass(frozen=True)
class TableInfo(Result):
    """One index table: size, provenance (encoder, corpora) and index status."""

    name: str
    rows: int
    dim: int
    version: int
    encoder: dict[str, Any]  # the encoder record stored in the table (base encoder, template, ...)
    encoder_fingerprint: str
    template: str
    corpora: list[dict[str, Any]]  # one record per indexed corpus: sources, fingerprint, rows
    metadata_columns: dict[str, str]  # metadata key -> column
    index: IndexStatus
    airsearch_version: str
    fts: bool = False  # the BM25 full-text index exists (query --mode bm25|hybrid)
    versions: list[VersionInfo] = field(default_factory=list)  # the kept versions, oldest first
    # method columns (airsearch.indexers.method_columns): name -> what made it (ColumnSpec.to_dict())
    method_columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    # of the encoder, the corpora and every method column's fingerprint: what the table's vectors are
    fingerprint: str = ""


@dataclass(frozen=True)
class VersionInfo(Result):
    """One kept version of a table (``airsearch restore --version N`` brings it back)."""

    version: int
    time: str  # when it was written (ISO 8601, UTC)
    rows: int | None  # None: its manifest cannot be read


@dataclass(frozen=True)
class IndexInfo(Result):
    """What :func:`airsearch.indexers.store.info` reports about an index directory."""

    db: str
    airsearch_version: str
    lancedb_version: str
    lance_version: str
    tables: list[TableInfo]


@dataclass(frozen=True)
class DeleteSummary(Result):
    """What :func:`airsearch.indexers.store.delete_rows` did."""

    db: str
    table: str
    deleted: int  # with dry_run: the rows that would go
    rows: int  # rows left in the table
    dry_run: bool = False
    version: int | None = None  # the table's version after the delete
    missing: list[str] = field(default_factory=list)  # ids given to delete that the table does not hold


def describe_encoder(record: dict[str, Any]) -> str:
    """How a table's encoder record reads: the packaged default by its name, any other encoder by the
    folder it was loaded from and what it is (a trained AirRep, or an untrained one on a base)."""
    source = str(record.get("source", "default"))
    base = str(record.get("base_encoder", ""))
    runtime = runtime_label(*recorded_runtime(record))
    on = "" if runtime == "torch" else f" on {runtime}"
    if source == "default":
        return (base or "default") + on
    return f"{source} ({'trained AirRep' if record.get('trained') else f'untrained AirRep on {base}'}){on}"
