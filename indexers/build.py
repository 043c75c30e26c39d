"""``build_index``: stream a corpus through the AirRep encoder into a LanceDB table, resumably.

Rows are read lazily, encoded in chunks and committed chunk by chunk into the build's staging table
(:mod:`airsearch.indexers.staging`), so memory holds one chunk of vectors at a time whatever the
corpus size, and a killed or interrupted build resumes from the rows already encoded when the same
command runs again. The corpus fingerprint is computed while streaming
(:class:`airsearch.data.corpus.CorpusHasher`).

Before the first chunk is encoded the build prints a one-line plan: about how many rows, where they
go, and an estimate of the time left from a short warm-up (the first batch).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from airsearch.indexers.ann import AnnConfig, IndexStatus
from airsearch.indexers.config import IndexConfig
from airsearch.indexers.lock import table_lock
from airsearch.indexers.results import describe_encoder
from airsearch.indexers.rows import chunked, infer_columns, table_schema, to_batch
from airsearch.indexers.staging import Staging, staging_key
from airsearch.indexers.store import META_KEY, IndexStore, IndexTable, TableMeta, check_name
from airsearch.indexers.writes import finish_append, finish_create

from airsearch.atomic import removed_if_left_empty
from airsearch.data.corpus import CorpusHasher, SkippedRow, iter_corpus
from airsearch.data.example import Example
from airsearch.data.readers import estimate_rows
from airsearch.encoder import DEFAULT_ENCODER, AirRepEncoder, resolve_encoder_source
from airsearch.errors import AirsearchError, InputError
from airsearch.progress import announce, format_seconds, progress
from airsearch.results import Result, omitted_when_none
from airsearch.runtime import DEFAULT_QUANTIZE, DEFAULT_RUNTIME, runtime_label


@dataclasses.dataclass(frozen=True)
class IndexSummary(Result):
    """What ``airsearch index`` did."""

    db: str
    table: str
    mode: str  # create / append / upsert / overwrite
    rows_added: int
    rows_total: int
    dim: int
    seconds: float
    rows_per_second: float
    index: IndexStatus
    encoder: str
    encoder_fingerprint: str
    corpus_fingerprint: str
    skipped: int
    skipped_reasons: dict[str, int]
    skipped_rows: list[SkippedRow]  # the first 20
    resumed_rows: int = 0  # rows a killed or interrupted run of the same command had encoded
    rows_replaced: int = 0  # upsert: rows whose id was already in the table
    estimated_seconds: float | None = omitted_when_none()  # the plan's estimate, from the warm-up
    ray_workers: int | None = omitted_when_none()  # encoder actors, when the build ran on Ray


def encoder_source_label(name: str | None) -> str:
    """What the table records as the encoder source: 'default', or an absolute folder path."""
    if name is None or name == DEFAULT_ENCODER:
        return DEFAULT_ENCODER
    p = Path(name)
    return str(p.resolve()) if p.exists() else str(name)


def load_encoder(
    name: str | None, runtime: str = DEFAULT_RUNTIME, quantize: str = DEFAULT_QUANTIZE
) -> AirRepEncoder:
    """The encoder ``name`` on ``runtime`` at ``quantize`` (:mod:`airsearch.runtime`)."""
    resolve_encoder_source(name)  # clear error for a missing folder before the heavy load
    return AirRepEncoder.load(name, runtime=runtime, quantize=quantize)


def build_index(cfg: IndexConfig, *, encoder: AirRepEncoder | None = None) -> IndexSummary:
    """Encode ``cfg.corpus`` into table ``cfg.table`` of ``cfg.db``: a new table, or rows added to an
    existing one (``append``; ``upsert`` replaces rows whose id is already there).

    Rerunning a killed or interrupted build resumes it. A refused build leaves nothing behind: no
    table, no new version, no staging table, and no ``db`` folder if it made one."""
    start = time.perf_counter()
    check_name(cfg.table)
    with removed_if_left_empty(cfg.db):
        store = IndexStore(cfg.db, create=True)
        what = f"airsearch index ({build_mode(cfg)})"
        with table_lock(store.path, cfg.table, what=what, timeout=cfg.lock_timeout):
            summary, enc = _build_locked(cfg, store, encoder, start)
    if encoder is None:  # after the lock: another writer need not wait for the export
        prepare_queries(enc, cfg.encoder)
    return summary


def _build_locked(
    cfg: IndexConfig, store: IndexStore, encoder: AirRepEncoder | None, start: float
) -> tuple[IndexSummary, AirRepEncoder]:
    """:func:`build_index` while holding the table's write lock (:mod:`airsearch.indexers.lock`): the
    live table read here is the one the commit lands on. Returns the summary and the encoder used."""
    adding = cfg.append or cfg.upsert
    if adding and not store.exists(cfg.table):
        raise InputError(
            f"no table named {cfg.table!r} to add rows to yet; create it first",
            field="upsert" if cfg.upsert else "append",
            path=cfg.db,
        )
    if not adding:
        store.check_new_table(cfg.table, overwrite=cfg.overwrite)
    live = store.open(cfg.table) if adding else None
    if live is not None and encoder is None:  # a runtime other than the table's: before loading
        live.check_encoder(live.meta.encoder_fingerprint, runtime=runtime_label(cfg.runtime, cfg.quantize))
    enc = encoder or load_encoder(cfg.encoder, cfg.runtime, cfg.quantize)
    if live is not None:  # before anything is encoded
        live.check_encoder(enc.fingerprint, dim=enc.dim, runtime=enc.runtime_label)
    filler = method_column_filler(cfg, live)  # refused before anything is encoded
    staging = Staging.claim(store, cfg.table, staging_key(build_identity(cfg, enc, live)))
    try:
        build = _Build(cfg, store, enc, staging, live, start)
        build.filler = filler
        if cfg.ray is None:
            summary = build.run()
        else:
            from airsearch.indexers.distributed import run_on_ray

            build.encoder_given = encoder is not None
            summary = run_on_ray(build)
    except AirsearchError:
        staging.discard()  # a refused input: the rerun needs other input, nothing to resume
        raise
    return summary, enc


def prepare_queries(enc: AirRepEncoder, source: str | None) -> None:
    """The query export of the index's encoder (once per encoder), so that the first ``query`` runs
    without torch (:mod:`airsearch.query_encoder`)."""
    from airsearch.query_export import prepare_fast_queries

    prepare_fast_queries(enc, Path(resolve_encoder_source(source)))


def build_mode(cfg: IndexConfig) -> str:
    """create / append / upsert / overwrite."""
    return "upsert" if cfg.upsert else "append" if cfg.append else "overwrite" if cfg.overwrite else "create"


def method_column_filler(cfg: IndexConfig, live: IndexTable | None) -> Any:
    """The method columns of the table rows are added to (:mod:`airsearch.indexers.method_columns`):
    ``None`` without any; refused without ``cfg.lm`` or on Ray."""
    if live is None:
        return None
    from airsearch.indexers.method_columns import ColumnFiller, column_specs

    if cfg.ray is not None and column_specs(live):
        raise InputError("rows with method columns are added without --ray (one process)", field="ray")
    return ColumnFiller.for_table(live, cfg.lm)


def build_identity(cfg: IndexConfig, enc: AirRepEncoder, live: IndexTable | None) -> dict[str, Any]:
    """What decides a build's rows and vectors: the same identity finds the same staging table."""
    sources = [str(Path(s).resolve()) if Path(s).exists() else str(s) for s in cfg.corpus]
    return {
        "format": 1,
        "table": cfg.table,
        "adding_to": None if live is None else {"columns": live.meta.columns, "dim": live.dim},
        "encoder": enc.fingerprint,
        "corpus": sources,
        "read": [cfg.prompt_field, cfg.response_field, cfg.id_field, cfg.skip_bad_rows, cfg.encoding],
    }


class _Build:
    """One run of :func:`build_index`: resume check, chunked encode-and-commit, then the finish."""

    def __init__(
        self,
        cfg: IndexConfig,
        store: IndexStore,
        enc: AirRepEncoder,
        staging: Staging,
        live: IndexTable | None,
        start: float,
    ) -> None:
        self.cfg, self.store, self.enc, self.staging, self.live, self.start = (
            cfg,
            store,
            enc,
            staging,
            live,
            start,
        )
        self.read = {**cfg.read_options(), "encoding": cfg.encoding, "source_field": "corpus"}
        self.mode = build_mode(cfg)
        self.estimate: float | None = None
        self.encoder_given = False
        self.filler: Any = None  # computes the live table's method columns of added rows

    def run(self) -> IndexSummary:
        cfg = self.cfg
        resumed = self.resume_point()
        skipped: list[SkippedRow] = []
        hasher = CorpusHasher()
        rows = _hashed(iter_corpus(list(cfg.corpus), skipped=skipped, **self.read), hasher)
        for _ in islice(rows, resumed):  # encoded by the earlier run: read (and hashed) only
            pass
        counts = [estimate_rows(s) for s in cfg.corpus]
        total = None if None in counts else sum(c for c in counts if c is not None)
        meta, schema = self.table_meta(None)
        known = self.live.ids() if self.live is not None and not cfg.upsert else None
        bar = progress(desc=f"indexing {cfg.table}", total=total, initial=resumed, unit="row")
        planned = False
        for chunk in chunked(rows, cfg.chunk_size):
            if known is not None:
                self.live.refuse_known_ids([e.id for e in chunk], known)  # type: ignore[union-attr]
            if not planned:
                vectors = self._warm_up(chunk, total, resumed, bar.update)
                planned = True
            else:
                vectors = self.enc.encode(
                    chunk, batch_size=cfg.batch_size, show_progress=False, on_batch=bar.update
                )
            if schema is None:
                meta, schema = self.table_meta(chunk)
            extra = self.filler.arrays(chunk) if self.filler is not None else None
            self.staging.commit(
                to_batch(chunk, vectors, schema, meta.columns, extra), rows=hasher.count, hasher=hasher
            )
        bar.close()
        if not planned:
            announce(self._plan(total, resumed, None))
        if hasher.count == 0:
            raise InputError("no rows to index", field="corpus")
        return self.finish(meta, hasher, skipped, resumed)

    def resume_point(self) -> int:
        """Rows a stopped run committed, if the corpus still begins with them (else start over)."""
        done = self.staging.rows
        if done:
            prefix = CorpusHasher()
            for ex in islice(iter_corpus(list(self.cfg.corpus), **self.read), done):
                prefix.add(ex)
            if prefix.count == done and self.staging.matches(prefix):
                return done
            self.staging.reset()
        return 0

    def table_meta(self, first: list[Example] | None) -> tuple[TableMeta, Any]:
        """The table's metadata and the staging schema: the live table's (adding rows), the staging
        table's (resuming), else new, with the metadata columns of the ``first`` chunk of the corpus
        (the schema is ``None`` while that chunk is not read yet)."""
        if self.live is not None:
            return self.live.meta, self.live.dataset.schema
        schema = self.staging.schema()
        if schema is not None:
            return TableMeta.from_schema(schema, str(self.staging.dir)), schema
        enc = self.enc
        meta = TableMeta(
            encoder_fingerprint=enc.fingerprint,
            encoder={**enc.describe(), "source": encoder_source_label(self.cfg.encoder)},
            template=enc.info.template,
            dim=enc.dim,
            columns={},
            corpora=[],
            config=self.cfg.to_dict(),
        )
        if first is None:
            return meta, None
        meta.columns = infer_columns(first)
        return meta, table_schema(meta.columns, meta.dim, {META_KEY: meta.to_json()})

    def _warm_up(self, chunk: list[Example], total: int | None, resumed: int, update: Any) -> np.ndarray:
        """Encode the first chunk, timing its first batch for the plan line printed before the rest."""
        n = min(self.cfg.batch_size, len(chunk))
        t0 = time.perf_counter()
        head = self.enc.encode(
            chunk[:n], batch_size=self.cfg.batch_size, show_progress=False, on_batch=update
        )
        rate = n / max(time.perf_counter() - t0, 1e-9)
        if total is not None:
            self.estimate = round(max(total - resumed, n) / rate, 1)
        announce(self._plan(total, resumed, (rate, n)))
        rest = self.enc.encode(
            chunk[n:], batch_size=self.cfg.batch_size, show_progress=False, on_batch=update
        )
        return np.concatenate([head, rest]) if len(rest) else head

    def _plan(self, total: int | None, resumed: int, warm: tuple[float, int] | None) -> str:
        cfg = self.cfg
        rows = f"~{total:,} rows" if total is not None else "rows (count unknown)"
        sources = ", ".join(str(s) for s in cfg.corpus[:3]) + (" ..." if len(cfg.corpus) > 3 else "")
        line = f"plan: index {rows} of {sources} -> table '{cfg.table}' in {cfg.db} ({self.mode})"
        if resumed:
            line += f"; resuming: {resumed:,} rows were already encoded"
        if warm is not None:
            rate, n = warm
            left = f"about {format_seconds(self.estimate)} left, " if self.estimate is not None else ""
            line += f"; {left}{rate:,.0f} rows/s (warm-up on {n} rows)"
        elif resumed:
            line += "; nothing left to encode"
        return line

    def finish(
        self,
        meta: TableMeta,
        hasher: CorpusHasher,
        skipped: list[SkippedRow],
        resumed: int,
        *,
        workers: int | None = None,
    ) -> IndexSummary:
        """Make the finished staging table the table (or add it to the live one): ANN and BM25
        indexes, provenance; the summary of the build."""
        cfg, enc, store = self.cfg, self.enc, self.store
        ann_cfg = AnnConfig(
            threshold=cfg.ann_threshold,
            index_type=cfg.ann_type,
            nprobes=cfg.nprobes,
            refine_factor=cfg.refine_factor,
            ef=cfg.ef,
        )
        entry = {
            "sources": [str(s) for s in cfg.corpus],
            "fingerprint": hasher.hexdigest(),
            "rows": hasher.count,
        }
        replaced = 0
        if self.live is None:
            store.check_new_table(cfg.table, overwrite=cfg.overwrite)
            meta.corpora = [entry]
            table = finish_create(store, self.staging, meta, ann_config=ann_cfg, full_text=cfg.fts)
        else:
            before = store.open(cfg.table).count()
            table = finish_append(
                store,
                self.staging,
                encoder_fingerprint=enc.fingerprint,
                corpus=entry,
                ann_config=ann_cfg,
                upsert=cfg.upsert,
            )
            replaced = hasher.count - (table.count() - before)
        seconds = time.perf_counter() - self.start
        reasons = Counter(f"{s.field}: {s.reason}" if s.field else s.reason for s in skipped)
        return IndexSummary(
            db=str(cfg.db),
            table=cfg.table,
            mode=self.mode,
            rows_added=hasher.count,
            rows_total=table.count(),
            dim=table.dim,
            seconds=round(seconds, 3),
            rows_per_second=round((hasher.count - resumed) / max(seconds, 1e-9), 1),
            index=table.describe().index,
            encoder=describe_encoder(table.meta.encoder),
            encoder_fingerprint=enc.fingerprint,
            corpus_fingerprint=hasher.hexdigest(),
            skipped=len(skipped),
            skipped_reasons=dict(reasons.most_common()),
            skipped_rows=skipped[:20],
            resumed_rows=resumed,
            rows_replaced=replaced,
            estimated_seconds=self.estimate,
            ray_workers=workers,
        )


def _hashed(rows: Iterator[Example], hasher: CorpusHasher) -> Iterator[Example]:
    for ex in rows:
        hasher.add(ex)
        yield ex
