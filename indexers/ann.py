"""Approximate nearest-neighbour index on the vector column (dot-product metric).

AirRep scores are raw dot products (no normalisation, methods.md §1), so every index uses the
``dot`` distance. Below :attr:`AnnConfig.threshold` rows no index is built and search is exact.

The default (``index_type="auto"``) follows the benchmarks on real-derived embeddings:
``benchmarks/results/index.md`` (up to 1M rows) chose IVF_HNSW_SQ with a refine step that re-scores
``refine_factor * k`` candidates with the full vectors (recall@10 >= 0.95 up to 100k rows), and
``benchmarks/results/ann_sweep.md`` (1M rows) found that IVF_HNSW_SQ needs refine 200 to pass 0.97
there (p50 131 ms, 30x faster than exact), while IVF_FLAT with about sqrt(rows) partitions reaches
0.98-0.996 probing 1/8-3/16 of them at 61-87x the exact latency. So ``auto`` is IVF_HNSW_SQ below :data:`LARGE_TABLE_ROWS` and IVF_FLAT from there.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airsearch.indexers.config import DEFAULT_THRESHOLD, DEFAULT_TYPE, INDEX_TYPES
from airsearch.indexers.rows import VECTOR

from airsearch.errors import InputError
from airsearch.results import Result, omitted_when_none

if TYPE_CHECKING:  # lancedb loads when an index is built or searched, not for an exact search
    import lancedb

# From this many rows ``auto`` builds IVF_FLAT and HNSW searches widen (see the module docstring).
LARGE_TABLE_ROWS = 500_000
# IVF (non-HNSW) indexes probe this fraction of their partitions by default. At 1M rows (ann_sweep.md)
# IVF_FLAT gave recall@10 0.954 / 0.980 / 0.996 probing 96 / 128 / 192 of 1,024 partitions, but a
# second build (1,000 partitions, 125 probed) gave 0.955: k-means varies between builds, so the
# default keeps a margin at 3 in 16.
PROBED_FRACTION = 3 / 16


@dataclasses.dataclass
class AnnConfig:
    """When and how to build the ANN index, and how to search it. ``None`` fields take the defaults
    for the table's size when the index is built, and the values used are recorded."""

    threshold: int = DEFAULT_THRESHOLD
    index_type: str = DEFAULT_TYPE  # "auto": see resolved_type
    num_partitions: int | None = None  # default: HNSW max(4, rows / 125k); others about sqrt(rows)
    num_sub_vectors: int | None = None  # PQ only; default dim / 8
    nprobes: int | None = None  # default: HNSW 8; others PROBED_FRACTION of the partitions
    refine_factor: int | None = None  # default: see search_defaults
    ef: int | None = None  # HNSW candidate list size; default: see search_defaults

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise InputError(
                f"unknown index type {self.index_type!r}; choose one of {INDEX_TYPES}",
                field="ann_type",
            )

    def should_build(self, rows: int) -> bool:
        return self.threshold >= 0 and rows >= self.threshold

    def resolved_type(self, rows: int) -> str:
        """The index type built for ``rows`` rows: ``auto`` is IVF_HNSW_SQ below
        :data:`LARGE_TABLE_ROWS`, IVF_FLAT from there."""
        if self.index_type != "auto":
            return self.index_type
        return "IVF_FLAT" if rows >= LARGE_TABLE_ROWS else "IVF_HNSW_SQ"

    def partitions(self, rows: int) -> int:
        if self.num_partitions:
            return self.num_partitions
        if "HNSW" in self.resolved_type(rows):  # few large partitions: the graph searches inside each
            return max(4, rows // 125_000)
        return max(1, min(4096, int(math.sqrt(rows))))

    def search_params(self, rows: int) -> dict[str, int | None]:
        """``nprobes``, ``refine_factor`` and ``ef`` for a table of ``rows`` rows: the set fields, and
        :func:`search_defaults` for the rest."""
        defaults = search_defaults(self.resolved_type(rows), rows, self.partitions(rows))
        given = {"nprobes": self.nprobes, "refine_factor": self.refine_factor, "ef": self.ef}
        return {k: defaults[k] if v is None else v for k, v in given.items()}

    def index_config(self, rows: int, dim: int) -> Any:
        from lancedb.index import HnswPq, HnswSq, IvfFlat, IvfPq, IvfSq

        parts = self.partitions(rows)
        subs = self.num_sub_vectors or _sub_vectors(dim)
        common = {"distance_type": "dot", "num_partitions": parts}
        return {
            "IVF_PQ": lambda: IvfPq(num_sub_vectors=subs, **common),
            "IVF_HNSW_SQ": lambda: HnswSq(**common),
            "IVF_HNSW_PQ": lambda: HnswPq(num_sub_vectors=subs, **common),
            "IVF_SQ": lambda: IvfSq(**common),
            "IVF_FLAT": lambda: IvfFlat(**common),
        }[self.resolved_type(rows)]()


def search_defaults(index_type: str, rows: int, partitions: int) -> dict[str, int | None]:
    """Default search settings of an index (recall@10 >= 0.95 in ``benchmarks/results/index.md`` and
    ``ann_sweep.md``). HNSW: 8 probes, refine 20 / ef 300, or 100 / 1000 from :data:`LARGE_TABLE_ROWS`
    rows (refine 20 gives 0.976 at 100k rows but 0.903 at 1M). IVF: :data:`PROBED_FRACTION` of the
    partitions; IVF_FLAT stores the full vectors, so it needs no refine; the quantised ones refine as
    HNSW does."""
    large = rows >= LARGE_TABLE_ROWS
    refine, ef = (100, 1000) if large else (20, 300)
    if "HNSW" in index_type:
        return {"nprobes": 8, "refine_factor": refine, "ef": ef}
    nprobes = max(1, math.ceil(partitions * PROBED_FRACTION))
    return {"nprobes": nprobes, "refine_factor": 0 if index_type == "IVF_FLAT" else refine, "ef": None}


def _sub_vectors(dim: int) -> int:
    for s in (dim // 8, dim // 4, dim // 2, dim):
        if s >= 1 and dim % s == 0:
            return s
    return 1


def build_ann_index(table: lancedb.table.LanceTable, cfg: AnnConfig) -> dict[str, Any]:
    """Train and write the ANN index on the vector column (replacing one there); returns what the table
    metadata records about it."""
    rows = table.count_rows()
    dim = table.schema.field(VECTOR).type.list_size
    index_type = cfg.resolved_type(rows)
    start = time.perf_counter()
    table.create_index(VECTOR, config=cfg.index_config(rows, dim), replace=True)
    return {
        "type": index_type,
        "requested_type": cfg.index_type,
        "metric": "dot",
        "num_partitions": cfg.partitions(rows),
        "num_sub_vectors": (cfg.num_sub_vectors or _sub_vectors(dim)) if "PQ" in index_type else None,
        **cfg.search_params(rows),
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
    column: str = VECTOR,
) -> Any:
    """ANN top-k by dot product over ``column`` (the AirRep vectors, or a method column); returns an
    Arrow table with ``_rowid`` (scores recomputed by caller).
    Search settings: the arguments, else those recorded at build, else :func:`search_defaults` (for
    tables recorded before the defaults were)."""
    rec = recorded or {}
    rows = int(rec.get("rows_indexed") or table.count_rows())
    index_type = str(rec.get("type") or "IVF_HNSW_SQ")
    default = search_defaults(index_type, rows, int(rec.get("num_partitions") or 1))

    def pick(name: str, given: int | None) -> int | None:
        return next((int(v) for v in (given, rec.get(name), default[name]) if v is not None), None)

    q = table.search(vector, vector_column_name=column).distance_type("dot").limit(k).with_row_id(True)
    q = q.nprobes(pick("nprobes", nprobes) or 1)
    rf = pick("refine_factor", refine_factor) or 0
    if rf:
        q = q.refine_factor(rf)
    if "HNSW" in index_type:  # HNSW needs ef >= the candidates it returns (k, times the refine factor)
        q = q.ef(max(pick("ef", ef) or 300, k * max(rf, 1)))
    if where:
        q = q.where(where, prefilter=True)
    return q.select(["_distance"]).to_arrow()
