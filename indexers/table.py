"""One index table (:class:`IndexTable`) and its provenance (:class:`TableMeta`, stored as JSON in
the Arrow schema metadata under ``META_KEY``): readers refuse a different encoder with
:func:`airsearch.fingerprint.check_match`. Ids are unique within a table
(:meth:`IndexTable.refuse_known_ids`).

Lance is multi-version: a reader keeps reading the version it opened while a writer appends
(:meth:`IndexTable.is_latest`; ``Searcher.refresh`` moves a reader to the newest version). The folder of
tables is :class:`airsearch.indexers.store.IndexStore`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from datetime import timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from airsearch.indexers import ann, fts
from airsearch.indexers.column_spec import column_specs
from airsearch.indexers.config import bad_filter
from airsearch.indexers.results import TableInfo, VersionInfo
from airsearch.indexers.rows import (
    VECTOR,
    rows_to_examples,
    vector_dim,
    vectors_of,
)

from airsearch import __version__
from airsearch.data.example import Example
from airsearch.errors import FingerprintMismatch, InputError
from airsearch.fingerprint import check_match, fingerprint_json

if TYPE_CHECKING:
    import lancedb

META_KEY = "airsearch"
SHOWN_IDS = 5  # ids named when an append is refused


class TableFolder(Protocol):
    """The folder of tables a table belongs to (:class:`airsearch.indexers.store.IndexStore`; structural,
    so the modules below the store do not import it)."""

    path: Path
    db: Any  # the lancedb connection

    def open(self, name: str | None = None) -> IndexTable: ...

    def check_new_table(self, name: str, *, overwrite: bool) -> None: ...


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

    def __init__(self, store: TableFolder, name: str, table: lancedb.table.LanceTable | None = None) -> None:
        self.store = store
        self.name = name
        self.folder = store.path / f"{name}.lance"
        self.identity = folder_identity(self.folder)  # before the dataset: a swap in between is seen
        self._table = table
        # read with Lance itself: a search needs no LanceDB connection (LanceDB loads in ~1.5 s)
        self.dataset: lance.LanceDataset = (
            table.to_lance() if table is not None else lance.dataset(str(self.folder))
        )
        self.path = f"{store.path}/{name}"
        self.meta = TableMeta.from_schema(self.dataset.schema, self.path)

    @property
    def table(self) -> lancedb.table.LanceTable:
        """The LanceDB table (for writes, index builds and ANN search), opened on first use at this
        view's version: a reader stays on the version it opened, as :attr:`dataset` does."""
        if self._table is None:
            table = self.store.db.open_table(self.name)
            if table.version != self.dataset.version:
                table.checkout(self.dataset.version)
            self._table = table
        return self._table

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
        from airsearch.encoder_inputs import INPUT_RULE, LEGACY_INPUT_RULE
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
        return any(VECTOR in idx.field_names for idx in self.dataset.describe_indices())

    def has_fts(self) -> bool:
        return fts.has_index(self.dataset)

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


def method_column_info(schema: pa.Schema) -> dict[str, dict[str, Any]]:
    """What made each method column (:mod:`airsearch.indexers.method_columns`), for ``info``."""
    return {name: spec.to_dict() for name, spec in column_specs(schema).items()}


def _runtime_options(label: str) -> str:
    """The options that choose runtime ``label`` (``onnx-int8`` -> ``runtime onnx, quantize int8``)."""
    runtime, _, quantize = label.partition("-")
    return f"runtime {runtime}, quantize {quantize or 'none'}"


def ids_filter(ids: Sequence[str]) -> str:
    """SQL ``id IN (...)`` with every id quoted as a string literal."""
    return "id IN (" + ", ".join("'" + str(i).replace("'", "''") + "'" for i in ids) + ")"


def folder_identity(folder: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of a table folder: a replaced table (``index --overwrite``) has another."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino
