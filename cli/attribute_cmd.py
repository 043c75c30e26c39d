"""``airsearch attribute``: whole-corpus gradient / Daunce attribution of a query file.

A thin layer over :func:`airsearch.trainers.attribute.attribute`: writes ``--out/results.json`` (top-k train
examples per query), the config, and with ``--full-matrix`` the score matrix; ``--vectors DIR``
stores and reuses the train vectors; ``--per-token`` adds each top-k example's token shares.
"""

from __future__ import annotations

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option
from airsearch.trainers.attribute import AttributeConfig, AttributeResult, attribute


def _human(r: AttributeResult, top_tokens: int) -> str:
    from airsearch.data.example import preview
    from airsearch.score_kinds import kind_label

    kind = r.results[0].top[0].score_kind if r.results and r.results[0].top else r.method
    lines = [
        f"{r.method}: {r.queries} queries x {r.train} train examples -> {r.out}",
        f"  scores: {kind}: {kind_label(kind)}, highest first",
    ]
    for q in r.results[:5]:
        lines.append(f"  {q.query_id}:")
        for t in q.top[:3]:
            lines.append(f"    {kind} {t.score:+.4f}  {t.id}  {preview(t.response, 60)}")
        for t in q.top[:3]:
            if t.tokens is not None:
                ranked = sorted(t.tokens, key=lambda s: -abs(s.contribution))[:top_tokens]
                shares = "  ".join(f"{s.token!r}:{s.contribution:+.4g}" for s in ranked)
                lines.append(f"    {t.id} tokens: {shares}")
    return "\n".join(lines)


@click.command("attribute")
@json_option
@config_options(AttributeConfig)
@handle_errors
def attribute_cmd(config: AttributeConfig, as_json: bool) -> None:
    """Attribute every query to the whole corpus with a gradient method (top-k or the full matrix).

    --per-token also splits each top-k example's score over its response tokens (the summary lists
    the --top-tokens largest shares; --json and OUT/results.json give every token).
    """
    emit(attribute(config), as_json, lambda r: _human(r, config.top_tokens))
