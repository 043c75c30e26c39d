"""Examples <-> Arrow rows of an index table.

A table holds ``id``, ``prompt``, ``response``, one flat column per metadata key (so that ``--where``
SQL filters such as ``task = 'x'`` work), ``metadata_extra`` (JSON of keys that did not fit the
columns) and ``vector`` (``fixed_size_list<float32>[dim]``). Column types are inferred from the first
chunk of examples; nested values (lists, dicts) are stored as JSON strings and decoded on read. A
column whose values mix strings with other types (kind ``text``) holds each string as it is, so that
``task = 'x'`` filters match, and any other value as its JSON text, with the typed value kept in
``metadata_extra`` so that it reads back unchanged.

Column names: a metadata key becomes a column only when the store can hold and filter it safely
(:func:`is_column_name`): not empty, at most 128 characters, no ``.`` (Lance reads it as a nested
field), no backtick (it breaks the SQL quoting) and no control character. Any other key is kept,
byte for byte, in ``metadata_extra``: every row still returns it, but ``--where`` and ``--group-by``
cannot name it. Nothing is renamed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

import numpy as np
import pyarrow as pa

from airsearch.data.example import Example
from airsearch.errors import InputError

VECTOR = "vector"
EXTRA = "metadata_extra"
RESERVED = frozenset({"id", "prompt", "response", VECTOR, EXTRA, "_rowid", "_distance", "_rowaddr"})

# column kind -> arrow type
_KINDS = {
    "bool": pa.bool_(),
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "json": pa.string(),
    "text": pa.string(),
}


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int) and not isinstance(value, bool):
        return "int" if -(2**63) <= value < 2**63 else "json"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "json"


MAX_COLUMN_NAME = 128


def not_a_column_hint(key: str) -> str:
    """Why metadata ``key`` cannot be filtered or grouped on, when it is one :func:`is_column_name`
    refuses (else ``""``)."""
    if is_column_name(key) or key in RESERVED:
        return ""
    return (
        f"metadata key {key!r} is not a column: keys that are empty, longer than {MAX_COLUMN_NAME} "
        "characters or hold '.', a backtick or a control character are kept byte for byte in "
        f"{EXTRA} (returned with every row) and cannot be filtered or grouped on; rename the key in "
        "the corpus to filter on it"
    )


def is_column_name(key: object) -> bool:
    """Whether metadata ``key`` can be a column (see the module docstring); others stay in ``metadata_extra``."""
    return (
        isinstance(key, str)
        and 0 < len(key) <= MAX_COLUMN_NAME
        and key not in RESERVED
        and not any(c in ".`" or ord(c) < 32 or ord(c) == 127 for c in key)
    )


def infer_columns(examples: Sequence[Example]) -> dict[str, str]:
    """Metadata column name -> kind (bool/int/float/str/json) from a sample of examples."""
    kinds: dict[str, set[str]] = {}
    for ex in examples:
        for key, value in ex.metadata.items():
            if not is_column_name(key):
                continue
            seen = kinds.setdefault(key, set())
            if value is not None:
                seen.add(_kind_of(value))
    out = {}
    for key, seen in kinds.items():
        if not seen:
            out[key] = "str"
        elif len(seen) == 1:
            out[key] = next(iter(seen))
        elif seen <= {"int", "float"}:
            out[key] = "float"
        else:
            out[key] = "text" if "str" in seen else "json"
    return out


def table_schema(columns: dict[str, str], dim: int, metadata: dict[str, str] | None = None) -> pa.Schema:
    fields = [pa.field("id", pa.string()), pa.field("prompt", pa.string()), pa.field("response", pa.string())]
    fields += [pa.field(name, _KINDS[kind]) for name, kind in columns.items()]
    fields += [pa.field(EXTRA, pa.string()), pa.field(VECTOR, pa.list_(pa.float32(), dim))]
    return pa.schema(fields, metadata={k.encode(): v.encode() for k, v in (metadata or {}).items()})


def _fits(kind: str, value: Any) -> bool:
    if kind in ("json", "text"):
        return True
    actual = _kind_of(value)
    return actual == kind or (kind == "float" and actual == "int")


def to_batch(
    examples: Sequence[Example],
    vectors: np.ndarray,
    schema: pa.Schema,
    columns: dict[str, str],
    method_arrays: dict[str, pa.Array] | None = None,
) -> pa.RecordBatch:
    """One record batch for ``examples`` and their ``vectors`` (``[n, dim]`` float32); ``method_arrays``
    holds the arrays of the schema's method columns (:mod:`airsearch.indexers.method_columns`)."""
    cols: dict[str, list[Any]] = {name: [] for name in columns}
    extra: list[str | None] = []
    for ex in examples:
        rest = {}
        for name, kind in columns.items():
            value = ex.metadata.get(name)
            if kind == "text" and value is not None and not isinstance(value, str):
                cols[name].append(json.dumps(value, default=str))  # filterable text ...
                rest[name] = value  # ... and the typed value, read back from metadata_extra
            elif value is None or _fits(kind, value):
                cols[name].append(
                    json.dumps(value, default=str) if kind == "json" and value is not None else value
                )
            else:
                cols[name].append(None)
                rest[name] = value
        rest.update({k: v for k, v in ex.metadata.items() if k not in columns})
        extra.append(json.dumps(rest, default=str) if rest else None)
    vec = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = schema.field(VECTOR).type.list_size
    arrays = [
        pa.array([e.id for e in examples], pa.string()),
        pa.array([e.prompt for e in examples], pa.string()),
        pa.array([e.response for e in examples], pa.string()),
        *[pa.array(cols[name], _KINDS[kind]) for name, kind in columns.items()],
        pa.array(extra, pa.string()),
        pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1), pa.float32()), dim),
    ]
    rest = schema.names[len(arrays) :]
    given = method_arrays or {}
    missing = [name for name in rest if name not in given]
    if missing:
        raise InputError(
            f"the table has method columns {missing}; rows added to it need their vectors too "
            "(give --lm, the LM the columns were built with)",
            field="lm",
        )
    arrays += [given[name] for name in rest]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def row_metadata(row: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """The metadata dict of a stored row (JSON columns decoded, ``metadata_extra`` merged back)."""
    meta: dict[str, Any] = {}
    for name, kind in columns.items():
        value = row.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value) and kind != "float"):
            continue
        meta[name] = json.loads(value) if kind == "json" else value
    if row.get(EXTRA):
        meta.update(json.loads(row[EXTRA]))
    return meta


def rows_to_examples(table: pa.Table, columns: dict[str, str]) -> list[Example]:
    return [
        Example(id=r["id"], prompt=r["prompt"], response=r["response"], metadata=row_metadata(r, columns))
        for r in table.to_pylist()
    ]


def vector_dim(schema: pa.Schema) -> int | None:
    """The dimension of the ``vector`` column of ``schema`` (``None`` when it has no fixed size)."""
    if VECTOR not in schema.names:
        return None
    kind = schema.field(VECTOR).type
    return kind.list_size if pa.types.is_fixed_size_list(kind) else None


def vectors_of(array: pa.Array | pa.ChunkedArray, dim: int) -> np.ndarray:
    """``[n, dim]`` float32 view of a fixed-size-list vector column."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if len(array) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    flat = array.flatten() if array.offset == 0 else array.values.slice(array.offset * dim, len(array) * dim)
    return flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)


def chunked(rows: Iterator[Example], size: int) -> Iterator[list[Example]]:
    """Lists of ``size`` rows (the last one shorter) from a stream of rows."""
    while chunk := list(islice(rows, size)):
        yield chunk
