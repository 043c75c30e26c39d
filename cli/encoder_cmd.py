"""``airsearch encoder``: encoder folders (export to the published AirRep format)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option

from airsearch.encoder_export import ExportConfig

if TYPE_CHECKING:
    from airsearch.encoder_export import ExportSummary


@click.group("encoder")
def encoder_group() -> None:
    """Encoder folders: export an airsearch encoder in the published AirRep format."""


def _human(r: ExportSummary) -> str:
    dropped = f"; not in the format, left out: {', '.join(r.dropped)}" if r.dropped else ""
    return (
        f"exported {r.source} -> {r.out} (published AirRep format, {r.weights} weights, "
        f"fingerprint {r.fingerprint}{dropped}); load it with --encoder {r.out}"
    )


@encoder_group.command("export")
@handle_errors
@json_option
@config_options(ExportConfig)
def export_cmd(config: ExportConfig, as_json: bool) -> Any:
    """Write an encoder (--encoder) to --out in the published AirRep format (config model_type
    "airrep", weights bert.* and projector.*, tokenizer files), which the AirRep authors' code loads.
    Loading the export gives the same vectors as the source."""
    from airsearch.encoder_export import export_airrep

    emit(export_airrep(config), as_json, _human)
