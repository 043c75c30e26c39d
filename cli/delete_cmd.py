"""``airsearch delete``: remove rows from an index table by id or SQL filter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option
from airsearch.indexers.config import DeleteConfig

if TYPE_CHECKING:
    from airsearch.indexers.results import DeleteSummary


def _human(r: DeleteSummary) -> str:
    out = f"deleted {r.deleted} rows from table '{r.table}' ({r.rows} left) in {r.db}"
    if r.missing:
        out += f"\nnot in table '{r.table}', nothing deleted for: {', '.join(r.missing)}"
    return out


@click.command("delete")
@handle_errors
@json_option
@config_options(DeleteConfig)
def delete_cmd(config: DeleteConfig, as_json: bool) -> Any:
    """Delete rows by --id (repeatable) and/or --where SQL filter."""
    from airsearch.indexers.store import delete_rows

    emit(delete_rows(config), as_json, _human)
