"""``build_index``: stream a corpus through the AirRep encoder into a LanceDB table.

Rows are read lazily, encoded in chunks (``AirRepEncoder.encode_stream``) and written in batches, so
memory holds one chunk of vectors at a time whatever the corpus size. The corpus fingerprint is
computed while streaming (:class:`airsearch.data.corpus.CorpusHasher`).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airsearch.indexers.ann import AnnConfig, IndexStatus
from airsearch.indexers.config import IndexConfig
from airsearch.indexers.store import IndexStore, TableMeta

from airsearch.data.corpus import CorpusHasher, SkippedRow, iter_corpus
from airsearch.data.example import Example
from airsearch.encoder import DEFAULT_ENCODER, AirRepEncoder, resolve_encoder_source
from airsearch.errors import InputError
from airsearch.results import Result


@dataclasses.dataclass(frozen=True)
class IndexSummary(Result):
    """What ``airsearch index`` did."""

    db: str
    table: str
    mode: str  # create / append / overwrite
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


def encoder_source_label(name: str | None) -> str:
    """What the table records as the encoder source: 'default', or an absolute folder path."""
    if name is None or name == DEFAULT_ENCODER:
        return DEFAULT_ENCODER
    p = Path(name)
    return str(p.resolve()) if p.exists() else str(name)


def load_encoder(name: str | None) -> AirRepEncoder:
    resolve_encoder_source(name)  # clear error for a missing folder before the heavy load
    return AirRepEncoder.load(name)


def build_index(cfg: IndexConfig, *, encoder: AirRepEncoder | None = None) -> IndexSummary:
    """Encode ``cfg.corpus`` and create (or ``--append`` to) table ``cfg.table`` in ``cfg.db``."""
    start = time.perf_counter()
    store = IndexStore(cfg.db, create=True)
    if cfg.append and not store.exists(cfg.table):
        raise InputError(
            f"no table named {cfg.table!r} to append to yet; create it first (append off)",
            field="append",
            path=cfg.db,
        )
    if not cfg.append and not cfg.overwrite and store.exists(cfg.table):
        raise InputError(
            f"table {cfg.table!r} already exists; append rows to it or overwrite it",
            field="table",
            path=cfg.db,
        )
    enc = encoder or load_encoder(cfg.encoder)
    skipped: list[SkippedRow] = []
    hasher = CorpusHasher()
    rows = iter_corpus(
        list(cfg.corpus),
        prompt_field=cfg.prompt_field,
        response_field=cfg.response_field,
        id_field=cfg.id_field or None,
        skip_bad_rows=cfg.skip_bad_rows,
        skipped=skipped,
    )
    chunks = enc.encode_stream(
        _hashed(rows, hasher),
        batch_size=cfg.batch_size,
        chunk_size=cfg.chunk_size,
        desc=f"indexing {cfg.table}",
    )
    ann_cfg = AnnConfig(
        threshold=cfg.ann_threshold,
        index_type=cfg.ann_type,
        nprobes=cfg.nprobes,
        refine_factor=cfg.refine_factor,
        ef=cfg.ef,
    )
    corpus_entry = {"sources": [str(s) for s in cfg.corpus], "fingerprint": None, "rows": 0}
    if cfg.append:
        table = store.append(
            cfg.table,
            _finish(chunks, hasher, corpus_entry),
            encoder_fingerprint=enc.fingerprint,
            corpus=corpus_entry,
            ann_config=ann_cfg,
        )
        mode = "append"
    else:
        meta = TableMeta(
            encoder_fingerprint=enc.fingerprint,
            encoder={**enc.describe(), "source": encoder_source_label(cfg.encoder)},
            template=enc.info.template,
            dim=enc.dim,
            columns={},
            corpora=[corpus_entry],
            config=cfg.to_dict(),
        )
        table = store.create(
            cfg.table,
            _finish(chunks, hasher, corpus_entry),
            meta,
            overwrite=cfg.overwrite,
            ann_config=ann_cfg,
            full_text=cfg.fts,
        )
        mode = "overwrite" if cfg.overwrite else "create"
    seconds = time.perf_counter() - start
    reasons = Counter(f"{s.field}: {s.reason}" if s.field else s.reason for s in skipped)
    return IndexSummary(
        db=str(cfg.db),
        table=cfg.table,
        mode=mode,
        rows_added=hasher.count,
        rows_total=table.count(),
        dim=table.dim,
        seconds=round(seconds, 3),
        rows_per_second=round(hasher.count / max(seconds, 1e-9), 1),
        index=table.describe().index,
        encoder=table.meta.encoder.get("base_encoder", ""),
        encoder_fingerprint=enc.fingerprint,
        corpus_fingerprint=hasher.hexdigest(),
        skipped=len(skipped),
        skipped_reasons=dict(reasons.most_common()),
        skipped_rows=skipped[:20],
    )


def _hashed(rows: Iterator[Example], hasher: CorpusHasher) -> Iterator[Example]:
    for ex in rows:
        hasher.add(ex)
        yield ex


def _finish(chunks: Iterator[Any], hasher: CorpusHasher, entry: dict[str, Any]) -> Iterator[Any]:
    """Pass chunks through, then fill in the corpus entry once the stream is exhausted."""
    yield from chunks
    entry["fingerprint"] = hasher.hexdigest()
    entry["rows"] = hasher.count
