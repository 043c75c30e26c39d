"""``airsearch select``: choose training rows for a set of targets (AirRep App. G)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option
from airsearch.indexers.config import SelectConfig

if TYPE_CHECKING:
    from airsearch.indexers.select import SelectSummary


def _human(s: SelectSummary) -> str:
    return (
        f"selected {s.selected:,} of {s.rows_considered:,} rows for {s.targets:,} targets "
        f"({s.strategy}, {s.seconds:.1f} s)\n  rows:     {s.out}\n  manifest: {s.manifest}"
    )


@click.command("select")
@handle_errors
@json_option
@config_options(SelectConfig)
def select_cmd(config: SelectConfig, as_json: bool) -> Any:
    """Write the training rows that best serve --targets (best rank over targets, or summed score)."""
    from airsearch.indexers.precheck import precheck

    precheck(config)  # before the heavy imports
    from airsearch.indexers.select import select

    emit(select(config), as_json, _human)
