"""``airsearch restore``: bring back an earlier version of an index table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option
from airsearch.indexers.config import RestoreConfig

if TYPE_CHECKING:
    from airsearch.indexers.restore import RestoreSummary


def _human(r: RestoreSummary) -> str:
    line = f"restored version {r.restored} of table '{r.table}' in {r.db}: now version {r.version}, {r.rows:,} rows"
    if r.set_aside:
        return line + f"; unreadable version(s) {r.set_aside} set aside in {r.table}.lance/_damaged/"
    return line + f"; version {r.replaced} is kept and can be restored the same way"


@click.command("restore")
@handle_errors
@json_option
@config_options(RestoreConfig)
def restore_cmd(config: RestoreConfig, as_json: bool) -> Any:
    """Bring back an earlier version of a table (--version N, or --before-last); `info` lists them."""
    from airsearch.indexers.restore import restore_table

    emit(restore_table(config), as_json, _human)
