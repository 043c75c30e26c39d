"""``airsearch eval``: LDS, data classification, planted tracing and data selection (equations.md §6).

The group is light: each subcommand lives in :mod:`airsearch.cli.eval_commands` and is imported when
it runs, so ``airsearch eval --help`` lists them without loading the evaluation harness.
"""

from __future__ import annotations

import click
from airsearch.cli.common import LazyGroup

_MODULE = "airsearch.cli.eval_commands"
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "gold": (_MODULE, "gold_cmd"),
    "lds": (_MODULE, "lds_cmd"),
    "classify": (_MODULE, "classify_cmd"),
    "trace": (_MODULE, "trace_cmd"),
    "select": (_MODULE, "select_cmd"),
}
SHORT_HELP = {
    "gold": "Gold labels for eval lds: subset retraining under --gold-protocol paper or local.",
    "lds": "LDS against gold subset-retraining labels (--gold: an eval gold folder or a label store).",
    "classify": "Share of queries whose top-1 / top-k attributed example has the query's label.",
    "trace": "Planted-ground-truth tracing: entity-swap (AUC, R@k) or pii (top-1 accuracy).",
    "select": "Fine-tune on the top-N examples per method vs N random; compare dev loss.",
}


@click.group("eval", cls=LazyGroup, lazy_commands=SUBCOMMANDS, short_help=SHORT_HELP)
def eval_group() -> None:
    """Evaluate attribution methods side by side (LDS, classification, tracing, selection)."""
