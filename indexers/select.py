"""Training-data selection for a set of targets (AirRep App. G), in blocks.

``best-rank`` (default, App. G): for every target rank all training examples by score; a training
example's score is its best (lowest) rank over all targets; take the N best.

The tie rule (the one rule in airsearch; ``eval select`` uses this code too):

* rank is competition rank: 1 + the number of examples scoring strictly higher for that target, so
  tied scores share a rank (scores 5, 4, 4, 1 have ranks 1, 2, 2, 4);
* examples with the same best rank are ordered by their score at that rank, higher first (the
  highest such score when several targets give the best rank);
* then by row order (the table's row id; the corpus position in ``eval select``).

Exact without the full targets x corpus matrix: an example's best rank is r iff it appears with rank r
in some target's list, so each target's exact top-K list (blocked search) determines every best rank
below ``C = min_t rank_t(K-th entry)``: an example missing from target t's list scores no higher than
that entry, so its rank there is >= C. If fewer than N examples have a certified best rank < C, K
doubles and the lists are recomputed. ``sum`` ranks by the summed score ``sum_t e_t . e_i``, which is
one dot product with the summed target vector.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from airsearch.indexers.config import SelectConfig
from airsearch.indexers.query import Searcher
from airsearch.indexers.rows import EXTRA, row_metadata
from airsearch.indexers.search import exact_topk

from airsearch.atomic import atomic_path, write_json_atomic
from airsearch.data.corpus import load_queries
from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.fingerprint import fingerprint_file
from airsearch.results import Result
from airsearch.score_kinds import kind_label

Blocks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


@dataclasses.dataclass
class Selection:
    """Selected row ids in order, with their score and (best-rank) best rank and target index."""

    row_ids: np.ndarray
    scores: np.ndarray
    best_rank: np.ndarray | None = None
    best_target: np.ndarray | None = None
    rounds: int = 1
    list_size: int = 0


def competition_ranks(sorted_scores: np.ndarray) -> np.ndarray:
    """Per row of descending scores: 1 + the number of entries strictly greater (ties share a rank)."""
    q, k = sorted_scores.shape
    pos = np.broadcast_to(np.arange(k), (q, k))
    new = np.ones((q, k), dtype=bool)
    if k > 1:
        new[:, 1:] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    first = np.where(new, pos, 0)
    return np.maximum.accumulate(first, axis=1) + 1


TopLists = Callable[[int], tuple[np.ndarray, np.ndarray]]


def best_rank_selection(
    top_lists: TopLists, n_targets: int, n_items: int, n: int, *, initial_k: int | None = None
) -> Selection:
    """App. G selection of ``n`` of ``n_items`` rows from exact per-target top-k lists.

    ``top_lists(k)`` returns ``(scores [t, k'], row ids [t, k'])``: each target's exact top
    ``k' = min(k, n_items)`` rows, best first. Ties follow the module's rule (competition ranks,
    then the higher score at the best rank, then the lower row id); the result does not depend on
    ``initial_k`` or on how tied rows are ordered inside a list.
    """
    n = min(n, n_items)
    k = min(n_items, initial_k or max(16, 2 * math.ceil(n / max(n_targets, 1))))
    rounds = 0
    while True:
        rounds += 1
        scores, ids = top_lists(k)
        ranks = competition_ranks(scores)
        complete = scores.shape[1] >= n_items
        cutoff = math.inf if complete else int(ranks[:, -1].min())
        flat_ids, flat_ranks = ids.reshape(-1), ranks.reshape(-1)
        flat_scores = scores.reshape(-1).astype(np.float64)
        flat_targets = np.repeat(np.arange(scores.shape[0]), scores.shape[1])
        # per item: the lowest rank, then the highest score at that rank
        order = np.lexsort((-flat_scores, flat_ranks, flat_ids))
        first = np.ones(len(order), dtype=bool)
        first[1:] = flat_ids[order][1:] != flat_ids[order][:-1]
        best = order[first]
        certified = best[flat_ranks[best] < cutoff]
        if len(certified) >= n or complete:
            pick = np.lexsort((flat_ids[certified], -flat_scores[certified], flat_ranks[certified]))[:n]
            chosen = certified[pick]
            return Selection(
                row_ids=flat_ids[chosen],
                scores=flat_scores[chosen],
                best_rank=flat_ranks[chosen],
                best_target=flat_targets[chosen],
                rounds=rounds,
                list_size=k,
            )
        k = min(n_items, k * 2)


def select_best_rank(
    targets: np.ndarray,
    blocks: Blocks,
    n_items: int,
    n: int,
    *,
    backend: str = "auto",
    initial_k: int | None = None,
) -> Selection:
    """App. G selection of ``n`` of ``n_items`` rows (``blocks()`` streams ``(row_ids, vectors)``),
    scored by the dot product ``e_t . e_i`` (AirRep §3.1) with the exact blocked search."""
    return best_rank_selection(
        lambda k: exact_topk(targets, blocks(), k, backend=backend),
        targets.shape[0],
        n_items,
        n,
        initial_k=initial_k,
    )


def select_sum(targets: np.ndarray, blocks: Blocks, n: int, *, backend: str = "auto") -> Selection:
    """Top ``n`` by ``sum_t e_t . e_i = (sum_t e_t) . e_i``."""
    total = targets.astype(np.float64).sum(axis=0, keepdims=True).astype(np.float32)
    scores, ids = exact_topk(total, blocks(), n, backend=backend)
    return Selection(row_ids=ids[0], scores=scores[0].astype(np.float64), list_size=n)


@dataclasses.dataclass(frozen=True)
class SelectSummary(Result):
    """What ``airsearch select`` wrote: the rows file, its manifest and how many rows."""

    out: str
    manifest: str
    strategy: str
    selected: int
    targets: int
    rows_considered: int
    seconds: float
    rounds: int


def select(
    cfg: SelectConfig, *, encoder: Any = None, targets: Sequence[Example] | None = None
) -> SelectSummary:
    """Python API of ``airsearch select``: choose rows, write them with score/rank and a manifest.
    ``targets``: the targets already read (the server's, which may have an empty prompt as a query
    may); ``cfg.targets`` still names their file for the manifest."""
    start = time.perf_counter()
    searcher = Searcher(
        cfg.db,
        cfg.table,
        encoder=encoder or cfg.encoder,
        backend=cfg.backend,
        exact=True,
        runtime=cfg.runtime,
        quantize=cfg.quantize,
        fast=encoder is None,
    )
    table = searcher.table
    if targets is None:
        read = {**cfg.read_options(), "encoding": cfg.encoding}
        targets = load_queries(cfg.targets, **read, source_field="targets").examples
    n_items = table.count(cfg.where)
    if n_items == 0:
        raise InputError(
            "no rows to select from" + (f" under the filter {cfg.where!r}" if cfg.where else ""), path=cfg.db
        )
    n = cfg.n if cfg.n is not None else max(1, round(cfg.fraction * n_items))
    vectors = searcher.encode(targets)

    def blocks() -> Iterable[tuple[np.ndarray, np.ndarray]]:
        return ((ids, vecs) for ids, vecs, _ in table.iter_blocks(cfg.block_size, where=cfg.where))

    if cfg.strategy == "sum":
        sel = select_sum(vectors, blocks, min(n, n_items), backend=cfg.backend)
    else:
        sel = select_best_rank(vectors, blocks, n_items, n, backend=cfg.backend)
    out = Path(cfg.out)
    extra_cols = _write_selection(out, table, sel, [t.id for t in targets])
    manifest = out.with_name(out.name + ".manifest.json")
    kind = "airrep-sum" if cfg.strategy == "sum" else "airrep"
    write_json_atomic(
        manifest,
        {
            "config": cfg.to_dict(),
            "strategy": cfg.strategy,
            # the file's score column: the AirRep dot product at the best rank, or the sum over targets
            "score_kind": kind,
            "score_label": kind_label(kind),
            "selected": len(sel.row_ids),
            "requested": n,
            "targets": len(targets),
            "targets_fingerprint": fingerprint_file(cfg.targets) if Path(cfg.targets).is_file() else None,
            "rows_considered": n_items,
            "table": table.name,
            "table_version": table.version,
            "encoder_fingerprint": table.meta.encoder_fingerprint,
            "corpora": table.meta.corpora,
            "columns_added": extra_cols,
            "rounds": sel.rounds,
            "list_size": sel.list_size,
            "airsearch_version": table.meta.airsearch_version,
        },
    )
    return SelectSummary(
        out=str(out),
        manifest=str(manifest),
        strategy=cfg.strategy,
        selected=len(sel.row_ids),
        targets=len(targets),
        rows_considered=n_items,
        seconds=round(time.perf_counter() - start, 3),
        rounds=sel.rounds,
    )


def _write_selection(
    out: Path, table: Any, sel: Selection, target_ids: list[str], chunk: int = 8192
) -> list[str]:
    """Stream the selected rows (as stored: id, prompt, response, metadata) plus score/rank columns."""
    meta_cols = table.meta.columns
    taken = set(meta_cols) | {"id", "prompt", "response"}
    name = {
        c: (c if c not in taken else f"airsearch_{c}") for c in ("score", "rank", "best_rank", "best_target")
    }
    added = [name["score"], name["rank"]] + (
        [name["best_rank"], name["best_target"]] if sel.best_rank is not None else []
    )
    keep_extra = out.suffix == ".jsonl" or table.count(f"{EXTRA} IS NOT NULL") > 0
    stored = ["id", "prompt", "response", *meta_cols] + ([EXTRA] if keep_extra else [])
    with atomic_path(out) as tmp:
        writer = None
        fh = open(tmp, "w", encoding="utf-8") if out.suffix == ".jsonl" else None  # noqa: SIM115
        try:
            for s in range(0, len(sel.row_ids), chunk):
                part = table.take_raw(sel.row_ids[s : s + chunk], stored)
                extra = {
                    name["score"]: sel.scores[s : s + chunk],
                    name["rank"]: np.arange(s + 1, s + 1 + part.num_rows),
                }
                if sel.best_rank is not None:
                    extra[name["best_rank"]] = sel.best_rank[s : s + chunk]
                    extra[name["best_target"]] = [target_ids[i] for i in sel.best_target[s : s + chunk]]
                if fh is not None:
                    for i, row in enumerate(part.to_pylist()):
                        rec = {
                            "id": row["id"],
                            "prompt": row["prompt"],
                            "response": row["response"],
                            **row_metadata(row, meta_cols),
                        }
                        rec.update({k: _py(v[i]) for k, v in extra.items()})
                        fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
                else:
                    for k, v in extra.items():
                        part = part.append_column(k, pa.array(v))
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, part.schema)
                    writer.write_table(part.cast(writer.schema) if part.schema != writer.schema else part)
        finally:
            if fh is not None:
                fh.close()
            if writer is not None:
                writer.close()
    return added


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v
