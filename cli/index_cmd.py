"""``airsearch index``: encode a corpus with AirRep into a LanceDB table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option
from airsearch.indexers.config import IndexConfig

if TYPE_CHECKING:
    from airsearch.indexers.build import IndexSummary


def _human(s: IndexSummary) -> str:
    index = s.index.type
    lines = [
        f"{s.mode}: table '{s.table}' in {s.db}",
        f"  rows added   {s.rows_added:,}  (table now {s.rows_total:,} rows)"
        + (f"; {s.rows_replaced:,} replaced rows of the same id" if s.rows_replaced else ""),
        f"  dimension    {s.dim}",
        f"  encoder      {s.encoder}  [{s.encoder_fingerprint}]",
        f"  corpus       [{s.corpus_fingerprint}]",
        f"  index        {index}"
        + ("" if s.index.ann else " (exact search; ANN is built above the row threshold)"),
        f"  time         {s.seconds:.1f} s  ({s.rows_per_second:,.0f} rows/s)",
    ]
    if s.ray_workers:
        lines.insert(-1, f"  ray          {s.ray_workers} encoder actor(s)")
    if s.resumed_rows:
        lines.insert(2, f"  resumed      {s.resumed_rows:,} rows were encoded by the interrupted run")
    if s.skipped:
        lines.append(f"  skipped      {s.skipped} bad rows:")
        lines += [f"    {n} x {reason}" for reason, n in s.skipped_reasons.items()]
    return "\n".join(lines)


@click.command("index")
@handle_errors
@click.argument("corpus", nargs=-1)
@json_option
@config_options(IndexConfig)
def index_cmd(config: IndexConfig, as_json: bool) -> Any:
    """Encode CORPUS files (JSONL, JSON, Parquet, CSV, HF folders) into an index table.

    CORPUS may instead come from --config FILE (its ``corpus`` list).
    """
    from airsearch.indexers.precheck import precheck

    precheck(config, creates_db=True)  # before the heavy imports
    from airsearch.indexers.build import build_index

    emit(build_index(config), as_json, _human)
