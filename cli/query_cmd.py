"""``airsearch query``: the training examples that best explain a (prompt, response)."""

from __future__ import annotations

from typing import Any

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option
from airsearch.indexers.config import QueryConfig
from airsearch.indexers.query import Candidate, QueryResult, preview, query


def _meta(c: Candidate) -> str:
    return " ".join(f"{k}={preview(str(v), 40)}" for k, v in c.metadata.items())


def _candidates(title: str, cands: list[Candidate], n: int) -> list[str]:
    lines = [f"  {title}:"]
    for i, c in enumerate(cands, 1):
        rs = "" if c.retrieval_score is None else f" (retrieval {c.retrieval_score:+.4f})"
        lines.append(f"  {i:>3}. {c.score:+9.4f}{rs}  {c.id}  {_meta(c)}")
        lines.append(f"        prompt:   {preview(c.prompt, n)}")
        lines.append(f"        response: {preview(c.response, n)}")
    return lines


def render(results: list[QueryResult], n: int = 100) -> str:
    out: list[str] = []
    for r in results:
        how = f"{r.search} search" + (f", reranked by {r.reranked_by}" if r.reranked_by else "")
        out.append(f"query {r.query.id} ({how})")
        if r.query.prompt:
            out.append(f"  prompt:   {preview(r.query.prompt, n)}")
        out.append(f"  response: {preview(r.query.response, n)}")
        out += _candidates("proponents (highest dot product)", r.proponents, n)
        if r.opponents is not None:
            out += _candidates("opponents (most negative dot product)", r.opponents, n)
        if r.groups is not None:
            out.append(f"  groups by '{r.group_by}' (Eq. 7 group score over all members):")
            out += [
                f"  {i:>3}. {g.score:+9.4f}  {g.group}  ({g.size} rows)" for i, g in enumerate(r.groups, 1)
            ]
        out.append("")
    return "\n".join(out)


@click.command("query")
@handle_errors
@json_option
@config_options(QueryConfig)
def query_cmd(config: QueryConfig, as_json: bool) -> Any:
    """Top-k proponents (and opponents, or metadata groups) for a query or a file of queries.

    With --rerank METHOD, AirRep retrieves --candidates rows and the method rescores them:
    tracin / gradcos / dda / haif / haif-t on --lm (DDA: --checkpoint DIR ..., --base-lm DIR),
    or daunce from --daunce-run DIR.
    """
    results = query(config)
    emit(results, as_json, lambda rs: render(rs, config.preview_chars))
