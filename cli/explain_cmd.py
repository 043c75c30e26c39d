"""``airsearch explain``: which tokens carry a training row's score for a query."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option
from airsearch.indexers.config import ExplainConfig

if TYPE_CHECKING:
    from airsearch.indexers.explain import RowExplanation


def _top(tokens: Any, n: int) -> str:
    ranked = sorted(tokens, key=lambda t: -abs(t.contribution))[:n]
    return "  ".join(f"{t.token}:{t.contribution:+.4f}" for t in ranked) or "(none)"


def _sides(name: str, tokens: Any, top: int) -> list[str]:
    """A side's content tokens, then its template and special tokens apart, with their summed share."""
    content = [t for t in tokens if t.content]
    frame = [t for t in tokens if not t.content]
    return [
        f"  {name} text tokens carrying the score:{' ' * (6 - len(name))} {_top(content, top)}",
        f"    template and special tokens (share {sum(t.contribution for t in frame):+.4f}): {_top(frame, top)}",
    ]


def render(e: RowExplanation, top: int) -> str:
    from airsearch.explain import TokenContribution

    a = e.airrep
    lines = [
        f"row {e.row.id}: AirRep score {a.score:+.4f} (airrep: AirRep dot product) = sum of "
        f"{len(a.row_tokens)} row-token shares ({sum(t.contribution for t in a.row_tokens):+.4f}) "
        f"= sum of {len(a.query_tokens)} query-token shares",
        *_sides("row", a.row_tokens, top),
        *_sides("query", a.query_tokens, top),
    ]
    if e.gradient is not None:
        from airsearch.score_kinds import kind_label

        g = e.gradient
        shares = [TokenContribution(t, c, False) for t, c in zip(g.tokens, g.contributions, strict=True)]
        lines += [
            f"  {g.method} score {g.score:+.6g} ({g.method}: {kind_label(g.method)}) over {len(g.tokens)} "
            "response tokens:",
            f"    {_top(shares, top)}",
        ]
    return "\n".join(lines)


@click.command("explain")
@handle_errors
@json_option
@config_options(ExplainConfig)
def explain_cmd(config: ExplainConfig, as_json: bool) -> Any:
    """Token-level split of a row's score for a query: AirRep exactly, and a gradient method with --lm."""
    from airsearch.indexers.precheck import precheck

    precheck(config)  # before the heavy imports
    from airsearch.indexers.explain import explain_score

    result = explain_score(config)
    emit(result.to_dict() if as_json else result, as_json, lambda r: render(r, config.top))
