"""Searching a method column (``query --method``) and reranking from stored vectors.

A method column (:mod:`airsearch.indexers.method_columns`) holds each row's ``row_vector``; the score
of a row for a query is ``query_vector . row_vector`` (the method contract), so a query costs one
query-vector computation (one forward and backward pass for a gradient method) and a dot-product
search: exact over the column's blocks, or through the column's ANN index (dot metric) when it has
one. ``--where`` filters, opponents (most negative scores) and the Eq. 7 group scores
(``sum_i softmax_i(|s_i|) s_i`` over each group, with the method's scores ``s_i``) work as for AirRep.

:class:`StoredReranker`: ``query --rerank M`` on a table with a column made by the same settings
reads the candidates' stored row vectors instead of recomputing their gradients.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from airsearch.indexers.config import bad_filter
from airsearch.indexers.method_columns import (
    ColumnSpec,
    find_column,
    load_column_method,
    vectors_of_column,
)
from airsearch.indexers.query_result import QueryResult
from airsearch.indexers.searcher import Searcher
from airsearch.indexers.store import IndexStore, IndexTable

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.score_kinds import score_kind


class ColumnSearcher(Searcher):
    """A :class:`Searcher` whose vectors are a method column's and whose query vectors come from the
    method (no AirRep encoder is loaded)."""

    def __init__(
        self,
        db: str,
        table: str | None,
        column: str,
        lm: str | None,
        *,
        backend: str = "auto",
        exact: bool = False,
        method: Any = None,
    ) -> None:
        self.store = IndexStore(db)
        self.table: IndexTable = self.store.open(table)
        self.backend, self.exact, self.auto_refresh = backend, exact, False
        self.encoder = None  # type: ignore[assignment]
        self.spec: ColumnSpec = find_column(self.table, column)
        self.column = self.spec.column
        self.method = method if method is not None else load_column_method(self.spec, lm)
        self.use_ann = self._column_has_ann(self.table)

    def _column_has_ann(self, table: IndexTable) -> bool:
        return not self.exact and any(self.spec.column in i.columns for i in table.table.list_indices())

    def _open_latest(self) -> None:
        self.table = self.store.open(self.table.name)
        self.use_ann = self._column_has_ann(self.table)

    def encode(self, queries: Sequence[Example]) -> np.ndarray:
        return self.method.query_vectors(list(queries)).detach().cpu().numpy().astype(np.float32)

    def _blocks(self, where: str | None, columns: Sequence[str] = ()) -> Any:
        """``(row_ids, column vectors [b, d], batch)`` of the rows passing ``where``, in table order."""
        col, dim = self.spec.column, self.spec.dim
        try:
            for batch in self.table.dataset.to_batches(
                columns=[col, *columns], filter=where, with_row_id=True, batch_size=65536
            ):
                if batch.num_rows:
                    ids = batch.column("_rowid").to_numpy().astype(np.int64)
                    yield ids, vectors_of_column(batch.column(col), dim), batch
        except (OSError, ValueError) as e:
            if where:
                raise bad_filter(where, e) from None
            raise

    def row_vectors(self, row_ids: Sequence[int]) -> np.ndarray:
        if len(row_ids) == 0:
            return np.zeros((0, self.spec.dim), dtype=np.float32)
        t = self.table.dataset._take_rows([int(r) for r in row_ids], columns=[self.spec.column])
        return vectors_of_column(t.column(self.spec.column), self.spec.dim)

    def _dim(self) -> int:
        return self.spec.dim

    def _ann_record(self) -> dict[str, Any] | None:
        return self.spec.ann

    def search(self, queries: Example | Sequence[Example], k: int = 10, **kw: Any) -> list[QueryResult]:
        if kw.get("mode", "vector") != "vector":
            raise InputError("a method column is searched by vector (--mode vector)", field="mode")
        results = super().search(queries, k, **kw)
        pre = (self.spec.manifest.get("extra") or {}).get("precondition") or {}
        kind = score_kind("vector", self.spec.method, str(pre.get("kind") or "none") if pre else "none")

        def marked(cands: list[Any] | None) -> list[Any] | None:
            return None if cands is None else [dataclasses.replace(c, score_kind=kind) for c in cands]

        return [
            dataclasses.replace(
                r,
                method=self.spec.column,
                score_kind=kind,
                proponents=marked(r.proponents),
                opponents=marked(r.opponents),
            )
            for r in results
        ]


class StoredReranker:
    """The ``query --rerank`` hook reading the candidates' row vectors from a method column: one query
    vector, a gather, a dot product (instead of every candidate's gradient)."""

    def __init__(self, searcher: ColumnSearcher) -> None:
        self.searcher = searcher
        self.__name__ = f"{searcher.spec.method} (stored {searcher.spec.column})"

    def __call__(self, query: Example, candidates: Sequence[Any]) -> np.ndarray:
        if not candidates:
            return np.zeros(0)
        q = self.searcher.encode([query])[0]
        rows = self.searcher.row_vectors([c.row_id for c in candidates])
        return (rows.astype(np.float64) @ q.astype(np.float64)).astype(np.float64)


def stored_reranker(table: IndexTable, method_cfg: Any) -> StoredReranker | None:
    """A :class:`StoredReranker` when ``table`` has a column made by ``method_cfg``'s settings on its
    LM (``None`` otherwise: the caller recomputes)."""
    from airsearch.indexers.method_columns import matching_column

    from airsearch.errors import FingerprintMismatch

    spec = matching_column(table, method_cfg)
    if spec is None:
        return None
    try:
        method = load_column_method(spec, method_cfg.lm)
    except FingerprintMismatch:
        return None  # another LM than the column's: recompute
    searcher = ColumnSearcher(str(table.store.path), table.name, spec.column, method_cfg.lm, method=method)
    return StoredReranker(searcher)


class StoredRows:
    """An attribution method whose train vectors are read from a method column where the table holds
    the same example (same id, prompt and response), and computed otherwise (the label teachers,
    ``labels generate --teacher M --teacher-db DB``). Query vectors and manifest are the method's."""

    def __init__(self, method: Any, searcher: ColumnSearcher) -> None:
        self.method, self.searcher = method, searcher
        self.name = method.name
        self.read = self.computed = 0

    def __getattr__(self, name: str) -> Any:  # test_features, manifest, describe, ... of the method
        return getattr(self.method, name)

    def train_features(self, examples: Sequence[Example]) -> Any:
        import torch

        table = self.searcher.table
        found = table.find([e.id for e in examples])
        stored = table.take([found[e.id] for e in examples if e.id in found])
        same = {
            s.id
            for s, e in zip(stored, [e for e in examples if e.id in found], strict=True)
            if (s.prompt, s.response) == (e.prompt, e.response)
        }
        out = torch.zeros(len(examples), self.searcher.spec.dim)
        have = [i for i, e in enumerate(examples) if e.id in same]
        if have:
            out[have] = torch.from_numpy(
                self.searcher.row_vectors([found[examples[i].id] for i in have]).copy()
            )
        rest = [i for i in range(len(examples)) if i not in set(have)]
        if rest:
            out[rest] = self.method.train_features([examples[i] for i in rest]).float()
        self.read, self.computed = self.read + len(have), self.computed + len(rest)
        return out

    def score_against(self, train: Sequence[Example], queries: Any) -> Any:
        return self.train_features(train) @ queries.T


def stored_rows(db: str, method_cfg: Any, method: Any) -> Any:
    """The method of a column of ``db`` made by ``method_cfg``'s settings (:func:`stored_reranker`'s
    match), reading its train vectors from the column (:class:`StoredRows`); ``method`` itself when
    the table has no such column. A preconditioned column brings its own factors."""
    store = IndexStore(db)
    rer = stored_reranker(store.open(), method_cfg)
    # the column's own method (its K-FAC / EK-FAC factors, when preconditioned) on both sides
    return method if rer is None else StoredRows(rer.searcher.method, rer.searcher)
