"""``airsearch delete``: remove rows from an index table by id or SQL filter.

The rows are counted first and the command asks before deleting them (``--yes`` skips the question,
``--dry-run`` only counts). Deleted rows stay in the table's earlier versions: ``airsearch restore
--before-last`` brings them back.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING, Any

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option
from airsearch.indexers.config import DeleteConfig

if TYPE_CHECKING:
    from airsearch.indexers.results import DeleteSummary


def _human(r: DeleteSummary) -> str:
    if r.dry_run:
        out = f"would delete {r.deleted} of {r.rows} rows from table '{r.table}' in {r.db} (dry run: nothing deleted)"
    elif r.deleted == 0:
        out = f"deleted 0 rows from table '{r.table}' in {r.db}: no row matched ({r.rows} rows)"
    else:
        out = (
            f"deleted {r.deleted} rows from table '{r.table}' in {r.db} ({r.rows} left, version {r.version}); "
            "`airsearch restore --before-last` brings them back"
        )
    if r.missing:
        out += f"\nnot in table '{r.table}', nothing deleted for: {', '.join(r.missing)}"
    return out


@click.command("delete")
@handle_errors
@click.option("--yes", "-y", is_flag=True, help="Delete without asking.")
@json_option
@config_options(DeleteConfig)
def delete_cmd(config: DeleteConfig, as_json: bool, yes: bool) -> Any:
    """Delete rows by --id (repeatable) and/or --where SQL filter; shows the count and asks first."""
    from airsearch.indexers.precheck import precheck

    precheck(config)  # before the heavy imports
    from airsearch.indexers.store import delete_rows

    if not config.dry_run and not yes:
        counted = delete_rows(dataclasses.replace(config, dry_run=True))
        if counted.deleted == 0:
            none = dataclasses.replace(counted, dry_run=False)
            emit(none, as_json, _human)
            return
        question = f"delete {counted.deleted} of {counted.rows} rows from table '{counted.table}'?"
        click.echo(f"{question} [y/N]: ", err=True, nl=False)
        answer = sys.stdin.readline()
        if not answer:  # end of input: nobody to ask
            click.echo("", err=True)
            click.secho(f"error: {question} Pass --yes to confirm (no answer on stdin).", fg="red", err=True)
            sys.exit(2)
        if answer.strip().lower() not in ("y", "yes"):
            click.echo("nothing deleted", err=True)
            sys.exit(1)
    emit(delete_rows(config), as_json, _human)
