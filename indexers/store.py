"""The LanceDB store: one table per corpus of encoded examples, with its provenance in the schema.

Each table's schema metadata (key ``airsearch``) records the encoder (fingerprint and info), the text
template, the corpus fingerprint(s), the build config and the airsearch version; readers refuse a
different encoder with :func:`airsearch.fingerprint.check_match`.

Writes are all-or-nothing (:mod:`airsearch.indexers.writes`): rows are committed chunk by chunk into
a hidden staging table (:mod:`airsearch.indexers.staging`, which makes builds resumable), and only a
finished staging table reaches the live one, renamed into place or added in one commit. Ids are
unique within a table (:meth:`IndexTable.refuse_known_ids`).

Lance is multi-version: a reader keeps reading the version it opened while a writer appends
(:meth:`IndexTable.is_latest`; ``Searcher.refresh`` moves a reader to the newest version).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from datetime import timezone
from pathlib import Path
from typing import Any

import lance
import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from airsearch.indexers import ann, fts
from airsearch.indexers.config import DeleteConfig, bad_filter
from airsearch.indexers.lock import DEFAULT_LOCK_TIMEOUT, table_lock
from airsearch.indexers.results import DeleteSummary, IndexInfo, TableInfo, VersionInfo
from airsearch.indexers.rows import (
    VECTOR,
    rows_to_examples,
    vector_dim,
    vectors_of,
)
from airsearch.indexers.staging import BUILDING_PREFIX

from airsearch import __version__
from airsearch.data.example import Example
from airsearch.errors import FingerprintMismatch, InputError
from airsearch.fingerprint import check_match, fingerprint_json

META_KEY = "airsearch"
DEFAULT_TABLE = "corpus"
SHOWN_IDS = 5  # ids named when an append is refused


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
        self.folder = store.path / f"{name}.lance"
        self.identity = folder_identity(self.folder)  # before the dataset: a swap in between is seen
        self.table = table
        self.dataset: lance.LanceDataset = table.to_lance()
        self.path = f"{store.path}/{name}"
        self.meta = TableMeta.from_schema(self.dataset.schema, self.path)

    @property
    def version(self) -> int:
        return self.dataset.version

    @property
    def dim(self) -> int:
        """The dimension of the stored vectors (from the schema itself, not the recorded metadata)."""
        return vector_dim(self.dataset.schema) or self.meta.dim

    def is_latest(self) -> bool:
        """Whether this view is the table's newest version: no rows appended or deleted since, and the
        table folder not replaced (``index --overwrite`` swaps in a new folder whose version number
        may be the same or lower)."""
        if folder_identity(self.folder) != self.identity:
            return False
        try:
            return self.dataset.latest_version == self.dataset.version
        except (OSError, RuntimeError, ValueError):  # replaced or damaged under us: reopen to know
            return False

    def versions(self, last: int = 20) -> list[VersionInfo]:
        """The table's kept versions (the ``last`` ones, oldest first), for ``info`` and ``restore``."""
        out = []
        for v in self.dataset.versions()[-last:]:
            number = int(v["version"])
            try:
                rows = lance.dataset(str(self.folder), version=number).count_rows()
            except (OSError, RuntimeError, ValueError):
                rows = None
            stamp = v.get("timestamp")
            when = stamp.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if stamp else ""
            out.append(VersionInfo(version=number, time=when, rows=rows))
        return out

    def count(self, where: str | None = None) -> int:
        if not where:
            return self.dataset.count_rows()
        try:
            return self.dataset.count_rows(filter=where)
        except (OSError, ValueError) as e:  # lance reports bad SQL as ValueError/OSError
            raise bad_filter(where, e) from None

    def check_encoder(self, fingerprint: str, *, dim: int | None = None, runtime: str | None = None) -> None:
        """Refuse an encoder whose vectors have another dimension than the table's, that runs on
        another runtime (``runtime``: its label, :func:`airsearch.runtime.runtime_label`), or whose
        weights or input rule differ from the one the table was built with (before any search or append)."""
        from airsearch.encoder import INPUT_RULE, LEGACY_INPUT_RULE
        from airsearch.runtime import recorded_runtime, runtime_label

        if dim is not None and dim != self.dim:
            raise FingerprintMismatch(
                f"vector dimension mismatch: the table's vectors have {self.dim} dimensions but the "
                f"encoder makes {dim}; use the encoder the table was built with, or re-index",
                field="encoder",
                path=self.path,
            )
        built = runtime_label(*recorded_runtime(self.meta.encoder))
        if runtime is not None and runtime != built:
            raise FingerprintMismatch(
                f"this index was built with the '{built}' encoder runtime and the encoder runs '{runtime}'; "
                f"vectors of two runtimes are not mixed. Use the runtime it was built with "
                f"({_runtime_options(built)}), or re-index with this one",
                field="runtime",
                path=self.path,
            )
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
                raise bad_filter(where, e) from None
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

    def ids(self) -> pa.Array:
        """Every row id of this version of the table."""
        return self.dataset.to_table(columns=["id"]).column("id").combine_chunks()

    def refuse_known_ids(self, ids: Sequence[str] | pa.Array, known: pa.Array | None = None) -> None:
        """Ids are unique within a table: refuse ``ids`` that are already here (``known``: the table's
        ids, when the caller has read them), naming the first few."""
        new = ids if isinstance(ids, pa.Array) else pa.array(list(ids), pa.string())
        found = new.filter(pc.is_in(new, value_set=self.ids() if known is None else known))
        if len(found):
            shown = ", ".join(repr(i) for i in found[:SHOWN_IDS].to_pylist())
            more = f" and {len(found) - SHOWN_IDS} more" if len(found) > SHOWN_IDS else ""
            raise InputError(
                f"{len(found)} row id(s) are already in table {self.name!r}: {shown}{more}; ids are "
                "unique within a table (give those rows new ids, or upsert to replace them)",
                field="append",
                path=self.path,
            )

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
            versions=self.versions(),
            method_columns=(columns := method_column_info(self.dataset.schema)),
            fingerprint=fingerprint_json(
                [
                    self.meta.encoder_fingerprint,
                    [c.get("fingerprint") for c in self.meta.corpora],
                    {name: c["fingerprint"] for name, c in columns.items()},
                ]
            ),
        )


class IndexStore:
    """A LanceDB directory of index tables."""

    def __init__(self, path: str | os.PathLike, *, create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.is_dir():
            raise InputError("index directory not found (build one with `airsearch index`)", path=self.path)
        if self.path.exists() and not self.path.is_dir():
            raise InputError("exists and is not a directory; choose another index directory", path=self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot create the index folder: {e.strerror or e}", path=self.path) from None
        self.db = lancedb.connect(str(self.path))

    def table_names(self) -> list[str]:
        found = (p.name[: -len(".lance")] for p in self.path.glob("*.lance") if p.is_dir())
        return sorted(n for n in found if not n.startswith(BUILDING_PREFIX))

    def exists(self, name: str) -> bool:
        return (self.path / f"{name}.lance").is_dir()

    def open(self, name: str | None = None) -> IndexTable:
        """Open a table; ``None`` means the only table (refused, naming them, when there are several)."""
        name = name or self._default_name()
        if not self.exists(name):
            raise InputError(
                f"no table named {name!r}; tables here: {self.table_names() or 'none'}", path=self.path
            )
        return IndexTable(self, name, self.db.open_table(name))

    def _default_name(self) -> str:
        names = self.table_names()
        if len(names) <= 1:
            return names[0] if names else DEFAULT_TABLE
        # never a silent pick (not even ``corpus``): the user says which table they mean
        raise InputError(
            f"several tables here ({', '.join(names)}); name the one to use", field="table", path=self.path
        )

    # ------------------------------------------------------------------ writing
    def check_new_table(self, name: str, *, overwrite: bool) -> None:
        """Refuse a bad table name, or an existing table unless it is to be overwritten."""
        check_name(name)
        if self.exists(name) and not overwrite:
            raise InputError(
                f"table {name!r} already exists; append rows to it or overwrite it",
                field="table",
                path=self.path,
            )

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
        """Write ``(examples, vectors)`` chunks into a new table; it appears only once complete
        (:func:`airsearch.indexers.writes.create_table`)."""
        from airsearch.indexers.writes import create_table

        return create_table(
            self, name, chunks, meta, overwrite=overwrite, ann_config=ann_config, full_text=full_text
        )

    def append(
        self,
        name: str,
        chunks: Iterable[tuple[Sequence[Example], np.ndarray]],
        *,
        encoder_fingerprint: str,
        corpus: dict[str, Any] | None = None,
        ann_config: ann.AnnConfig | None = None,
        upsert: bool = False,
    ) -> IndexTable:
        """Add rows in one commit (``upsert``: replacing rows of the same id); see
        :func:`airsearch.indexers.writes.append_rows`."""
        from airsearch.indexers.writes import append_rows

        return append_rows(
            self,
            name,
            chunks,
            encoder_fingerprint=encoder_fingerprint,
            corpus=corpus,
            ann_config=ann_config,
            upsert=upsert,
        )

    def delete(
        self,
        name: str | None = None,
        *,
        ids: Sequence[str] = (),
        where: str | None = None,
        dry_run: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> int:
        """Delete rows by id and/or SQL filter under the table's write lock; returns how many rows
        went (``dry_run``: how many would go, deleting nothing)."""
        if not ids and not where:
            raise InputError("give ids or a filter to delete", field="where")
        name = name or self._default_name()
        clauses = []
        if ids:
            clauses.append(ids_filter(ids))
        if where:
            clauses.append(f"({where})")
        predicate = " OR ".join(clauses)
        if dry_run:
            return self.open(name).count(predicate)
        with table_lock(self.path, name, what="airsearch delete", timeout=lock_timeout):
            current = self.open(name)
            before = current.count()
            try:
                current.table.delete(predicate)
            except (OSError, ValueError, RuntimeError) as e:
                if isinstance(e, PermissionError) or "ermission denied" in str(e):
                    raise InputError(
                        "cannot write the table (permission denied)", path=current.path
                    ) from None
                raise bad_filter(where or predicate, e, field="where" if where else "ids") from None
            return before - self.db.open_table(current.name).count_rows()

    def drop(self, name: str) -> None:
        if self.exists(name):
            self.db.drop_table(name)


def method_column_info(schema: pa.Schema) -> dict[str, dict[str, Any]]:
    """What made each method column (:mod:`airsearch.indexers.method_columns`), for ``info``."""
    from airsearch.indexers.method_columns import column_specs

    return {name: spec.to_dict() for name, spec in column_specs(schema).items()}


def _runtime_options(label: str) -> str:
    """The options that choose runtime ``label`` (``onnx-int8`` -> ``runtime onnx, quantize int8``)."""
    runtime, _, quantize = label.partition("-")
    return f"runtime {runtime}, quantize {quantize or 'none'}"


def ids_filter(ids: Sequence[str]) -> str:
    """SQL ``id IN (...)`` with every id quoted as a string literal."""
    return "id IN (" + ", ".join("'" + str(i).replace("'", "''") + "'" for i in ids) + ")"


def check_name(name: str) -> None:
    ok = name and all(c.isalnum() or c in "_-." for c in name) and not name.startswith((".", BUILDING_PREFIX))
    if not ok:
        raise InputError(f"table names use letters, digits, '_', '-' and '.', not {name!r}", field="table")


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
    found = store.open(name).find(cfg.ids) if cfg.ids else {}
    missing = [i for i in dict.fromkeys(cfg.ids) if i not in found]  # reported, never silently ignored
    deleted = store.delete(
        name, ids=cfg.ids, where=cfg.where, dry_run=cfg.dry_run, lock_timeout=cfg.lock_timeout
    )
    table = store.open(name)
    return DeleteSummary(
        db=str(store.path),
        table=name,
        deleted=deleted,
        rows=table.count(),
        dry_run=cfg.dry_run,
        version=table.version,
        missing=missing,
    )


def folder_identity(folder: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of a table folder: a replaced table (``index --overwrite``) has another."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino
