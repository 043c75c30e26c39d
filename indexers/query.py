"""``airsearch query`` (:func:`query`): which training examples best explain a (prompt, response)?

The search itself is :class:`~airsearch.indexers.searcher.Searcher` (proponents, opponents, group
scores, the vector / bm25 / hybrid modes and the rerank hook; re-exported here). Method columns:
``QueryConfig.method`` searches a method column instead (:mod:`airsearch.indexers.method_search`), and
``--rerank`` reads stored row vectors when the table has a column made by the same settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airsearch.indexers.config import QueryConfig
from airsearch.indexers.query_result import Candidate as Candidate
from airsearch.indexers.query_result import GroupScore as GroupScore
from airsearch.indexers.query_result import QueryResult as QueryResult
from airsearch.indexers.query_result import Rerank as Rerank
from airsearch.indexers.searcher import HYBRID_POOL as HYBRID_POOL
from airsearch.indexers.searcher import Searcher

from airsearch.data.example import Example
from airsearch.score_kinds import score_kind

if TYPE_CHECKING:
    from airsearch.encoder import AirRepEncoder


def query_examples(cfg: QueryConfig) -> list[Example]:
    """The query examples named by a config (``--prompt/--response`` or ``--queries FILE``)."""
    if cfg.queries is not None:
        from airsearch.data.corpus import load_queries

        read = {**cfg.read_options(), "encoding": cfg.encoding}
        return load_queries(cfg.queries, **read, source_field="queries").examples
    return [Example("query", cfg.prompt or "", cfg.response or "")]


def query(
    cfg: QueryConfig, *, rerank: Rerank | None = None, encoder: AirRepEncoder | None = None
) -> list[QueryResult]:
    """Python API of ``airsearch query``.

    With ``cfg.rerank`` (or a ``rerank`` hook of your own) AirRep retrieves ``cfg.candidates`` rows per
    query and the method's scores reorder them. A K-FAC / EK-FAC preconditioned reranker
    (``cfg.precondition``) fits its factors on ``cfg.factors_sample``, else on a seeded sample of the
    table's rows (:func:`~airsearch.indexers.table_methods.table_sample`), or reads them from
    ``cfg.factors``.
    """
    if cfg.method is not None:  # a method column: its own query vectors, no AirRep encoder
        from airsearch.indexers.method_search import ColumnSearcher

        column = ColumnSearcher(cfg.db, cfg.table, cfg.method, cfg.lm, backend=cfg.backend, exact=cfg.exact)
        return column.search(
            query_examples(cfg), cfg.k, where=cfg.where, opponents=cfg.opponents, group_by=cfg.group_by
        )
    method_cfg = cfg.rerank_method()
    searcher = Searcher(
        cfg.db,
        cfg.table,
        encoder=encoder or cfg.encoder,
        backend=cfg.backend,
        exact=cfg.exact,
        runtime=cfg.runtime,
        quantize=cfg.quantize,
        # the torch-free query encoder whenever the index's encoder has an export (same vectors to
        # 1e-5): a reranker loads torch for its own vectors, but ONNX encodes the query faster
        fast=encoder is None,
    )
    if rerank is None and method_cfg is not None:
        from airsearch.indexers.method_search import stored_reranker
        from airsearch.indexers.table_methods import method_on_table

        from airsearch.methods.registry import Reranker

        # a column made by the same settings: read the candidates' vectors instead of recomputing
        rerank = stored_reranker(searcher.table, method_cfg) or Reranker(
            method_on_table(method_cfg, searcher.table)
        )
    return searcher.search(
        query_examples(cfg),
        cfg.k,
        where=cfg.where,
        opponents=cfg.opponents,
        group_by=cfg.group_by,
        candidates=cfg.candidates if rerank is not None else None,
        rerank=rerank,
        mode=cfg.mode,
        rerank_kind=score_kind(cfg.mode, cfg.rerank, cfg.precondition) if cfg.rerank else None,
    )
