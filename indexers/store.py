"""The LanceDB store: one table per corpus of encoded examples, with its provenance in the schema.

Each table's schema metadata (key ``airsearch``) records the encoder (fingerprint and info), the text
template, the corpus fingerprint(s), the build config and the airsearch version; readers refuse a
different encoder with :func:`airsearch.fingerprint.check_match`.

Writes are all-or-nothing (:mod:`airsearch.indexers.writes`): rows are committed chunk by chunk into
a hidden staging table (:mod:`airsearch.indexers.staging`, which makes builds resumable), and only a
finished staging table reaches the live one, renamed into place or added in one commit. One table
and its provenance are :mod:`airsearch.indexers.table` (:class:`IndexTable`, :class:`TableMeta`,
re-exported here).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lance
from airsearch.indexers.column_spec import record_row_count
from airsearch.indexers.config import DeleteConfig, bad_filter
from airsearch.indexers.lock import DEFAULT_LOCK_TIMEOUT, table_lock
from airsearch.indexers.results import DeleteSummary, IndexInfo
from airsearch.indexers.staging import BUILDING_PREFIX
from airsearch.indexers.table import META_KEY as META_KEY
from airsearch.indexers.table import IndexTable as IndexTable
from airsearch.indexers.table import TableMeta as TableMeta
from airsearch.indexers.table import ids_filter
from airsearch.indexers.writes import append_rows, create_table

from airsearch import __version__
from airsearch.errors import InputError

DEFAULT_TABLE = "corpus"


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
        self._db: Any = None

    @property
    def db(self) -> Any:
        """The LanceDB connection, made on first use (reads go through Lance: :class:`IndexTable`)."""
        if self._db is None:
            import lancedb

            self._db = lancedb.connect(str(self.path))
        return self._db

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
        return IndexTable(self, name)

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

    # Writes live in airsearch.indexers.writes (one implementation, taking the store as its first
    # argument); bound here as methods: ``store.create(name, chunks, meta, ...)`` writes a new table
    # that appears only once complete, ``store.append(name, chunks, encoder_fingerprint=..., ...)``
    # adds rows in one commit (``upsert``: replacing rows of the same id).
    create = create_table
    append = append_rows

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
            after = self.db.open_table(current.name).to_lance()
            record_row_count(after, ann_refreshed=False)
            return before - after.count_rows()

    def drop(self, name: str) -> None:
        if self.exists(name):
            self.db.drop_table(name)


def check_name(name: str) -> None:
    ok = name and all(c.isalnum() or c in "_-." for c in name) and not name.startswith((".", BUILDING_PREFIX))
    if not ok:
        raise InputError(f"table names use letters, digits, '_', '-' and '.', not {name!r}", field="table")


def info(db: str | os.PathLike) -> IndexInfo:
    """Python API of ``airsearch info``: every table's rows, dim, encoder, index status, versions."""
    import lancedb

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
