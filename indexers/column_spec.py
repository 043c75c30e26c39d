"""What made a method column (:class:`ColumnSpec`), stored in the column's field metadata under
``FIELD_KEY``; :mod:`airsearch.indexers.method_columns` writes it, ``info`` and queries read it."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pyarrow as pa

from airsearch import __version__
from airsearch.methods.registry import MethodConfig
from airsearch.results import Result

FIELD_KEY = b"airsearch.method"


@dataclasses.dataclass(frozen=True)
class ColumnSpec(Result):
    """What made a method column (stored in its field metadata; ``info`` lists it)."""

    column: str
    method: str
    dim: int
    dtype: str
    fingerprint: str  # of the manifest and dtype: equal fingerprints, equal vectors
    manifest: dict[str, Any]  # model fingerprint, checkpoints, parameter set, projection, precondition
    config: dict[str, Any]  # the MethodConfig (paths as given)
    score: str = "dot"
    rows: int = 0  # rows of the table (kept current by appends, upserts and deletes)
    build_seconds: float = 0.0
    ann: dict[str, Any] | None = (
        None  # the column's ANN index; ``rows_indexed``: rows it covered when refreshed
    )
    airsearch_version: str = __version__

    @classmethod
    def from_field(cls, field: pa.Field) -> ColumnSpec | None:
        raw = (field.metadata or {}).get(FIELD_KEY)
        if raw is None:
            return None
        data = json.loads(raw)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def method_config(self, **overrides: Any) -> MethodConfig:
        return MethodConfig.from_dict({**self.config, **{k: v for k, v in overrides.items() if v}})


def column_specs(table: Any) -> dict[str, ColumnSpec]:
    """``{column: spec}`` of every method column of a table (an
    :class:`~airsearch.indexers.table.IndexTable`) or a ``pa.Schema``, in schema order."""
    schema = table if isinstance(table, pa.Schema) else table.dataset.schema
    out = {}
    for field in schema:
        spec = ColumnSpec.from_field(field)
        if spec is not None:
            out[field.name] = spec
    return out


def record_spec(dataset: Any, spec: ColumnSpec) -> None:
    """Write ``spec`` into its column's field metadata (what ``info`` and the searches read) of a
    ``lance.LanceDataset``."""
    dataset.update_field_metadata({spec.column: {FIELD_KEY.decode(): json.dumps(spec.to_dict())}})


def record_row_count(dataset: Any, *, ann_refreshed: bool) -> None:
    """After rows were added or deleted: every method column's spec records the table's row count,
    and (``ann_refreshed``: its ANN index was just brought up to date) the rows its index covers."""
    specs = column_specs(dataset.schema)
    if not specs:
        return
    rows = dataset.count_rows()
    for spec in specs.values():
        ann = {**spec.ann, "rows_indexed": rows} if spec.ann and ann_refreshed else spec.ann
        record_spec(dataset, dataclasses.replace(spec, rows=rows, ann=ann))
