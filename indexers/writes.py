"""Writing index tables: every write goes through a staging table (:mod:`airsearch.indexers.staging`)
and reaches the live table whole, or not at all.

* :func:`finish_create`: a finished staging table becomes the table, renamed into place once complete
  (compacted, ANN index built, provenance recorded), so a failed or interrupted build leaves no table;
* :func:`finish_append`: a finished staging table's rows are added to the live table in one Lance
  commit. Ids are unique within a table: ids already there are refused, unless ``upsert`` replaces
  those rows (LanceDB ``merge_insert`` on ``id``);
* :func:`create_table` / :func:`append_rows`: the same for chunks already encoded in memory (a
  one-off staging table, not resumable; ``airsearch index`` resumes through its own).

Callers hold the table's write lock (:mod:`airsearch.indexers.lock`) from before they read the live
table until the commit: :func:`create_table` and :func:`append_rows` take it themselves, ``airsearch
index`` around its whole build. Each final commit and the removal of its staging table happen with Ctrl-C held back
(:func:`airsearch.atomic.deferred_interrupt`), so they land together.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import lance
import numpy as np
from airsearch.indexers import ann, fts
from airsearch.indexers.column_spec import record_row_count
from airsearch.indexers.lock import table_lock
from airsearch.indexers.rows import infer_columns, table_schema, to_batch
from airsearch.indexers.staging import Staging, staging_key
from airsearch.indexers.table import META_KEY, IndexTable, TableFolder, TableMeta

from airsearch.atomic import deferred_interrupt, swap_into_place
from airsearch.data.example import Example
from airsearch.errors import InputError


def create_table(
    store: TableFolder,
    name: str,
    chunks: Iterable[tuple[Sequence[Example], np.ndarray]],
    meta: TableMeta,
    *,
    overwrite: bool = False,
    ann_config: ann.AnnConfig | None = None,
    full_text: bool = True,
) -> IndexTable:
    """Write ``(examples, vectors)`` chunks into a new table ``name``; it appears only once complete.

    ``full_text`` also builds the BM25 index on prompt and response (``query --mode bm25|hybrid``)."""
    store.check_new_table(name, overwrite=overwrite)
    with table_lock(store.path, name, what="create_table"):
        return _create_locked(store, name, chunks, meta, ann_config=ann_config, full_text=full_text)


def _create_locked(
    store: TableFolder,
    name: str,
    chunks: Iterable[tuple[Sequence[Example], np.ndarray]],
    meta: TableMeta,
    *,
    ann_config: ann.AnnConfig | None,
    full_text: bool,
) -> IndexTable:
    staging = Staging.claim(store, name, staging_key({"one-off": uuid.uuid4().hex}))
    try:
        schema, rows = None, 0
        for examples, vectors in chunks:
            if schema is None:
                meta.columns = infer_columns(examples)
                schema = table_schema(meta.columns, meta.dim, {META_KEY: meta.to_json()})
            rows += len(examples)
            staging.commit(to_batch(examples, vectors, schema, meta.columns), rows=rows)
        if schema is None:
            raise InputError("no rows to index")
        return finish_create(store, staging, meta, ann_config=ann_config, full_text=full_text)
    except BaseException:
        staging.discard()
        raise


def finish_create(
    store: TableFolder,
    staging: Staging,
    meta: TableMeta,
    *,
    ann_config: ann.AnnConfig | None = None,
    full_text: bool = True,
) -> IndexTable:
    """Make the finished staging table the table (replacing one of the same name): compacted, its
    ANN (and, with ``full_text``, BM25) index built, ``meta`` recorded, then renamed into place in
    one step."""
    staging.compact()
    table = store.db.open_table(staging.name)
    if ann_config is not None and ann_config.should_build(table.count_rows()):
        meta.ann = ann.build_ann_index(table, ann_config)
    if full_text:
        meta.fts = fts.build_text_index(table)
    table.to_lance().update_schema_metadata({META_KEY: meta.to_json()})  # final corpus entries
    with deferred_interrupt():  # the swap and forgetting the staging land together
        swap_into_place(staging.dir, store.path / f"{staging.table}.lance")
        staging.forget()
    return store.open(staging.table)


def append_rows(
    store: TableFolder,
    name: str,
    chunks: Iterable[tuple[Sequence[Example], np.ndarray]],
    *,
    encoder_fingerprint: str,
    corpus: dict[str, Any] | None = None,
    ann_config: ann.AnnConfig | None = None,
    upsert: bool = False,
) -> IndexTable:
    """Add rows to table ``name`` in one commit (``upsert``: replacing rows of the same id). Refuses
    vectors from a different encoder, and (without ``upsert``) ids already in the table."""
    with table_lock(store.path, name, what="append_rows"):
        return _append_locked(
            store,
            name,
            chunks,
            encoder_fingerprint=encoder_fingerprint,
            corpus=corpus,
            ann_config=ann_config,
            upsert=upsert,
        )


def _append_locked(
    store: TableFolder,
    name: str,
    chunks: Iterable[tuple[Sequence[Example], np.ndarray]],
    *,
    encoder_fingerprint: str,
    corpus: dict[str, Any] | None,
    ann_config: ann.AnnConfig | None,
    upsert: bool,
) -> IndexTable:
    current = store.open(name)
    current.check_encoder(encoder_fingerprint)
    staging = Staging.claim(store, name, staging_key({"one-off": uuid.uuid4().hex}))
    try:
        rows = 0
        for examples, vectors in chunks:
            rows += len(examples)
            staging.commit(
                to_batch(examples, vectors, current.dataset.schema, current.meta.columns), rows=rows
            )
        if rows == 0:
            staging.discard()
            return current
        return finish_append(
            store,
            staging,
            encoder_fingerprint=encoder_fingerprint,
            corpus=corpus,
            ann_config=ann_config,
            upsert=upsert,
        )
    except BaseException:
        staging.discard()
        raise


def finish_append(
    store: TableFolder,
    staging: Staging,
    *,
    encoder_fingerprint: str,
    corpus: dict[str, Any] | None = None,
    ann_config: ann.AnnConfig | None = None,
    upsert: bool = False,
) -> IndexTable:
    """Add the finished staging table's rows to the live table in one commit (``upsert``: LanceDB
    ``merge_insert`` on ``id``, replacing the rows of ids already there), record the corpus, then
    refresh (or build) the ANN index. Without ``upsert``, ids already in the table are refused."""
    current = store.open(staging.table)
    current.check_encoder(encoder_fingerprint)
    rows = lance.dataset(str(staging.dir))
    if not upsert:
        current.refuse_known_ids(rows.to_table(columns=["id"]).column("id").combine_chunks())
    meta = current.meta
    if corpus is not None:
        meta.corpora.append(corpus)
    data = rows.scanner(columns=current.dataset.schema.names).to_reader()
    with deferred_interrupt():  # the commit and forgetting the staging land together
        if upsert:
            merge = current.table.merge_insert("id")
            merge.when_matched_update_all().when_not_matched_insert_all().execute(data)
        else:
            current.table.add(data)
        store.db.open_table(staging.table).to_lance().update_schema_metadata({META_KEY: meta.to_json()})
        staging.discard()
    refreshed = False  # every index of the table (method columns' too) brought up to date
    if ann_config is not None:
        table = store.db.open_table(staging.table)
        count = table.count_rows()
        if current.has_ann():
            ann.refresh(table)
            meta.ann = {**(meta.ann or {}), "rows_indexed": count}
            refreshed = True
        elif ann_config.should_build(count):
            meta.ann = ann.build_ann_index(table, ann_config)
            if fts.has_index(table):
                ann.refresh(table)  # the new ANN index is current; fold the rows into the BM25 one
                refreshed = True
        elif fts.has_index(table):
            ann.refresh(table)  # fold the appended rows into the BM25 index
            refreshed = True
        store.db.open_table(staging.table).to_lance().update_schema_metadata({META_KEY: meta.to_json()})
    record_row_count(store.db.open_table(staging.table).to_lance(), ann_refreshed=refreshed)
    return store.open(staging.table)
