"""``airsearch info``: what an index directory holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option
from airsearch.indexers.config import InfoConfig

if TYPE_CHECKING:
    from airsearch.indexers.results import IndexInfo


def untrained_note(record: dict) -> str:
    """What an index built with an untrained encoder must say: its scores are not attribution."""
    from airsearch.encoder_source import DEFAULT_IS_UNTRAINED

    if str(record.get("source", "default")) == "default":
        return DEFAULT_IS_UNTRAINED
    return DEFAULT_IS_UNTRAINED.replace(
        "the default encoder (bundled all-MiniLM-L6-v2) is", "this encoder is"
    )


def _human(d: IndexInfo) -> str:
    from airsearch.indexers.column_config import bytes_per_row
    from airsearch.indexers.results import describe_encoder

    lines = [
        f"db {d.db}  (airsearch {d.airsearch_version}, lancedb {d.lancedb_version}, lance {d.lance_version})"
    ]
    if not d.tables:
        lines.append("  no tables")
    for t in d.tables:
        idx = t.index
        kind = idx.type + (
            f" ({'?' if idx.indexed_rows is None else idx.indexed_rows} indexed, "
            f"{idx.unindexed_rows or 0} not yet)"
            if idx.ann
            else ""
        )
        # corpora are the records stored in the table (free-form JSON), read as such
        corpora = ", ".join(f"{c.get('rows')} rows [{c.get('fingerprint')}]" for c in t.corpora)
        lines += [
            f"table '{t.name}': {t.rows:,} rows, dim {t.dim}, version {t.version} [{t.fingerprint[:16]}]",
            f"  encoder   {describe_encoder(t.encoder)} [{t.encoder_fingerprint}] template {t.template}",
            f"  index     {kind}",
            f"  corpora   {corpora}",
            f"  metadata  {', '.join(t.metadata_columns) or '-'}",
            f"  built by  airsearch {t.airsearch_version}",
            "  versions  "
            + ", ".join(
                f"{v.version} ({v.time}, {'?' if v.rows is None else v.rows} rows)" for v in t.versions
            )
            + "  (airsearch restore --version N brings one back)",
        ]
        if not t.encoder.get("trained"):
            lines.append(f"  note      {untrained_note(t.encoder)}")
        for name, c in t.method_columns.items():
            made = c["manifest"]
            lines.append(
                f"  column    {name}: {c['method']}, {c['dim']} x {c['dtype']} "
                f"({bytes_per_row(c['dim'], c['dtype']):,} bytes per row), "
                f"{(c.get('ann') or {}).get('type', 'exact')}, model {made['model_fingerprint'][:12]}, "
                f"params {made['param_set'].get('kind')}, projection {made['projection'].get('dim') or 'none'} "
                f"[{c['fingerprint'][:16]}]"
            )
    return "\n".join(lines)


@click.command("info")
@handle_errors
@json_option
@config_options(InfoConfig)
def info_cmd(config: InfoConfig, as_json: bool) -> Any:
    """Tables, row counts, dimension, encoder, index status and versions of an index directory."""
    from airsearch.indexers.precheck import precheck

    precheck(config)  # before the heavy imports
    from airsearch.indexers.store import info

    emit(info(config.db), as_json, _human)
