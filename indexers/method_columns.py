"""Method columns: an attribution method's train vectors stored as a vector column of an index table.

Every method of :mod:`airsearch.methods` scores ``query_vector . row_vector`` (the contract of
:class:`~airsearch.methods.base.AttributionMethod`), so its row vectors can sit beside the text,
the BM25 index and the AirRep ``vector`` in one LanceDB table, and a query is one query gradient plus
a vector search (:mod:`airsearch.indexers.method_search`).

* :func:`add_method_column` (``airsearch method-column``) computes ``row_vectors`` of every row, in
  fixed chunks of the table's rows in table order (with ``--ray``, by Ray actors:
  :mod:`airsearch.indexers.column_ray`), committed one chunk at a time into a side dataset
  (``<db>/_columns/<table>.<column>.<key>.lance``), so a killed build resumes where it stopped and
  gives the same vectors. The finished side dataset is merged into the table on ``id`` in one Lance
  commit: the column appears whole or not at all. Its field metadata (key ``airsearch.method``)
  records what made it (:class:`~airsearch.indexers.column_spec.ColumnSpec`): the method config, the manifest (model fingerprint,
  checkpoints, parameter set, projection, preconditioning), storage dtype and their fingerprint.
* K-FAC / EK-FAC factors are fitted once (on a seeded sample of the table's rows) and kept in
  ``<db>/_factors/<table>.<column>`` unless ``factors`` names a folder, so that appended rows and
  queries use the very same factors.
* Rows added later (``index --append/--upsert --lm LM``) get every column computed
  (:class:`ColumnFiller`); without ``--lm`` the write is refused, so no row lacks a vector.
  ``delete`` removes whole rows, so every column stays aligned.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Iterator, Sequence
from typing import Any

import lance
import numpy as np
import pyarrow as pa
from airsearch.indexers import ann
from airsearch.indexers.column_config import MethodColumnConfig, bytes_per_row
from airsearch.indexers.column_spec import FIELD_KEY as FIELD_KEY
from airsearch.indexers.column_spec import ColumnSpec as ColumnSpec
from airsearch.indexers.column_spec import column_specs as column_specs
from airsearch.indexers.column_spec import record_spec
from airsearch.indexers.rows import RESERVED, rows_to_examples
from airsearch.indexers.store import IndexStore
from airsearch.indexers.table import IndexTable

from airsearch.atomic import deferred_interrupt
from airsearch.data.example import Example
from airsearch.errors import FingerprintMismatch, InputError
from airsearch.fingerprint import fingerprint_json
from airsearch.methods.registry import MethodConfig
from airsearch.progress import progress
from airsearch.results import Result, omitted_when_none

COLUMNS_DIR = "_columns"
FACTORS_DIR = "_factors"
ARROW_DTYPES = {"float32": pa.float32(), "float16": pa.float16()}
# MethodConfig fields that name files or tune speed: they do not decide the vectors (the model
# fingerprints in the manifest do), so a rerank config matches a column whatever their values.
PATH_FIELDS = frozenset({"lm", "base_lm", "checkpoints", "factors", "factors_sample", "batch_size"})


@dataclasses.dataclass(frozen=True)
class ColumnSummary(Result):
    db: str
    table: str
    column: ColumnSpec
    rows_added: int
    resumed_rows: int
    seconds: float
    bytes_per_row: int
    ray_workers: int | None = omitted_when_none()  # method actors, when the vectors were computed on Ray


def default_column(method: str) -> str:
    return "m_" + method.replace("-", "_")


def find_column(table: IndexTable, name: str) -> ColumnSpec:
    """The spec of column ``name`` (a column name, or a method name with one column)."""
    specs = column_specs(table)
    if name in specs:
        return specs[name]
    by_method = [s for s in specs.values() if s.method == name]
    if len(by_method) == 1:
        return by_method[0]
    what = f"several columns of method {name!r}" if by_method else f"no method column {name!r}"
    raise InputError(
        f"{what} in table {table.name!r}; method columns: {sorted(specs) or 'none'} "
        "(add one with `airsearch method-column`)",
        field="method",
        path=table.path,
    )


def vectors_of_column(array: pa.Array | pa.ChunkedArray, dim: int) -> np.ndarray:
    """``[n, dim]`` float32 of a fixed-size-list column of float32 or float16 values."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if len(array) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    if array.null_count:
        raise InputError("a method column has rows without a vector; rebuild the column (--overwrite)")
    flat = array.flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float32, copy=False).reshape(-1, dim)


def vector_array(vectors: np.ndarray, dtype: str) -> pa.FixedSizeListArray:
    values = np.ascontiguousarray(vectors, dtype=np.float16 if dtype == "float16" else np.float32)
    return pa.FixedSizeListArray.from_arrays(
        pa.array(values.reshape(-1), ARROW_DTYPES[dtype]), values.shape[1]
    )


# ------------------------------------------------------------------------------------------ methods
def load_column_method(spec: ColumnSpec, lm: str | None, *, show_progress: bool = False) -> Any:
    """The method that made column ``spec``, on the LM folder ``lm`` (the column's own by default),
    refused (:class:`FingerprintMismatch`) when its vectors would differ from the stored ones."""
    from airsearch.methods.registry import load_method

    cfg = spec.method_config(lm=lm)
    method = load_method(cfg, show_progress=show_progress)
    have = fingerprint_json({"manifest": _match(method), "dtype": spec.dtype})
    if have != spec.fingerprint:
        raise FingerprintMismatch(
            f"the LM / settings given do not make the vectors of column {spec.column!r} (made with "
            f"{spec.config.get('lm')!r}, model {spec.manifest.get('model_fingerprint', '')[:12]}); "
            "give the LM the column was built with, or rebuild the column",
            field="lm",
        )
    return method


def _match(method: Any) -> dict[str, Any]:
    from airsearch.methods.store import VectorManifest

    m = method.manifest()
    return {f: getattr(m, f) for f in VectorManifest.MATCH_FIELDS}


def matching_column(table: IndexTable, cfg: MethodConfig) -> ColumnSpec | None:
    """A column of ``table`` made by the settings of ``cfg`` (paths aside; the model fingerprint is
    checked when its method is loaded), or ``None``."""
    want = {k: v for k, v in cfg.to_dict().items() if k not in PATH_FIELDS}
    for spec in column_specs(table).values():
        have = {k: v for k, v in spec.config.items() if k not in PATH_FIELDS}
        if json.dumps(have, sort_keys=True, default=str) == json.dumps(want, sort_keys=True, default=str):
            return spec
    return None


# ------------------------------------------------------------------------------------------ building
def _table_rows(table: IndexTable, chunk_size: int, skip: int) -> Iterator[list[Example]]:
    """The table's rows as examples, in table order, in chunks of ``chunk_size`` (after ``skip``)."""
    cols = ["id", "prompt", "response", *table.meta.columns, "metadata_extra"]
    pending: list[Example] = []
    seen = 0
    for batch in table.dataset.to_batches(columns=cols, batch_size=max(chunk_size, 1024)):
        for ex in rows_to_examples(pa.Table.from_batches([batch]), table.meta.columns):
            seen += 1
            if seen <= skip:
                continue
            pending.append(ex)
            if len(pending) == chunk_size:
                yield pending
                pending = []
    if pending:
        yield pending


def add_method_column(cfg: MethodColumnConfig, *, show_progress: bool = True) -> ColumnSummary:
    """Python API of ``airsearch method-column``: compute ``cfg.method``'s row vectors of every row of
    the table and add them as one vector column (module docstring); resumes a killed build."""
    from airsearch.indexers.table_methods import method_on_table

    start = time.perf_counter()
    store = IndexStore(cfg.db)
    table = store.open(cfg.table)
    name = cfg.column or default_column(cfg.method)
    if name in table.dataset.schema.names and not cfg.overwrite:
        raise InputError(
            f"table {table.name!r} already has a column {name!r}; --overwrite replaces it",
            field="column",
            path=table.path,
        )
    if name in ("id", "prompt", "response", *table.meta.columns) or name in RESERVED:
        raise InputError(f"{name!r} is a column of the table's rows; choose another name", field="column")
    mcfg = cfg.method_config()
    from airsearch.methods.plugin import get_plugin

    if get_plugin(mcfg.method).score_kind != "dot":
        raise InputError(
            f"method {mcfg.method!r} does not score by a dot product of stored vectors, so it has no "
            "column; rerank with it instead (query --rerank)",
            field="method",
        )
    if mcfg.precondition != "none" and not mcfg.factors:
        own = store.path / FACTORS_DIR / f"{table.name}.{name}"
        if cfg.overwrite and name in table.dataset.schema.names:
            shutil.rmtree(own, ignore_errors=True)  # refit on the table as it is now
        mcfg = mcfg.replace(factors=str(own))
    method = method_on_table(mcfg, table, show_progress=show_progress)
    match = _match(method)
    fingerprint = fingerprint_json({"manifest": match, "dtype": cfg.dtype})
    key = fingerprint_json([fingerprint, table.version, cfg.chunk_size, name])[:12]
    side = store.path / COLUMNS_DIR / f"{table.name}.{name}.{key}.lance"
    for stale in (store.path / COLUMNS_DIR).glob(f"{table.name}.{name}.*.lance"):
        if stale != side:
            shutil.rmtree(stale, ignore_errors=True)
    done = lance.dataset(str(side)).count_rows() if side.is_dir() else 0
    total = table.count()
    bar = progress(desc=f"{name} vectors", total=total, initial=done, unit="row", quiet=not show_progress)
    chunks = _table_rows(table, cfg.chunk_size, done)
    ray_stats: dict[str, int] = {}
    if cfg.ray is None:
        computed = ((c, method.train_features(c).detach().cpu().numpy()) for c in chunks)
    else:  # the same chunks, computed by Ray actors, committed here in table order
        from airsearch.indexers.column_ray import ray_vector_chunks

        computed = ray_vector_chunks(mcfg.to_dict(), chunks, cfg.ray, cfg.workers, ray_stats)
    for chunk, vecs in computed:
        data = pa.table(
            {"id": pa.array([e.id for e in chunk], pa.string()), name: vector_array(vecs, cfg.dtype)}
        )
        lance.write_dataset(data, str(side), mode="append" if side.is_dir() else "create")
        bar.update(len(chunk))
    bar.close()
    built = lance.dataset(str(side)) if side.is_dir() else None
    if built is None or built.count_rows() != total:
        raise InputError(f"table {table.name!r} has no rows to compute", path=table.path)
    spec = ColumnSpec(
        column=name,
        method=cfg.method,
        dim=int(match["dim"]),
        dtype=cfg.dtype,
        fingerprint=fingerprint,
        manifest=match,
        config=mcfg.to_dict(),
        rows=total,
        build_seconds=round(time.perf_counter() - start, 3),
    )
    spec = _commit(store, table, built, spec, ann.AnnConfig(cfg.ann_threshold, cfg.ann_type))
    shutil.rmtree(side, ignore_errors=True)
    return ColumnSummary(
        db=str(store.path),
        table=table.name,
        column=spec,
        rows_added=total - done,
        resumed_rows=done,
        seconds=round(time.perf_counter() - start, 3),
        bytes_per_row=bytes_per_row(spec.dim, cfg.dtype),
        ray_workers=ray_stats.get("workers"),
    )


def _commit(
    store: IndexStore, table: IndexTable, built: lance.LanceDataset, spec: ColumnSpec, ann_cfg: ann.AnnConfig
) -> ColumnSpec:
    """Merge the finished side dataset into the table on ``id`` (one commit), record the spec, and
    build the column's ANN index when the table is large enough."""
    live = store.open(table.name)
    if not live.is_latest() or live.version != table.version:
        raise InputError(
            f"table {table.name!r} changed while the column was computed; run the command again",
            path=table.path,
        )
    with deferred_interrupt():
        ds = live.dataset
        if spec.column in ds.schema.names:  # --overwrite
            ds.drop_columns([spec.column])
            ds = store.db.open_table(table.name).to_lance()
        ds.merge(built.scanner().to_reader(), left_on="id", right_on="id")
        record_spec(store.db.open_table(table.name).to_lance(), spec)
    if ann_cfg.should_build(spec.rows):
        spec = build_column_index(store.db.open_table(table.name), spec, ann_cfg)
    return spec


def build_column_index(table: Any, spec: ColumnSpec, cfg: ann.AnnConfig) -> ColumnSpec:
    """Build (replacing) the ANN index of the method column ``spec.column`` of ``table`` (a LanceDB
    table of ``spec.rows`` rows) with ``cfg``, and record it in the column's spec; the new spec."""
    t0 = time.perf_counter()
    table.create_index(spec.column, config=cfg.index_config(spec.rows, spec.dim), replace=True)
    rec = {
        "type": cfg.resolved_type(spec.rows),
        "metric": "dot",
        "num_partitions": cfg.partitions(spec.rows),
        **cfg.search_params(spec.rows),
        "rows_indexed": spec.rows,
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    spec = dataclasses.replace(spec, ann=rec)
    record_spec(table.to_lance(), spec)
    return spec


# ------------------------------------------------------------------------------------------ appending
class ColumnFiller:
    """Computes every method column of a table for rows being added (``index --append/--upsert``)."""

    def __init__(self, specs: Sequence[ColumnSpec], lm: str | None, *, show_progress: bool = False) -> None:
        self.specs = list(specs)
        self.methods = [load_column_method(s, lm, show_progress=show_progress) for s in self.specs]

    @classmethod
    def for_table(cls, table: IndexTable, lm: str | None) -> ColumnFiller | None:
        """``None`` for a table without method columns; refuses to add rows without ``lm``."""
        specs = list(column_specs(table).values())
        if not specs:
            return None
        if not lm:
            names = ", ".join(s.column for s in specs)
            raise InputError(
                f"table {table.name!r} has method columns ({names}); give --lm (the LM they were built "
                "with) so that the new rows get their vectors too",
                field="lm",
                path=table.path,
            )
        return cls(specs, lm)

    def arrays(self, examples: Sequence[Example]) -> dict[str, pa.Array]:
        out = {}
        for spec, method in zip(self.specs, self.methods, strict=True):
            vecs = method.train_features(list(examples)).detach().cpu().numpy()
            out[spec.column] = vector_array(vecs, spec.dtype)
        return out
