"""Staging tables: every index build writes into one, so that a build can be killed and resumed.

Rows are encoded into a hidden table ``_building_<table>_<key>`` in the db folder and committed chunk
by chunk (one Lance version each). After every commit, ``_building_<table>_<key>.json`` records how
many corpus rows the staging table holds, its version, and the corpus fingerprint of those rows (the
:class:`~airsearch.data.corpus.CorpusHasher` state). The key fingerprints what decides the rows and
their vectors (table, mode, encoder, corpus sources, reading options), so the same command finds its
own staging table again:

* killed (``kill -9``) or interrupted (Ctrl-C): the staging table stays; the rerun checks that the
  corpus still begins with the recorded rows (same fingerprint) and encodes only the rest, or starts
  over when the corpus changed;
* refused (an :class:`~airsearch.errors.AirsearchError`, e.g. a bad row): the staging table is
  discarded, since the rerun needs other input anyway;
* finished: the staging table is renamed into place as the table, or added to (merged into) the live
  table in one commit (:mod:`airsearch.indexers.store`).

Only one process builds a given staging table: a live process recorded in the state file is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lance
import pyarrow as pa

from airsearch.atomic import write_json_atomic
from airsearch.data.corpus import CorpusHasher
from airsearch.errors import InputError

if TYPE_CHECKING:
    from airsearch.indexers.table import TableFolder

BUILDING_PREFIX = "_building_"
STATE_SUFFIX = ".json"
COMPACT_ABOVE_FRAGMENTS = 16  # a finished staging table with more fragments is compacted first


@dataclasses.dataclass
class StagingState:
    """What the state file records after each commit."""

    key: str
    table: str
    pid: int
    rows: int = 0  # corpus rows (examples) committed so far
    version: int | None = None  # the staging table's version holding exactly those rows
    hash_count: int = 0  # CorpusHasher state of those rows
    hash_total: str = "0"

    def hasher(self) -> CorpusHasher:
        h = CorpusHasher()
        h.count, h.total = self.hash_count, int(self.hash_total, 16)
        return h


class Staging:
    """The staging table of one build (see the module docstring); get it with :meth:`claim`."""

    def __init__(self, store: TableFolder, table: str, key: str) -> None:
        self.store = store
        self.table = table
        self.name = f"{BUILDING_PREFIX}{table}_{key}"
        self.dir = store.path / f"{self.name}.lance"
        self.state_file = store.path / f"{self.name}{STATE_SUFFIX}"
        self.state = StagingState(key=key, table=table, pid=os.getpid())

    @classmethod
    def claim(cls, store: TableFolder, table: str, key: str) -> Staging:
        """This build's staging table: resumed when a stopped build left it, else new. Stale staging
        tables of other builds of ``table`` (their process gone) are removed."""
        remove_stale(store.path, table, keep=f"{BUILDING_PREFIX}{table}_{key}")
        self = cls(store, table, key)
        saved = _read_state(self.state_file)
        if saved is not None and saved.pid != os.getpid() and pid_alive(saved.pid):
            raise InputError(
                f"another airsearch process (pid {saved.pid}) is building table {table!r} here; "
                "wait for it to finish",
                field="table",
                path=store.path,
            )
        if saved is None or saved.version is None or not self.dir.is_dir():
            self.reset()
            return self
        self.state = dataclasses.replace(saved, pid=os.getpid())
        dataset = lance.dataset(str(self.dir))
        if dataset.version != saved.version:  # killed between a commit and its record, or later
            lance.dataset(str(self.dir), version=saved.version).restore()
        self._save()
        return self

    # ------------------------------------------------------------------ progress
    @property
    def rows(self) -> int:
        """Corpus rows already encoded and committed here."""
        return self.state.rows

    def matches(self, prefix: CorpusHasher) -> bool:
        """Whether the first :attr:`rows` rows of the corpus read now are the ones committed here."""
        done = self.state.hasher()
        return (prefix.count, prefix.total) == (done.count, done.total)

    def schema(self) -> pa.Schema | None:
        """The staging table's schema (``None`` before the first commit)."""
        return lance.dataset(str(self.dir)).schema if self.state.version is not None else None

    def commit(
        self, batch: pa.RecordBatch | pa.Table, *, rows: int, hasher: CorpusHasher | None = None
    ) -> None:
        """Add ``batch`` in one Lance commit, then record the progress: ``rows`` corpus rows are now
        committed (whose fingerprint state is ``hasher``). The data is materialised: no Python
        iterator runs inside Lance, so Ctrl-C cannot strike in a native thread."""
        data = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        if self.state.version is None:
            shutil.rmtree(self.dir, ignore_errors=True)
            table = self.store.db.create_table(self.name, data=data, schema=data.schema)
        else:
            table = self.store.db.open_table(self.name)
            table.add(data)
        self.state.version = table.version
        self.state.rows = rows
        if hasher is not None:
            self.state.hash_count, self.state.hash_total = hasher.count, f"{hasher.total:x}"
        self._save()

    def commit_fragments(
        self, fragments: list[Any], schema: pa.Schema, *, rows: int, hasher: CorpusHasher
    ) -> None:
        """Commit Lance fragments written by other processes (the actors of a distributed build,
        :mod:`airsearch.indexers.distributed`) as ONE new version of the staging table, in the order
        given, then record the progress as :meth:`commit` does."""
        if self.state.version is None:
            operation = lance.LanceOperation.Overwrite(schema, fragments)
        else:
            operation = lance.LanceOperation.Append(fragments)
        dataset = lance.LanceDataset.commit(str(self.dir), operation, read_version=self.state.version)
        self.state.version, self.state.rows = dataset.version, rows
        self.state.hash_count, self.state.hash_total = hasher.count, f"{hasher.total:x}"
        self._save()

    def compact(self) -> None:
        """Merge the per-chunk fragments of a finished staging table and drop the old versions."""
        dataset = lance.dataset(str(self.dir))
        if len(dataset.get_fragments()) > COMPACT_ABOVE_FRAGMENTS:
            from datetime import timedelta

            dataset.optimize.compact_files()
            lance.dataset(str(self.dir)).cleanup_old_versions(older_than=timedelta(0))

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        """Start this staging table over (nothing committed)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.state = StagingState(key=self.state.key, table=self.table, pid=os.getpid())
        self._save()

    def discard(self) -> None:
        """Remove the staging table and its state file."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.forget()

    def forget(self) -> None:
        """Remove the state file only (the staging folder was moved into place)."""
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()

    def _save(self) -> None:
        write_json_atomic(self.state_file, dataclasses.asdict(self.state))


def _read_state(path: Path) -> StagingState | None:
    try:
        data = json.loads(path.read_text())
        return StagingState(**data)
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(db: Path, table: str, *, keep: str | None = None) -> None:
    """Remove staging tables whose process is gone: of other builds of ``table`` (all but ``keep``),
    and of any table in the one-off ``_building_<table>_<pid>_<hex>`` form."""
    for d in db.glob(f"{BUILDING_PREFIX}*.lance"):
        name = d.name[: -len(".lance")]
        if name == keep:
            continue
        state = _read_state(db / f"{name}{STATE_SUFFIX}")
        if state is not None:
            stale = state.table == table and not pid_alive(state.pid)
        else:
            parts = name.split("_")
            pid = next((int(p) for p in reversed(parts[:-1]) if p.isdigit()), None)
            stale = pid is not None and pid != os.getpid() and not pid_alive(pid)
        if not stale:
            continue
        shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (db / f"{name}{STATE_SUFFIX}").unlink()


def staging_key(parts: dict[str, Any]) -> str:
    """The staging key of a build: a short fingerprint of what decides its rows and vectors."""
    from airsearch.fingerprint import fingerprint_json

    return fingerprint_json(parts)[:12]
