"""The LanceDB store: one table per corpus of encoded examples, with its provenance in the schema.

Each table's schema metadata (key ``airsearch``) records the encoder (fingerprint and info), the text
template, the corpus fingerprint(s), the build config and the airsearch version; readers refuse a
different encoder with :func:`airsearch.fingerprint.check_match`.

Writes are all-or-nothing:

* a new table is streamed into a hidden ``_building_*`` table and renamed into place only when it is
  complete (ANN index included), so a failed or interrupted build leaves no table behind;
* an append streams every chunk into one Lance commit, so it lands whole or not at all.

Lance is multi-version: a reader keeps reading the version it opened while a writer appends.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lance
import lancedb
import numpy as np
import pyarrow as pa
from airsearch.indexers import ann, fts
from airsearch.indexers.config import DeleteConfig
from airsearch.indexers.results import DeleteSummary, IndexInfo, TableInfo
from airsearch.indexers.rows import (
    VECTOR,
    infer_columns,
    rows_to_examples,
    table_schema,
    to_batch,
    vectors_of,
)

from airsearch import __version__
from airsearch.atomic import swap_into_place
from airsearch.data.example import Example
from airsearch.errors import FingerprintMismatch, InputError
from airsearch.fingerprint import check_match

META_KEY = "airsearch"
BUILDING_PREFIX = "_building_"
DEFAULT_TABLE = "corpus"


@dataclasses.dataclass
class TableMeta:
    """Provenance of one index table (stored as JSON in the Arrow schema metadata)."""

    encoder_fingerprint: str
    encoder: dict[str, Any]
    template: str
    dim: int
    columns: dict[str, str]
    corpora: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    ann: dict[str, Any] | None = None
    fts: dict[str, Any] | None = None  # the full-text (BM25) index, when built
    airsearch_version: str = __version__

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=str)

    @classmethod
    def from_schema(cls, schema: pa.Schema, path: str) -> TableMeta:
        raw = (schema.metadata or {}).get(META_KEY.encode())
        if raw is None:
            raise InputError(
                "this table was not written by airsearch (no 'airsearch' schema metadata)", path=path
            )
        data = json.loads(raw)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class IndexTable:
    """A read view of one table, pinned to the version that was current when it was opened."""

    def __init__(self, store: IndexStore, name: str, table: lancedb.table.LanceTable) -> None:
        self.store = store
        self.name = name
        self.table = table
        self.dataset: lance.LanceDataset = table.to_lance()
        self.path = f"{store.path}/{name}"
        self.meta = TableMeta.from_schema(self.dataset.schema, self.path)

    @property
    def version(self) -> int:
        return self.dataset.version

    @property
    def dim(self) -> int:
        return self.meta.dim

    def count(self, where: str | None = None) -> int:
        return self.dataset.count_rows(filter=where) if where else self.dataset.count_rows()

    def check_encoder(self, fingerprint: str) -> None:
        """Refuse an encoder whose weights or input rule differ from the one the table was built with."""
        from airsearch.encoder import INPUT_RULE, LEGACY_INPUT_RULE

        rule = self.meta.encoder.get("input_rule", LEGACY_INPUT_RULE)
        if rule != INPUT_RULE and self.meta.encoder_fingerprint != fingerprint:
            raise FingerprintMismatch(
                f"this index was encoded with the old input rule '{rule}', which cut the answer off long "
                f"rows; the encoder now uses '{INPUT_RULE}'. Re-index the corpus with this version.",
                path=self.path,
            )
        check_match(
            "encoder",
            self.meta.encoder_fingerprint,
            fingerprint,
            path=self.path,
            hint="Query with the encoder the index was built with, or re-index.",
        )

    def metadata_columns(self) -> list[str]:
        return list(self.meta.columns)

    def iter_blocks(
        self, block_size: int = 65536, *, where: str | None = None, columns: Sequence[str] = ()
    ) -> Iterator[tuple[np.ndarray, np.ndarray, pa.RecordBatch]]:
        """Stream ``(row_ids, vectors [b, dim], batch of extra columns)`` in table order."""
        cols = [VECTOR, *columns]
        try:
            batches = self.dataset.to_batches(
                columns=cols, filter=where, with_row_id=True, batch_size=block_size
            )
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                row_ids = batch.column("_rowid").to_numpy().astype(np.int64)
                yield row_ids, vectors_of(batch.column(VECTOR), self.dim), batch
        except (OSError, ValueError) as e:  # lance reports bad SQL as ValueError/OSError
            if where:
                raise InputError(f"bad filter {where!r}: {str(e).splitlines()[0]}", field="where") from None
            raise

    def take(self, row_ids: Sequence[int], *, with_vectors: bool = False) -> list[Example]:
        """The stored examples for ``row_ids`` (in that order)."""
        if len(row_ids) == 0:
            return []
        cols = ["id", "prompt", "response", *self.meta.columns, "metadata_extra"]
        return rows_to_examples(
            self.dataset._take_rows([int(r) for r in row_ids], columns=cols), self.meta.columns
        )

    def take_vectors(self, row_ids: Sequence[int]) -> np.ndarray:
        if len(row_ids) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        t = self.dataset._take_rows([int(r) for r in row_ids], columns=[VECTOR])
        return vectors_of(t.column(VECTOR), self.dim)

    def take_raw(self, row_ids: Sequence[int], columns: Sequence[str]) -> pa.Table:
        return self.dataset._take_rows([int(r) for r in row_ids], columns=list(columns))

    def find(self, ids: Sequence[str]) -> dict[str, int]:
        """``{example id: row id}`` of the given example ids that are in this version of the table."""
        if not ids:
            return {}
        found = self.dataset.to_table(columns=["id"], filter=ids_filter(ids), with_row_id=True)
        return dict(zip(found.column("id").to_pylist(), found.column("_rowid").to_pylist(), strict=True))

    def has_ann(self) -> bool:
        return any(VECTOR in idx.columns for idx in self.table.list_indices())

    def has_fts(self) -> bool:
        return fts.has_index(self.table)

    def describe(self) -> TableInfo:
        return TableInfo(
            name=self.name,
            rows=self.count(),
            dim=self.dim,
            version=self.version,
            encoder=self.meta.encoder,
            encoder_fingerprint=self.meta.encoder_fingerprint,
            template=self.meta.template,
            corpora=self.meta.corpora,
            metadata_columns=self.meta.columns,
            index=ann.index_status(self.table, self.meta.ann),
            fts=self.has_fts(),
            airsearch_version=self.meta.airsearch_version,
        )


class IndexStore:
    """A LanceDB directory of index tables."""

    def __init__(self, path: str | os.PathLike, *, create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.is_dir():
            raise InputError("index directory not found (build one with `airsearch index`)", path=self.path)
        if self.path.exists() and not self.path.is_dir():
            raise InputError("exists and is not a directory; choose another index directory", path=self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.db = lancedb.connect(str(self.path))

    def table_names(self) -> list[str]:
        found = (p.name[: -len(".lance")] for p in self.path.glob("*.lance") if p.is_dir())
        return sorted(n for n in found if not n.startswith(BUILDING_PREFIX))

    def exists(self, name: str) -> bool:
        return (self.path / f"{name}.lance").is_dir()

    def open(self, name: str | None = None) -> IndexTable:
        """Open a table; ``None`` means the only table (or ``corpus``)."""
        name = name or self._default_name()
        if not self.exists(name):
            raise InputError(
                f"no table named {name!r}; tables here: {self.table_names() or 'none'}", path=self.path
            )
        return IndexTable(self, name, self.db.open_table(name))

    def _default_name(self) -> str:
        names = self.table_names()
        if len(names) == 1 or not names:
            return names[0] if names else DEFAULT_TABLE
        if DEFAULT_TABLE in names:
            return DEFAULT_TABLE
        raise InputError(f"several tables here ({names}); choose one by name", field="table", path=self.path)

    # ------------------------------------------------------------------ writing
    def create(
        self,
        name: str,
        chunks: Iterable[tuple[Sequence[Example], np.ndarray]],
        meta: TableMeta,
        *,
        overwrite: bool = False,
        ann_config: ann.AnnConfig | None = None,
        full_text: bool = True,
    ) -> IndexTable:
        """Stream ``(examples, vectors)`` chunks into a new table; it appears only once complete.

        ``full_text`` also builds the BM25 index on prompt and response (``query --mode bm25|hybrid``).
        """
        _check_name(name)
        if self.exists(name) and not overwrite:
            raise InputError(
                f"table {name!r} already exists; append rows to it or overwrite it",
                field="table",
                path=self.path,
            )
        self._remove_stale_builds()
        tmp = f"{BUILDING_PREFIX}{name}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        tmp_dir = self.path / f"{tmp}.lance"
        try:
            it = iter(chunks)
            first = next(it, None)
            if first is None:
                raise InputError("no rows to index")
            meta.columns = infer_columns(first[0])
            schema = table_schema(meta.columns, meta.dim, {META_KEY: meta.to_json()})
            source = _Captured(_batches(first, it, schema, meta))
            reader = pa.RecordBatchReader.from_batches(schema, iter(source))
            table = source.run(lambda: self.db.create_table(tmp, data=reader, schema=schema))
            if ann_config is not None and ann_config.should_build(table.count_rows()):
                meta.ann = ann.build(table, ann_config)
            if full_text:
                meta.fts = fts.build(table)
            table.to_lance().update_schema_metadata({META_KEY: meta.to_json()})  # final corpus entries
            # --overwrite: the finished table is swapped in and the old one dropped
            swap_into_place(tmp_dir, self.path / f"{name}.lance")
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        return self.open(name)

    def _remove_stale_builds(self) -> None:
        """Remove ``_building_*`` tables left by a build that was killed (its process is gone)."""
        for d in self.path.glob(f"{BUILDING_PREFIX}*.lance"):
            parts = d.name[: -len(".lance")].split("_")
            pid = next((int(p) for p in reversed(parts[:-1]) if p.isdigit()), None)
            if pid is not None and pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(d, ignore_errors=True)

    def append(
        self,
        name: str,
        chunks: Iterable[tuple[Sequence[Example], np.ndarray]],
        *,
        encoder_fingerprint: str,
        corpus: dict[str, Any] | None = None,
        ann_config: ann.AnnConfig | None = None,
    ) -> IndexTable:
        """Add rows in one commit. Refuses vectors from a different encoder."""
        current = self.open(name)
        meta = current.meta
        if meta.encoder_fingerprint != encoder_fingerprint:
            raise FingerprintMismatch(
                f"encoder fingerprint mismatch: the table was built with {meta.encoder_fingerprint}, "
                f"but {encoder_fingerprint} is in use; append with the same encoder or build a new table",
                path=current.path,
            )
        schema = current.dataset.schema
        it = iter(chunks)
        first = next(it, None)
        if first is None:
            return current
        source = _Captured(_batches(first, it, schema, meta))
        reader = pa.RecordBatchReader.from_batches(schema, iter(source))
        source.run(lambda: current.table.add(reader))
        if corpus is not None:
            meta.corpora.append(corpus)
        table = self.db.open_table(name)
        if ann_config is not None:
            rows = table.count_rows()
            if current.has_ann():
                ann.refresh(table)
                meta.ann = {**(meta.ann or {}), "rows_indexed": rows}
            elif ann_config.should_build(rows):
                meta.ann = ann.build(table, ann_config)
                if fts.has_index(table):
                    ann.refresh(table)  # the new ANN index is current; fold the rows into the BM25 one
            elif fts.has_index(table):
                ann.refresh(table)  # fold the appended rows into the BM25 index
        table.to_lance().update_schema_metadata({META_KEY: meta.to_json()})
        return self.open(name)

    def delete(self, name: str | None = None, *, ids: Sequence[str] = (), where: str | None = None) -> int:
        """Delete rows by id and/or SQL filter; returns how many rows went."""
        if not ids and not where:
            raise InputError("give ids or a filter to delete", field="where")
        current = self.open(name)
        clauses = []
        if ids:
            clauses.append(ids_filter(ids))
        if where:
            clauses.append(f"({where})")
        predicate = " OR ".join(clauses)
        before = current.count()
        try:
            current.table.delete(predicate)
        except (OSError, ValueError, RuntimeError) as e:
            raise InputError(f"bad filter {predicate!r}: {str(e).splitlines()[0]}", field="where") from None
        return before - self.db.open_table(current.name).count_rows()

    def drop(self, name: str) -> None:
        if self.exists(name):
            self.db.drop_table(name)


def ids_filter(ids: Sequence[str]) -> str:
    """SQL ``id IN (...)`` with every id quoted as a string literal."""
    return "id IN (" + ", ".join("'" + str(i).replace("'", "''") + "'" for i in ids) + ")"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_name(name: str) -> None:
    ok = name and all(c.isalnum() or c in "_-." for c in name) and not name.startswith((".", BUILDING_PREFIX))
    if not ok:
        raise InputError(f"table names use letters, digits, '_', '-' and '.', not {name!r}", field="table")


def _batches(
    first: tuple[Sequence[Example], np.ndarray],
    rest: Iterator[tuple[Sequence[Example], np.ndarray]],
    schema: pa.Schema,
    meta: TableMeta,
    max_rows: int = 8192,
) -> Iterator[pa.RecordBatch]:
    for examples, vectors in _chain(first, rest):
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != meta.dim or vectors.shape[0] != len(examples):
            raise InputError(
                f"vectors of shape {vectors.shape} do not match {len(examples)} rows of dim {meta.dim}"
            )
        for start in range(0, len(examples), max_rows):
            yield to_batch(
                examples[start : start + max_rows], vectors[start : start + max_rows], schema, meta.columns
            )


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


class _Captured:
    """Re-raise the original exception of a batch generator that Lance wrapped in its own error."""

    def __init__(self, gen: Iterator[pa.RecordBatch]) -> None:
        self.gen = gen
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self.gen
        except BaseException as e:
            self.error = e
            raise

    def run(self, fn: Any) -> Any:
        try:
            return fn()
        except BaseException:
            if self.error is not None:
                raise self.error from None
            raise


def info(db: str | os.PathLike) -> IndexInfo:
    """Python API of ``airsearch info``: every table's rows, dim, encoder, index status, versions."""
    store = IndexStore(db)
    return IndexInfo(
        db=str(store.path),
        airsearch_version=__version__,
        lancedb_version=lancedb.__version__,
        lance_version=lance.__version__,
        tables=[store.open(n).describe() for n in store.table_names()],
    )


def delete_rows(cfg: DeleteConfig) -> DeleteSummary:
    """Python API of ``airsearch delete``: remove rows by id and/or filter; readers see a new version."""
    store = IndexStore(cfg.db)
    name = cfg.table or store._default_name()
    deleted = store.delete(name, ids=cfg.ids, where=cfg.where)
    return DeleteSummary(db=str(store.path), table=name, deleted=deleted, rows=store.open(name).count())
