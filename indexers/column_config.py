"""The config of ``airsearch method-column`` (a light module: the CLI reads it without lance or torch)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from airsearch.indexers.config import DEFAULT_THRESHOLD, DEFAULT_TYPE, INDEX_TYPES, AnnType

from airsearch.config import require
from airsearch.methods.registry import MethodConfig

F = dataclasses.field
DTYPES = ("float32", "float16")
RESERVED_COLUMNS = frozenset({"id", "prompt", "response", "vector", "metadata_extra", "_rowid", "_distance"})


def bytes_per_row(dim: int, dtype: str) -> int:
    """Storage of one row's vector in a method column of ``dim`` values of ``dtype``."""
    return dim * (2 if dtype == "float16" else 4)


def valid_column_name(name: str) -> bool:
    return bool(name) and name.replace("_", "a").isalnum() and name not in RESERVED_COLUMNS


@dataclasses.dataclass(kw_only=True)
class MethodColumnConfig(MethodConfig):
    """Add one attribution method's vectors as a column of an index table (``airsearch method-column``)."""

    db: str = F(metadata={"help": "LanceDB directory"})
    table: str | None = F(default=None, metadata={"help": "table name (default: the only table)"})
    column: str | None = F(default=None, metadata={"help": "column name (default: m_<method>)"})
    dtype: Literal["float32", "float16"] = F(
        default="float32", metadata={"help": "storage of the vectors: float32 or float16 (half the bytes)"}
    )
    chunk_size: int = F(default=256, metadata={"help": "rows computed and committed per chunk"})
    overwrite: bool = F(default=False, metadata={"help": "replace a column of the same name"})
    ann_threshold: int = F(
        default=DEFAULT_THRESHOLD, metadata={"help": "build an ANN index on the column at this many rows"}
    )
    ann_type: AnnType = F(default=DEFAULT_TYPE, metadata={"help": "ANN index type (as for `index`)"})
    ray: str | None = F(
        default=None,
        metadata={
            "help": "compute the vectors on Ray: 'auto' (the running cluster), a cluster ADDRESS, or 'local'"
        },
    )
    workers: int | None = F(
        default=None,
        metadata={"help": "method actors with --ray (default: one per GPU, else one per 2 CPUs)"},
    )

    def validate(self) -> None:
        super().validate()
        require(bool(self.db), "db", "is required (the index directory)")
        require(self.dtype in DTYPES, "dtype", "must be float32 or float16")
        require(self.chunk_size >= 1, "chunk_size", "must be at least 1")
        require(self.ann_type in INDEX_TYPES, "ann_type", f"must be one of {INDEX_TYPES}")
        require(
            self.method == "daunce" or bool(self.lm or self.checkpoints), "lm", "needs the target LM folder"
        )
        require(
            self.column is None or valid_column_name(self.column), "column", "letters, digits and '_' only"
        )
        require(
            self.ray is None or bool(self.ray.strip()), "ray", "give 'auto', a cluster address or 'local'"
        )
        require(self.workers is None or self.workers >= 1, "workers", "must be at least 1")
        require(self.workers is None or self.ray is not None, "workers", "sets the method actors of --ray")

    def method_config(self) -> MethodConfig:
        names = {f.name for f in dataclasses.fields(MethodConfig)}
        return MethodConfig(**{n: getattr(self, n) for n in names})
