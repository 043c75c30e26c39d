"""``airsearch method-column``: add an attribution method's vectors as a column of an index table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option
from airsearch.indexers.column_config import MethodColumnConfig

if TYPE_CHECKING:
    from airsearch.indexers.method_columns import ColumnSummary


def _human(s: ColumnSummary) -> str:
    c = s.column
    lines = [
        f"column '{c.column}' ({c.method}) in table '{s.table}' of {s.db}",
        f"  rows         {c.rows:,}"
        + (f" ({s.resumed_rows:,} from the interrupted run)" if s.resumed_rows else ""),
        f"  vectors      {c.dim} x {c.dtype} = {s.bytes_per_row:,} bytes per row; score = dot product",
        f"  made by      model {c.manifest['model_fingerprint'][:12]}, params {c.manifest['param_set']}, "
        f"projection {c.manifest['projection'].get('dim') or 'none'}",
        f"  fingerprint  {c.fingerprint[:16]}",
        f"  index        {c.ann['type'] if c.ann else 'exact (ANN is built above the row threshold)'}",
        f"  time         {s.seconds:.1f} s" + (f" on Ray ({s.ray_workers} workers)" if s.ray_workers else ""),
    ]
    return "\n".join(lines)


@click.command("method-column")
@handle_errors
@json_option
@config_options(MethodColumnConfig)
def column_cmd(config: MethodColumnConfig, as_json: bool) -> Any:
    """Add METHOD's row vectors (--method, on --lm) as a vector column of a table.

    Then `query --method COLUMN --lm LM` searches it, `query --rerank METHOD` with the same settings
    reads its vectors, and `index --append/--upsert --lm LM` computes it for added rows. A killed build
    resumes when run again.
    """
    from airsearch.indexers.method_columns import add_method_column

    emit(add_method_column(config), as_json, _human)
