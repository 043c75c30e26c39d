"""``airsearch query --rerank M``: AirRep retrieves candidates, a gradient / Daunce method rescores them.

Options: ``--rerank tracin|gradcos|dda|haif|haif-t|daunce --model LM [--base-model LM0]
[--checkpoint DIR ...] [--candidates 200] [--params all|lora|names:...] [--proj-dim K]
[--daunce-run DIR]``. The output lists the method's score and the retrieval score of each candidate,
in the method's order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from airsearch.errors import InputError
from airsearch.methods.base import METHOD_NAMES


def rerank_options(fn: Callable) -> Callable:
    opts = [
        click.option(
            "--rerank",
            type=click.Choice(METHOD_NAMES),
            default=None,
            help="Rescore the AirRep candidates with this attribution method.",
        ),
        click.option("--model", "rerank_model", default=None, help="Target LM folder (with --rerank)."),
        click.option("--base-model", default=None, help="DDA: the model before fine-tuning."),
        click.option("--checkpoint", multiple=True, help="DDA/TracIn checkpoint folders (repeatable)."),
        click.option(
            "--candidates",
            type=int,
            default=200,
            show_default=True,
            help="AirRep candidates to rescore (with --rerank).",
        ),
        click.option(
            "--params",
            "rerank_params",
            default="all",
            show_default=True,
            help="Gradient parameters: all, lora, names:PAT[,PAT].",
        ),
        click.option("--proj-dim", type=int, default=0, help="JL projection dimension (0 = exact)."),
        click.option("--daunce-run", default=None, help="Daunce: folder of a finished run."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def make_reranker(
    rerank: str | None,
    rerank_model: str | None,
    base_model: str | None,
    checkpoint: tuple[str, ...],
    candidates: int,
    rerank_params: str,
    proj_dim: int,
    daunce_run: str | None,
) -> tuple[Any, int | None]:
    """The rerank hook for :func:`airsearch.indexers.query.query` (or ``(None, None)`` without ``--rerank``)."""
    if rerank is None:
        return None, None
    if candidates < 1:
        raise InputError(f"must be at least 1, got {candidates}", field="candidates")
    if not rerank_model and not checkpoint and rerank != "daunce":
        raise InputError("reranking needs the target model", field="rerank_model")
    from airsearch.trainers.attribute import load_method

    from airsearch.methods.registry import MethodConfig, Reranker

    cfg = MethodConfig(
        method=rerank,
        model=rerank_model or "",
        base_model=base_model,
        checkpoint=list(checkpoint),
        params=rerank_params,
        proj_dim=proj_dim,
        daunce_run=daunce_run,
    )
    return Reranker(load_method(cfg)), candidates
