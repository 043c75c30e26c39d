"""What each endpoint does, on the same Python API the CLI uses (no second implementation of search).

One :class:`SearchService` per server: it holds the encoder and a :class:`~airsearch.indexers.query.Searcher`,
moves the searcher to the table's newest version before each request (rows appended by another process
show up without a restart; a request reads one version from start to end), turns structured filters
into SQL (:mod:`airsearch.indexers.serve.filters`) and enforces the configured limits.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from airsearch.indexers.config import SelectConfig
from airsearch.indexers.explain import example_dict, explain_row, find_row, load_gradient_method
from airsearch.indexers.query import Searcher
from airsearch.indexers.select import select
from airsearch.indexers.serve.config import ServeConfig
from airsearch.indexers.serve.filters import filter_sql, filterable_columns
from airsearch.indexers.serve.schemas import Condition, ExplainRequest, QueryRequest, QueryText, SelectRequest
from airsearch.indexers.store import info

from airsearch.data.corpus import write_rows
from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder
from airsearch.errors import AirsearchError
from airsearch.score_kinds import HINT, SCORE_KINDS, score_kind

T = TypeVar("T")


class LimitError(AirsearchError):
    """A request over one of the server's limits (HTTP 413 for the body, 422 otherwise)."""


class Forbidden(AirsearchError):
    """A request for something this server was not started to allow (HTTP 403)."""


class SearchService:
    """The read-only operations behind the API, on one index table."""

    def __init__(self, cfg: ServeConfig, *, encoder: AirRepEncoder | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self._searcher = Searcher(cfg.db, cfg.table, encoder=encoder or cfg.encoder, exact=cfg.exact)
        self._lock = threading.Lock()
        self._methods: dict[str, Any] = {}
        self._method_locks: dict[str, threading.Lock] = {}

    # ----------------------------------------------------------------------------- state
    def searcher(self) -> Searcher:
        """The searcher on the table's newest version."""
        current = self._searcher
        fresh = current.at_latest()
        if fresh is not current:
            with self._lock:
                if self._searcher is current:  # a replaced table's version may not be higher
                    self._searcher = fresh
        return fresh

    def reading(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, once more on the new table when it failed because a writer replaced or
        changed the table under it (``index --overwrite`` removes the old folder's files)."""
        before = self.searcher()
        try:
            return fn(*args)
        except Exception:
            if before.table.is_latest():
                raise
            return fn(*args)

    def method(self, name: str) -> tuple[Any, threading.Lock]:
        """A gradient method on the server's LM (built once), and the lock that serialises its use."""
        self.check_method(name)
        with self._lock:
            if name not in self._methods:
                self._methods[name] = load_gradient_method(
                    self.cfg.served_method(name), self.searcher().table
                )
                self._method_locks[name] = threading.Lock()
        return self._methods[name], self._method_locks[name]

    def column(self, name: str) -> tuple[Any, threading.Lock]:
        """A searcher over method column ``name`` with its method on the server's LM (built once)."""
        if not self.cfg.lm:
            raise Forbidden("method columns need a target LM; start the server with --lm DIR", field="method")
        from airsearch.indexers.method_search import ColumnSearcher

        key = f"column:{name}"
        with self._lock:
            if key not in self._methods:
                self._methods[key] = ColumnSearcher(
                    self.cfg.db, self.cfg.table, name, self.cfg.lm, exact=self.cfg.exact
                )
                self._method_locks[key] = threading.Lock()
        return self._methods[key], self._method_locks[key]

    def check_method(self, name: str) -> None:
        """Refuse (403) a method this server does not offer."""
        if not self.cfg.lm:
            raise Forbidden(
                "gradient methods need a target LM; start the server with --lm DIR", field="rerank"
            )
        if name not in self.cfg.rerank_methods:
            raise Forbidden(
                f"method {name!r} is not offered; offered: {list(self.cfg.rerank_methods)}", field="rerank"
            )

    # ----------------------------------------------------------------------------- checks
    def where(self, searcher: Searcher, filters: Sequence[Condition], raw: str | None) -> str | None:
        """SQL for structured ``filters`` (validated against the schema), and raw SQL only if allowed."""
        if raw and not self.cfg.allow_sql:
            raise Forbidden(
                "raw SQL 'where' is disabled on this server; send structured 'filters'", field="where"
            )
        conds = [c.model_dump() for c in filters]
        parts = [p for p in (filter_sql(conds, searcher.table.meta.columns), raw) if p]
        return " AND ".join(f"({p})" for p in parts) or None

    def texts(self, items: Sequence[QueryText], what: str) -> list[Example]:
        limit = self.cfg.max_text_chars
        for i, q in enumerate(items):
            for name in ("prompt", "response"):
                if len(getattr(q, name)) > limit:
                    raise LimitError(
                        f"longer than {limit} characters (max_text_chars)", field=f"{what}[{i}].{name}"
                    )
        return [Example(q.id or f"q{i}", q.prompt, q.response) for i, q in enumerate(items)]

    # ----------------------------------------------------------------------------- endpoints
    def query(self, req: QueryRequest) -> dict[str, Any]:
        cfg = self.cfg
        if req.queries is None:
            if req.response is None:
                raise LimitError("give prompt/response or queries", field="response")
            items = [QueryText(prompt=req.prompt or "", response=req.response)]
        elif req.prompt is not None or req.response is not None:
            raise LimitError("give either prompt/response or queries, not both", field="queries")
        else:
            items = req.queries
        if not 0 < len(items) <= cfg.max_batch:
            raise LimitError(f"1..{cfg.max_batch} queries per request (max_batch)", field="queries")
        if req.k > cfg.max_k:
            raise LimitError(f"k={req.k} is over this server's limit of {cfg.max_k} (max_k)", field="k")
        if req.rerank:
            self.check_method(req.rerank)
        if req.rerank and req.candidates > cfg.max_candidates:
            raise LimitError(
                f"over {cfg.max_candidates} rerank candidates (max_candidates)", field="candidates"
            )
        examples = self.texts(items, "queries")
        searcher = self.searcher()
        if req.group_by is not None and req.group_by not in filterable_columns(searcher.table.meta.columns):
            from airsearch.indexers.rows import not_a_column_hint

            hint = not_a_column_hint(req.group_by)
            raise LimitError(hint or f"unknown group-by column {req.group_by!r}", field="group_by")
        where = self.where(searcher, req.filters, req.where)
        kwargs: dict[str, Any] = dict(
            where=where, opponents=req.opponents, group_by=req.group_by, mode=req.mode
        )
        if req.method:
            column, lock = self.column(req.method)
            if req.mode != "vector":
                raise LimitError("a method column is searched by vector (mode 'vector')", field="mode")
            kwargs.pop("mode")
            with lock:
                results = column.at_latest().search(examples, req.k, **kwargs)
        elif req.rerank:
            method, lock = self.method(req.rerank)
            from airsearch.indexers.method_search import stored_reranker

            from airsearch.methods.registry import Reranker

            with lock:  # from the stored vectors of a column made by the same settings, if any
                rerank = stored_reranker(searcher.table, self.cfg.served_method(req.rerank)) or Reranker(
                    method
                )
                results = searcher.search(
                    examples,
                    req.k,
                    candidates=req.candidates,
                    rerank=rerank,
                    rerank_kind=score_kind(req.mode, req.rerank, cfg.precondition),
                    **kwargs,
                )
        else:
            results = searcher.search(examples, req.k, **kwargs)
        return {
            "table": searcher.table.name,
            "table_version": searcher.table.version,
            "where": where,
            "results": [r.to_dict(req.preview_chars) for r in results],
        }

    def row(self, row_id: str) -> dict[str, Any]:
        searcher = self.searcher()
        rid, ex = find_row(searcher, row_id)
        return {**example_dict(ex), "row_id": rid, "table_version": searcher.table.version}

    def info(self) -> dict[str, Any]:
        searcher = self.searcher()
        table = searcher.table.describe().to_dict()
        return {
            "table": table,
            "filterable_columns": filterable_columns(searcher.table.meta.columns),
            "modes": ["vector", "bm25", "hybrid"] if searcher.table.has_fts() else ["vector"],
            "rerank_methods": list(self.cfg.rerank_methods) if self.cfg.lm else [],
            "method_columns": method_columns(searcher.table),
            "lm": bool(self.cfg.lm),
            "params": self.cfg.params,
            "precondition": self.cfg.precondition,
            "allow_sql": self.cfg.allow_sql,
            "hint": HINT,  # which scores are attribution and which retrieval (one line on the page)
            "score_kinds": SCORE_KINDS,
            "limits": {
                k: getattr(self.cfg, k)
                for k in (
                    "max_k",
                    "max_batch",
                    "max_text_chars",
                    "max_candidates",
                    "max_targets",
                    "max_select",
                )
            },
            "versions": {k: v for k, v in info(self.cfg.db).to_dict().items() if k.endswith("version")},
        }

    def health(self) -> dict[str, Any]:
        searcher = self.searcher()
        return {
            "status": "ok",
            "table": searcher.table.name,
            "rows": searcher.table.count(),
            "version": searcher.table.version,
            "auth": self.cfg.token is not None,
        }

    def explain(self, req: ExplainRequest) -> dict[str, Any]:
        (query,) = self.texts([QueryText(prompt=req.prompt, response=req.response)], "query")
        searcher = self.searcher()
        if req.method is None:
            return explain_row(searcher, query, req.id).to_dict()
        method, lock = self.method(req.method)
        with lock:
            return explain_row(searcher, query, req.id, method=method).to_dict()

    def select_lines(self, req: SelectRequest) -> Iterator[bytes]:
        """Run ``airsearch select`` for the targets into a temporary JSONL file and stream its lines."""
        cfg = self.cfg
        if not 0 < len(req.targets) <= cfg.max_targets:
            raise LimitError(f"1..{cfg.max_targets} targets (max_targets)", field="targets")
        if (req.n is None) == (req.fraction is None):
            raise LimitError("give exactly one of n or fraction", field="n")
        searcher = self.searcher()
        where = self.where(searcher, req.filters, req.where)
        n = req.n if req.n is not None else max(1, round(req.fraction * searcher.table.count(where)))
        if n > cfg.max_select:
            raise LimitError(f"n={n} is over this server's limit of {cfg.max_select} (max_select)", field="n")
        targets = self.texts(req.targets, "targets")
        tmp = tempfile.TemporaryDirectory(prefix="airsearch-serve-")
        try:
            path = Path(tmp.name)
            write_rows(path / "targets.jsonl", [t.to_row() for t in targets])
            select(
                SelectConfig(
                    db=cfg.db,
                    table=searcher.table.name,
                    targets=str(path / "targets.jsonl"),
                    n=n,
                    strategy=req.strategy,
                    out=str(path / "selection.jsonl"),
                    where=where,
                ),
                encoder=searcher.encoder,
                targets=targets,  # as read here: an empty prompt is a target as it is a query
            )
            fh = open(path / "selection.jsonl", "rb")  # noqa: SIM115 - closed by the stream
        except BaseException:
            tmp.cleanup()
            raise
        return _stream(fh, tmp)


def _stream(fh: Any, tmp: tempfile.TemporaryDirectory) -> Iterator[bytes]:
    try:
        yield from fh
    finally:
        fh.close()
        tmp.cleanup()


def method_columns(table: Any) -> list[dict[str, Any]]:
    """The table's method columns as the page lists them (what searches one: ``/api/query`` with
    ``method``; it needs the server's ``--lm``)."""
    from airsearch.indexers.column_spec import column_specs

    return [
        {
            "column": s.column,
            "method": s.method,
            "dim": s.dim,
            "dtype": s.dtype,
            "rows": s.rows,
            "score": s.score,
        }
        for s in column_specs(table).values()
    ]
