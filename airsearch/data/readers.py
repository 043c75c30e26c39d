"""Raw rows from corpus sources: JSONL, JSON, Parquet, CSV/TSV, HF ``save_to_disk`` folders, HF hub.

Every reader yields :class:`RawRow` lazily (JSON excepted: one document is parsed whole). A row that
cannot be read (invalid JSON, not an object, ragged CSV line, bytes that are not text in the stated
encoding) comes back with ``error`` set instead of raising, so that the caller decides between refusing
and skipping. Locations are 1-based: the line for JSONL and CSV (the line where the record starts), the
row number for JSON, Parquet and HF datasets.

Text formats are decoded in a stated encoding and binary files are refused
(:mod:`airsearch.data.text`).
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime
import decimal
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airsearch.data.text import DEFAULT_ENCODING, TextFile, is_encodable, undecodable_cell
from airsearch.errors import InputError

PARQUET_BATCH_ROWS = 1024
HF_BATCH_ROWS = 1024
JSON_ROW_KEYS = ("data", "rows", "examples", "instances", "train", "items", "records")
HUB_PREFIXES = ("hf:", "hub:", "hf://")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
}


@dataclasses.dataclass(frozen=True)
class RawRow:
    """One row as read, before its shape is interpreted."""

    source: str
    line: int
    by_line: bool  # True: ``line`` is a file line (JSONL, CSV); False: a 1-based row number
    row: dict[str, Any] | None
    error: str | None = None
    error_field: str | None = None  # the config field to blame for ``error`` (``encoding``), if any

    def location(self) -> dict[str, Any]:
        """Where this row is, as :class:`~airsearch.errors.AirsearchError` keywords (``path`` and
        ``line`` or ``row``)."""
        return {"path": self.source, "line" if self.by_line else "row": self.line}


def jsonable(value: Any) -> Any:
    """A JSON-serialisable copy of a cell value (numpy/arrow scalars, dates, bytes, nested values)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return jsonable(value.tolist())
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def detect_format(path: Path) -> str:
    """``jsonl | json | parquet | csv | tsv | hf_disk`` from the path (``.gz`` allowed on text formats)."""
    if path.is_dir():
        return "hf_disk"
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    fmt = _FORMATS.get(Path(name).suffix)
    if fmt is None or (fmt == "parquet" and path.name.lower().endswith(".gz")):
        raise InputError(
            f"unknown corpus format '{path.suffix}': use .jsonl, .json, .parquet, .csv, "
            ".tsv (text formats may be .gz), an HF save_to_disk folder, or an HF hub name",
            path=path,
        )
    return fmt


def iter_raw_rows(
    source: str | Path, *, hub_split: str = "train", encoding: str = DEFAULT_ENCODING
) -> Iterator[RawRow]:
    """Rows of one source: a file, an HF ``save_to_disk`` folder, or an HF hub dataset name.

    Text files are decoded as ``encoding``."""
    text = str(source)
    path = Path(text).expanduser()
    if text.startswith(HUB_PREFIXES):
        yield from _hub_rows(text.split(":", 1)[1].lstrip("/"), hub_split)
        return
    if not path.exists():
        if Path(text).suffix.lower() not in _FORMATS and _HUB_NAME.match(text):
            yield from _hub_rows(text, hub_split, missing_path=True)
            return
        raise InputError("file not found", path=text)
    if path.is_file():
        try:
            open(path, "rb").close()  # noqa: SIM115 - an unreadable file is refused here, in one line
        except OSError as e:
            raise InputError(f"cannot read this file: {e.strerror or e}", path=text) from None
    fmt = detect_format(path)
    if fmt == "parquet":
        yield from _parquet_rows(path, text)
    elif fmt == "hf_disk":
        yield from _hf_disk_rows(path, text, hub_split)
    else:
        text_file = TextFile(path, text, encoding)
        yield from {"jsonl": _jsonl_rows, "json": _json_rows}.get(fmt, _csv_rows)(text_file)


def estimate_rows(source: str | Path, *, hub_split: str = "train") -> int | None:
    """About how many rows a source holds, cheaply (for plans and progress totals): lines of JSONL,
    CSV and TSV files (the header and blank lines left out), a Parquet file's row count, an HF
    folder's ``num_rows``; ``None`` when it cannot tell (JSON documents, hub names, unreadable files)."""
    path = Path(str(source)).expanduser()
    if str(source).startswith(HUB_PREFIXES) or not path.exists():
        return None
    try:
        fmt = detect_format(path)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        if fmt == "hf_disk":
            import datasets

            ds = _pick_split(datasets.load_from_disk(str(path)), hub_split, str(source))
            return int(ds.num_rows)
        if fmt == "json":
            return None
        with TextFile(path, str(source)).open_binary() as f:
            lines = sum(1 for line in f if line.strip())
        return max(lines - (1 if fmt in ("csv", "tsv") else 0), 0)
    except Exception:  # noqa: BLE001 - an estimate only: reading the rows reports the real problem
        return None


def json_problem(exc: json.JSONDecodeError) -> str:
    """``invalid JSON (<what> at column N)``; json's own message may end in "at" already ("Unterminated
    string starting at"), which is not said twice."""
    return f"invalid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})"


def _parse_line(text: str, lineno: int, label: str) -> RawRow:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return RawRow(label, lineno, True, None, json_problem(exc))
    if not isinstance(obj, dict):
        return RawRow(label, lineno, True, None, f"not a JSON object (got {type(obj).__name__})")
    return RawRow(label, lineno, True, obj)


def _jsonl_rows(source: TextFile) -> Iterator[RawRow]:
    for lineno, text, problem in source.lines():
        if problem is not None:
            yield RawRow(source.label, lineno, True, None, problem, "encoding")
        elif text.strip():  # type: ignore[union-attr]
            yield _parse_line(text, lineno, source.label)  # type: ignore[arg-type]


def _json_rows(source: TextFile) -> Iterator[RawRow]:
    label = source.label
    try:
        doc = json.loads(source.read_all())
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # JSON Lines saved as .json
            yield from _jsonl_rows(source)
            return
        raise InputError(json_problem(exc), path=label, line=exc.lineno) from None
    rows = doc
    if isinstance(doc, dict):
        key = next((k for k in JSON_ROW_KEYS if isinstance(doc.get(k), list)), None)
        lists = [k for k, v in doc.items() if isinstance(v, list)]
        if key is None and len(lists) == 1:
            key = lists[0]
        if key is None:
            raise InputError(
                "a JSON corpus must be a list of rows or an object holding one list of rows "
                f"(under a key such as 'data'); found keys {sorted(doc)[:10]}",
                path=label,
            )
        rows = doc[key]
    if not isinstance(rows, list):
        raise InputError(f"a JSON corpus must be a list of rows, got {type(doc).__name__}", path=label)
    for i, obj in enumerate(rows, start=1):
        if isinstance(obj, dict):
            yield RawRow(label, i, False, obj)
        else:
            yield RawRow(label, i, False, None, f"not a JSON object (got {type(obj).__name__})")


def _parquet_rows(path: Path, label: str) -> Iterator[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read Parquet file: {exc}", path=label) from None
    n = 0
    for batch in pfile.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        for obj in batch.to_pylist():
            n += 1
            yield RawRow(label, n, False, obj)


def _csv_rows(source: TextFile) -> Iterator[RawRow]:
    label = source.label
    delimiter = "\t" if ".tsv" in source.path.name.lower() else ","
    # undecodable bytes become lone surrogates (surrogateescape) so that a quoted cell may span lines;
    # a row holding one is reported as not text in the encoding
    lines = (text for _, text, _ in source.lines(errors="surrogateescape"))
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("empty CSV file (no header line)", path=label) from None
    except csv.Error as exc:
        raise InputError(f"malformed CSV header: {exc}", path=label, line=1) from None
    if not all(is_encodable(c) for c in header):
        raise InputError(
            f"the CSV header is not {source.encoding} text; give the file's encoding",
            path=label,
            line=1,
            field="encoding",
        )
    if len(set(header)) != len(header) or not all(header):
        raise InputError(f"CSV header has empty or repeated column names: {header}", path=label, line=1)
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RawRow(label, start, True, None, f"malformed CSV ({exc})")
            continue
        if not cells:
            continue
        if len(cells) != len(header):
            yield RawRow(
                label, start, True, None, f"row has {len(cells)} fields but the header has {len(header)}"
            )
            continue
        bad = next((i for i, c in enumerate(cells) if not is_encodable(c)), None)
        if bad is not None:
            problem = undecodable_cell(source, cells[bad], header[bad])
            yield RawRow(label, start, True, None, problem, "encoding")
            continue
        yield RawRow(label, start, True, dict(zip(header, cells, strict=True)))


def _pick_split(ds: Any, split: str, label: str) -> Any:
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise InputError(f"split '{split}' not found; available: {sorted(ds)}", path=label)
        return ds[split]
    return ds


def _dataset_rows(ds: Any, label: str) -> Iterator[RawRow]:
    n = 0
    for batch in ds.iter(batch_size=HF_BATCH_ROWS):
        columns = list(batch)
        for values in zip(*(batch[c] for c in columns), strict=True):
            n += 1
            yield RawRow(label, n, False, dict(zip(columns, values, strict=True)))


def _hf_disk_rows(path: Path, label: str, split: str) -> Iterator[RawRow]:
    if not any((path / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
        raise InputError(
            "a corpus folder must be an HF datasets save_to_disk folder "
            "(with dataset_info.json or dataset_dict.json)",
            path=label,
        )
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - any load failure is a bad input here
        raise InputError(f"cannot load HF dataset folder: {exc}", path=label) from None
    yield from _dataset_rows(_pick_split(ds, split, label), label)


def _hub_rows(name: str, split: str, missing_path: bool = False) -> Iterator[RawRow]:
    label = f"hf:{name}[{split}]"
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # noqa: BLE001 - offline, unknown name, no such split
        lead = "no such file or folder, and " if missing_path else ""
        raise InputError(
            f"{lead}loading it as an HF hub dataset (split '{split}') failed: "
            f"{type(exc).__name__}: {exc}".strip(),
            path=name,
        ) from None
    yield from _dataset_rows(ds, label)
