"""Approximate nearest-neighbour index on the vector column (dot-product metric).

AirRep scores are raw dot products (no normalisation, methods.md §1), so every index uses the
``dot`` distance. Below :attr:`AnnConfig.threshold` rows no index is built and search is exact.
The default index type and search parameters were chosen by ``benchmarks/bench_index.py`` on real
embeddings; the refine step re-scores ``refine_factor * k`` candidates with the full vectors so that
recall@10 against exact search stays >= 0.95 (see ``benchmarks/results/index.md``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import lancedb
from airsearch.indexers.config import DEFAULT_THRESHOLD, DEFAULT_TYPE, INDEX_TYPES
from airsearch.indexers.rows import VECTOR
from lancedb.index import HnswPq, HnswSq, IvfFlat, IvfPq, IvfSq

from airsearch.errors import InputError
from airsearch.results import Result, omitted_when_none


@dataclasses.dataclass
class AnnConfig:
    """When and how to build the ANN index, and how to search it."""

    threshold: int = DEFAULT_THRESHOLD
    index_type: str = DEFAULT_TYPE
    num_partitions: int | None = None  # default: HNSW max(4, rows / 125k); others about sqrt(rows)
    num_sub_vectors: int | None = None  # PQ only; default dim / 8
    nprobes: int = 8
    refine_factor: int | None = None  # None: by table size, see :func:`auto_search_params`
    ef: int | None = None  # HNSW candidate list size; None: by table size

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise InputError(
                f"unknown index type {self.index_type!r}; choose one of {INDEX_TYPES}",
                field="ann_type",
            )

    def should_build(self, rows: int) -> bool:
        return self.threshold >= 0 and rows >= self.threshold

    def partitions(self, rows: int) -> int:
        if self.num_partitions:
            return self.num_partitions
        if "HNSW" in self.index_type:  # few large partitions: the graph does the search inside each
            return max(4, rows // 125_000)
        return max(1, min(4096, int(math.sqrt(rows))))

    def index_config(self, rows: int, dim: int) -> Any:
        parts = self.partitions(rows)
        subs = self.num_sub_vectors or _sub_vectors(dim)
        common = {"distance_type": "dot", "num_partitions": parts}
        return {
            "IVF_PQ": lambda: IvfPq(num_sub_vectors=subs, **common),
            "IVF_HNSW_SQ": lambda: HnswSq(**common),
            "IVF_HNSW_PQ": lambda: HnswPq(num_sub_vectors=subs, **common),
            "IVF_SQ": lambda: IvfSq(**common),
            "IVF_FLAT": lambda: IvfFlat(**common),
        }[self.index_type]()


# Search settings by table size, from benchmarks/results/index.md (recall@10 vs exact, real-derived
# embeddings): refine 20 / ef 300 gives 0.976 at 100k rows but 0.903 at 1M; refine 100 / ef 1000 gives
# 0.956 at 1M (p50 89 ms, 2 shared cores).
LARGE_TABLE_ROWS = 500_000


def auto_search_params(rows: int) -> tuple[int, int]:
    """``(refine_factor, ef)`` that keep recall@10 >= 0.95 for a table of ``rows`` rows."""
    return (100, 1000) if rows >= LARGE_TABLE_ROWS else (20, 300)


def _sub_vectors(dim: int) -> int:
    for s in (dim // 8, dim // 4, dim // 2, dim):
        if s >= 1 and dim % s == 0:
            return s
    return 1


def build(table: lancedb.table.LanceTable, cfg: AnnConfig) -> dict[str, Any]:
    """Train and write the index; returns what table metadata records about it."""
    rows = table.count_rows()
    dim = table.schema.field(VECTOR).type.list_size
    start = time.perf_counter()
    table.create_index(VECTOR, config=cfg.index_config(rows, dim), replace=True)
    return {
        "type": cfg.index_type,
        "metric": "dot",
        "num_partitions": cfg.partitions(rows),
        "num_sub_vectors": (cfg.num_sub_vectors or _sub_vectors(dim)) if "PQ" in cfg.index_type else None,
        "nprobes": cfg.nprobes,
        "refine_factor": cfg.refine_factor,
        "ef": cfg.ef,
        "rows_indexed": rows,
        "build_seconds": round(time.perf_counter() - start, 3),
    }


def refresh(table: lancedb.table.LanceTable) -> None:
    """Fold rows appended since the index was trained into it (no retraining)."""
    table.to_lance().optimize.optimize_indices()


@dataclass(frozen=True)
class IndexStatus(Result):
    """A table's vector index: ``exact`` (no ANN index) or the ANN index, its coverage and the search
    settings recorded when it was built."""

    type: str
    ann: bool
    name: str | None = omitted_when_none()
    indexed_rows: int | None = omitted_when_none()
    unindexed_rows: int | None = omitted_when_none()
    search: dict[str, Any] | None = omitted_when_none()  # nprobes, refine_factor, ef


def index_status(table: lancedb.table.LanceTable, recorded: dict[str, Any] | None) -> IndexStatus:
    indices = [i for i in table.list_indices() if VECTOR in i.columns]
    if not indices:
        return IndexStatus(type="exact", ann=False)
    indexed = unindexed = None
    try:
        stats = table.index_stats(indices[0].name)
        if stats is not None:
            indexed, unindexed = stats.num_indexed_rows, stats.num_unindexed_rows
    except Exception:  # stats are informative only
        pass
    return IndexStatus(
        type=str(indices[0].index_type),
        ann=True,
        name=indices[0].name,
        indexed_rows=indexed,
        unindexed_rows=unindexed,
        search={k: recorded.get(k) for k in ("nprobes", "refine_factor", "ef")} if recorded else None,
    )


def search(
    table: lancedb.table.LanceTable,
    vector: Any,
    k: int,
    recorded: dict[str, Any] | None,
    *,
    where: str | None = None,
    nprobes: int | None = None,
    refine_factor: int | None = None,
    ef: int | None = None,
) -> Any:
    """ANN top-k by dot product; returns an Arrow table with ``_rowid`` (scores recomputed by caller)."""
    rec = recorded or {}
    q = table.search(vector, vector_column_name=VECTOR).distance_type("dot").limit(k).with_row_id(True)
    q = q.nprobes(nprobes or rec.get("nprobes") or 8)
    auto_rf, auto_ef = auto_search_params(int(rec.get("rows_indexed") or table.count_rows()))
    rf = next((int(v) for v in (refine_factor, rec.get("refine_factor"), auto_rf) if v is not None), 0)
    if rf:
        q = q.refine_factor(rf)
    # HNSW needs ef >= the candidates it returns (k, times the refine factor)
    q = q.ef(max(int(ef or rec.get("ef") or auto_ef), k * max(rf, 1)))
    if where:
        q = q.where(where, prefilter=True)
    return q.select(["_distance"]).to_arrow()
