"""Searching an index (:class:`Searcher`): which training examples best explain a (prompt, response)?

:func:`airsearch.indexers.query.query` (``airsearch query``) runs it from a config.

* Proponents: the top-k single-example scores, the dot product ``e_z . e_i`` (methods.md §1).
* Opponents: the k most negative dot products (exact bottom-k, or an ANN search for ``-e_z``, which
  under the dot metric returns the most negative dot products).
* ``group_by``: every metadata group S ranked by the exact AirRep Eq. 7 group score
  ``score(S, z) = sum_i softmax_i(|e_z . e_i|) (e_z . e_i)`` over all its members, streamed in blocks.

Modes (``mode=``): ``vector`` ranks by the dot product (exact or ANN), ``bm25`` by the table's
full-text index (:mod:`airsearch.indexers.fts`), and ``hybrid`` fuses the two rankings of the
``HYBRID_POOL`` best rows each by reciprocal rank fusion (:func:`airsearch.fusion.reciprocal_rank_fusion`,
Cormack et al. 2009 Eq. 1); a candidate's ``score`` is then its fused score. Opponents and group
scores are always AirRep's (dot products, Eq. 7); opponents are only rows with a negative dot product.
Every candidate names the kind of its score (:mod:`airsearch.score_kinds`).

Rerank hook: ``Searcher.search(..., candidates=N, rerank=fn)`` retrieves N candidates with their full
prompt/response and calls ``fn(query_example, candidates) -> scores``; the k best by those scores are
returned (retrieval scores kept in ``Candidate.retrieval_score``). ``QueryConfig.rerank`` names an
attribution method that :func:`airsearch.indexers.query.query` builds through the method registry
(:func:`airsearch.methods.registry.load_method`) and plugs in there.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from airsearch.indexers import ann, fts
from airsearch.indexers.config import SEARCH_MODES, bad_filter, check_filter
from airsearch.indexers.query_result import Candidate, GroupScore, QueryResult, Rerank
from airsearch.indexers.rows import VECTOR, not_a_column_hint
from airsearch.indexers.search import exact_topk, group_scores
from airsearch.indexers.store import IndexStore, IndexTable

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.fusion import reciprocal_rank_fusion
from airsearch.query_encoder import QueryEncoder, fast_query_encoder
from airsearch.runtime import DEFAULT_QUANTIZE, DEFAULT_RUNTIME, recorded_runtime, runtime_label
from airsearch.score_kinds import score_kind

if TYPE_CHECKING:
    from airsearch.encoder import AirRepEncoder

HYBRID_POOL = 100  # rows taken from each ranking before fusion (at least the candidates asked for)


class Searcher:
    """An open index table plus the encoder it was built with (refuses any other encoder, or one whose
    vectors have another dimension than the table's).

    A searcher reads the table version it opened (a consistent view while others append);
    :meth:`refresh` moves it to the newest version, and ``auto_refresh=True`` does that before every
    search (one cheap look at the table's latest version number).
    """

    def __init__(
        self,
        db: str,
        table: str | None = None,
        *,
        encoder: str | AirRepEncoder | QueryEncoder | None = None,
        backend: str = "auto",
        exact: bool = False,
        auto_refresh: bool = False,
        runtime: str | None = None,
        quantize: str | None = None,
        fast: bool = False,
    ) -> None:
        """``fast``: encode queries without torch when the index's encoder has a query export
        (:mod:`airsearch.query_encoder`; same vectors to 1e-5), and write one when it has none; for
        commands that only search (``query``, ``select``). :attr:`encoder` is then a
        :class:`~airsearch.query_encoder.QueryEncoder`, which has no differentiable paths."""
        self.store = IndexStore(db)
        self.table: IndexTable = self.store.open(table)
        self.backend, self.exact, self.auto_refresh = backend, exact, auto_refresh
        self.use_ann = self.table.has_ann() and not exact
        source = None
        if encoder is not None and not isinstance(encoder, (str, os.PathLike)):
            self.encoder = encoder
        else:
            source = encoder if encoder is not None else self.table.meta.encoder.get("source", "default")
            built = recorded_runtime(self.table.meta.encoder)
            wanted = (runtime or built[0], quantize or (built[1] if runtime in (None, built[0]) else "none"))
            self.table.check_encoder(self.table.meta.encoder_fingerprint, runtime=runtime_label(*wanted))
            self.encoder = self._load_encoder(source, wanted, fast=fast)
        self._check(self.table)
        if fast and source is not None and not isinstance(self.encoder, QueryEncoder):
            self._prepare_fast_queries(source)

    def _load_encoder(self, source: Any, wanted: tuple[str, str], *, fast: bool) -> Any:
        """The torch-free query encoder when ``fast`` and the index's encoder has one, else the encoder."""
        if fast and wanted == (DEFAULT_RUNTIME, DEFAULT_QUANTIZE):
            found = fast_query_encoder(str(source), self.table.meta.encoder_fingerprint)
            if found is not None:
                return found
        from airsearch.indexers.build import load_encoder

        return load_encoder(source, *wanted)

    def _prepare_fast_queries(self, source: Any) -> None:
        """After a query took the torch path: the query export for the next one (once per encoder)."""
        if self.encoder.runtime_label != DEFAULT_RUNTIME:
            return
        from airsearch.encoder_source import resolve_encoder_source
        from airsearch.query_export import prepare_fast_queries

        prepare_fast_queries(self.encoder, Path(resolve_encoder_source(str(source))))

    def _check(self, table: IndexTable) -> None:
        """Refuse an encoder (weights, input rule, runtime, dimension) other than the table's."""
        enc = self.encoder
        table.check_encoder(enc.fingerprint, dim=enc.dim, runtime=enc.runtime_label)

    @classmethod
    def for_vectors(cls, table: IndexTable, *, backend: str = "auto", exact: bool = False) -> Searcher:
        """A searcher for already-encoded query vectors (no encoder loaded; benchmarks, pipelines)."""
        self = cls.__new__(cls)
        self.store, self.table, self.backend, self.exact, self.auto_refresh = (
            table.store,
            table,
            backend,
            exact,
            False,
        )
        self.use_ann = table.has_ann() and not exact
        self.encoder = None  # type: ignore[assignment]
        return self

    def at_latest(self) -> Searcher:
        """This searcher on the table's newest version (``self`` when it is already current).

        A searcher reads the version it opened; a long-lived reader (the server) calls this per request
        to see rows that another process appended, without reloading the encoder.
        """
        if self.table.is_latest():
            return self
        fresh = copy.copy(self)
        fresh._open_latest()
        return fresh

    def refresh(self) -> bool:
        """Move this searcher to the table's newest version (rows appended or deleted since it was
        opened); returns whether there was a newer one."""
        if self.table.is_latest():
            return False
        self._open_latest()
        return True

    def _open_latest(self) -> None:
        """Open the newest version, checked against the encoder again (the one implementation behind
        :meth:`at_latest` and :meth:`refresh`)."""
        table = self.store.open(self.table.name)
        if self.encoder is not None:
            self._check(table)
        self.table, self.use_ann = table, table.has_ann() and not self.exact

    def encode(self, queries: Sequence[Example]) -> np.ndarray:
        return self.encoder.encode(list(queries), show_progress=False)

    # ------------------------------------------------------------------ retrieval
    # what a search reads: the AirRep vectors here; a method column in ColumnSearcher
    column: str = VECTOR

    def _dim(self) -> int:
        return self.table.dim

    def _ann_record(self) -> dict[str, Any] | None:
        return self.table.meta.ann

    def _blocks(self, where: str | None, columns: Sequence[str] = ()) -> Any:
        """``(row_ids, vectors [b, d], batch of ``columns``)`` of the rows passing ``where``."""
        return self.table.iter_blocks(where=where, columns=columns)

    def row_vectors(self, row_ids: Sequence[int]) -> np.ndarray:
        return self.table.take_vectors(row_ids)

    def top_k(
        self, vectors: np.ndarray, k: int, *, where: str | None = None, largest: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [q, k'], row_ids [q, k'])``: ANN when the table has an index, else exact blocks."""
        if vectors.ndim != 2 or vectors.shape[1] != self._dim():
            raise InputError(
                f"query vectors of shape {tuple(vectors.shape)} do not match the {self._dim()} "
                f"dimensions of column {self.column!r}",
                path=self.table.path,
            )
        if not self.use_ann:
            blocks = ((ids, vecs) for ids, vecs, _ in self._blocks(where))
            return exact_topk(vectors, blocks, k, largest=largest, backend=self.backend)
        scores, ids = [], []
        for v in vectors:
            try:
                found = ann.search(
                    self.table.table,
                    v if largest else -v,
                    k,
                    self._ann_record(),
                    where=where,
                    column=self.column,
                )
            except (OSError, ValueError, RuntimeError) as e:
                if not where:
                    raise
                raise bad_filter(where, e) from None
            rid = found.column("_rowid").to_numpy().astype(np.int64)
            s = self.row_vectors(rid) @ v  # exact dot products of the candidates
            order = np.argsort(-s if largest else s, kind="stable")
            scores.append(s[order])
            ids.append(rid[order])
        width = min((len(s) for s in scores), default=0)
        return np.stack([s[:width] for s in scores]), np.stack([i[:width] for i in ids])

    def candidates(self, scores: np.ndarray, row_ids: np.ndarray, kind: str = "airrep") -> list[Candidate]:
        rows = self.table.take(row_ids)
        return [
            Candidate(ex.id, float(s), ex.prompt, ex.response, ex.metadata, int(r), score_kind=kind)
            for ex, s, r in zip(rows, scores, row_ids, strict=True)
        ]

    def opponents(
        self, vectors: np.ndarray, k: int, *, where: str | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, ``(scores, row_ids)`` of up to ``k`` rows with the most negative AirRep scores, most
        negative first: only rows scoring below zero (a row that raises the score is no opponent)."""
        scores, ids = self.top_k(vectors, k, where=where, largest=False)
        return [(s[s < 0], i[s < 0]) for s, i in zip(scores, ids, strict=True)]

    def group_scores(
        self, vectors: np.ndarray, column: str, *, where: str | None = None
    ) -> list[list[GroupScore]]:
        """Eq. 7 score of every value of ``column`` for each query, best first."""
        if column not in self.table.meta.columns:
            hint = not_a_column_hint(column)
            raise InputError(
                hint or f"no metadata column {column!r}; columns: {sorted(self.table.meta.columns)}",
                field="group_by",
            )
        blocks = (
            (vecs, batch.column(column).to_pylist()) for _, vecs, batch in self._blocks(where, [column])
        )
        groups, scores, sizes = group_scores(vectors, blocks)
        out = []
        for qi in range(vectors.shape[0]):
            order = np.argsort(-scores[:, qi], kind="stable")
            out.append([GroupScore(groups[g], float(scores[g, qi]), int(sizes[g])) for g in order])
        return out

    def retrieve(
        self,
        queries: Sequence[Example],
        vectors: np.ndarray | None,
        n: int,
        *,
        where: str | None = None,
        mode: str = "vector",
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, ``(scores, row_ids)`` of the ``n`` best rows by ``mode``, best first."""
        if mode not in SEARCH_MODES:
            raise InputError(f"unknown mode {mode!r}; choose one of {SEARCH_MODES}", field="mode")
        if mode != "vector" and not self.table.has_fts():
            raise InputError(
                f"--mode {mode} needs the table's full-text index; rebuild the table with this version "
                "(airsearch index ... --overwrite)",
                field="mode",
            )
        if mode == "bm25":
            return [fts.search(self.table.dataset, q, n, where=where) for q in queries]
        pool = max(n, HYBRID_POOL) if mode == "hybrid" else n
        scores, ids = self.top_k(vectors, pool, where=where)
        if mode == "vector":
            return list(zip(scores, ids, strict=True))
        out = []
        for qi, q in enumerate(queries):
            _, text_ids = fts.search(self.table.dataset, q, pool, where=where)
            fused = reciprocal_rank_fusion([ids[qi].tolist(), text_ids.tolist()])[:n]
            out.append(
                (np.array([f for _, f in fused], dtype=np.float64), np.array([r for r, _ in fused], np.int64))
            )
        return out

    def search(
        self,
        queries: Example | Sequence[Example],
        k: int = 10,
        *,
        where: str | None = None,
        opponents: bool = False,
        group_by: str | None = None,
        candidates: int | None = None,
        rerank: Rerank | None = None,
        rerank_name: str | None = None,
        mode: str = "vector",
        rerank_kind: str | None = None,
    ) -> list[QueryResult]:
        """Proponents (and opponents / group ranking) for each query example. ``rerank_kind`` is the
        kind id of the reranker's scores (:func:`airsearch.score_kinds.score_kind`; default its name)."""
        qs = [queries] if isinstance(queries, Example) else list(queries)
        if not qs:
            return []
        check_filter(where)
        if self.auto_refresh:
            self.refresh()
        # BM25 retrieval reads no query vector: encode only when something else does
        vectors = self.encode(qs) if mode != "bm25" or opponents or group_by else None
        found = self.retrieve(qs, vectors, max(k, candidates or 0), where=where, mode=mode)
        against = self.opponents(vectors, k, where=where) if opponents else None
        groups = self.group_scores(vectors, group_by, where=where) if group_by else None
        how = "ann" if self.use_ann else "exact"
        found_kind = score_kind(mode)
        name = (rerank_name or getattr(rerank, "__name__", "rerank")) if rerank else None
        kind = (rerank_kind or name or found_kind) if rerank else found_kind
        results = []
        for qi, q in enumerate(qs):
            cands = self.candidates(*found[qi], kind=found_kind)
            if rerank is not None:
                cands = _rerank(q, cands, rerank, kind)
            results.append(
                QueryResult(
                    query=q,
                    proponents=cands[:k],
                    opponents=self.candidates(*against[qi]) if against is not None else None,
                    groups=groups[qi] if groups else None,
                    group_by=group_by,
                    search={"bm25": "full-text", "hybrid": f"{how}+full-text"}.get(mode, how),
                    reranked_by=name,
                    mode=mode,
                    score_kind=kind,
                )
            )
        return results


def _rerank(query: Example, cands: list[Candidate], rerank: Rerank, kind: str) -> list[Candidate]:
    new = np.asarray(rerank(query, cands), dtype=np.float64)
    if new.shape != (len(cands),):
        raise InputError(f"the reranker returned {new.shape} scores for {len(cands)} candidates")
    rescored = [
        dataclasses.replace(
            c, score=float(s), retrieval_score=c.score, score_kind=kind, retrieval_kind=c.score_kind
        )
        for c, s in zip(cands, new, strict=True)
    ]
    return sorted(rescored, key=lambda c: -c.score)
