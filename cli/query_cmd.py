"""``airsearch query``: the training examples that best explain a (prompt, response)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option
from airsearch.indexers.config import QueryConfig

from airsearch.data.example import preview

if TYPE_CHECKING:
    from airsearch.indexers.query import Candidate, QueryResult


def _meta(c: Candidate) -> str:
    return " ".join(f"{k}={preview(str(v), 40)}" for k, v in c.metadata.items())


def _candidates(title: str, cands: list[Candidate], n: int) -> list[str]:
    lines = [f"  {title}:"]
    for i, c in enumerate(cands, 1):
        rs = "" if c.retrieval_score is None else f" ({c.retrieval_kind} {c.retrieval_score:+.4f})"
        lines.append(f"  {i:>3}. {c.score_kind} {c.score:+9.4f}{rs}  {c.id}  {_meta(c)}")
        lines.append(f"        prompt:   {preview(c.prompt, n)}")
        lines.append(f"        response: {preview(c.response, n)}")
    return lines


def _kind_name(kind: str) -> str:
    return "AirRep" if kind == "airrep" else kind


def render(results: list[QueryResult], n: int = 100) -> str:
    from airsearch.score_kinds import HINT, kind_label

    out: list[str] = [HINT, ""] if results else []
    for r in results:
        # a --prompt/--response pair is the one query "query"; rows of a --queries file are named by id
        title = "query" if r.query.id == "query" else f"query '{r.query.id}'"
        out.append(f"{title} (ranked by {r.ranked_by})")
        if r.query.prompt:
            out.append(f"  prompt:   {preview(r.query.prompt, n)}")
        out.append(f"  response: {preview(r.query.response, n)}")
        scored = f"highest first; {r.score_kind}: {kind_label(r.score_kind)}"
        if r.reranked_by and r.proponents:
            kind = r.proponents[0].retrieval_kind
            scored += f"; the retrieval score in parentheses, {kind}: {kind_label(kind or '')}"
        out += _candidates(f"proponents ({scored})", r.proponents, n)
        if r.opponents is not None:
            kind = r.score_kind
            title = f"opponents (most negative first; {kind}: {kind_label(kind)}, negative only)"
            out += (
                _candidates(title, r.opponents, n)
                if r.opponents
                else [f"  {title}: none, no row has a negative {_kind_name(kind)} score for this query"]
            )
        if r.groups is not None:
            out.append(
                f"  groups by '{r.group_by}' (airrep-group: {kind_label('airrep-group')} over all members):"
            )
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
    from airsearch.indexers.precheck import precheck

    precheck(config)  # before the heavy imports
    from airsearch.indexers.query import query

    results = query(config)
    emit(results, as_json, lambda rs: render(rs, config.preview_chars))
