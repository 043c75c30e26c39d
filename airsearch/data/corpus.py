"""Corpus input: read training rows from files or datasets into :class:`Example` objects.

Sources (:mod:`airsearch.data.readers`): JSONL, JSON, Parquet, CSV/TSV, an HF ``save_to_disk`` folder,
or an HF hub dataset name. Row shapes (:mod:`airsearch.data.shapes`): prompt+response,
instruction(+input)+output, inputs+targets, messages, text, or an explicit field mapping.

Ids: the ``id`` column (``id_field``) when a row has one (a string, or an integer turned into one);
otherwise the first 12 hex characters of a blake2b hash of the row's content, so that re-indexing the
same file, or the file with its rows reordered, gives every row the same id. Identical rows get
``<hash>-1``, ``<hash>-2``, ... in the order met. Two rows with the same explicit id are a bad input.

Bad rows are refused with an :class:`InputError` naming the file, line (or row) and field, unless
``skip_bad_rows`` is set: then they are recorded as :class:`SkippedRow` and the rest is read. A line
that is not text in the stated ``encoding``, and a value holding a lone surrogate (``"\\ud800"`` in
JSON, which no UTF-8 text or Arrow column can hold), are bad rows like any other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from airsearch.atomic import atomic_path
from airsearch.data.example import Example
from airsearch.data.readers import RawRow, iter_raw_rows, jsonable
from airsearch.data.shapes import FieldMapping, RowProblem, extract, metadata_of
from airsearch.data.text import DEFAULT_ENCODING, is_encodable
from airsearch.errors import InputError
from airsearch.fingerprint import DIGEST_CHARS

if TYPE_CHECKING:
    from typing_extensions import Unpack

ID_HEX_CHARS = 12
SKIP_HINT = " (use --skip-bad-rows / skip_bad_rows=True to skip bad rows)"
LOOKAHEAD_ROWS = 1000  # rows read past a first bad row to tell "some rows are bad" from "every row is"
FORMATS_DOC = "docs/usage/corpus-formats.md"
Sources = str | os.PathLike | Sequence[str | os.PathLike]


@dataclasses.dataclass(frozen=True)
class SkippedRow:
    """A bad row left out under ``skip_bad_rows``. ``line`` is the 1-based file line (JSONL, CSV) or
    the 1-based row number (JSON, Parquet, HF datasets); ``field`` is None when no field is to blame."""

    source: str
    line: int
    field: str | None
    reason: str


class CorpusHasher:
    """Order-independent content fingerprint of a set of examples (ids, prompts, responses, metadata).

    Each example is hashed on its own (blake2b-128); the fingerprint hashes the count and the sum of
    these digests mod 2**128, so it does not depend on row order or file paths, it can be computed
    while streaming, and the fingerprint of an appended table is ``merge`` of the two parts.
    """

    MOD = 1 << 128

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add(self, example: Example) -> None:
        payload = json.dumps(
            [example.id, example.prompt, example.response, example.metadata],
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
            default=str,
        )
        digest = hashlib.blake2b(payload.encode(), digest_size=16).digest()
        self.total = (self.total + int.from_bytes(digest, "little")) % self.MOD
        self.count += 1

    def merge(self, other: CorpusHasher) -> CorpusHasher:
        out = CorpusHasher()
        out.count, out.total = self.count + other.count, (self.total + other.total) % self.MOD
        return out

    def hexdigest(self) -> str:
        h = hashlib.blake2b(f"{self.count}:{self.total:032x}".encode(), digest_size=16)
        return h.hexdigest()[:DIGEST_CHARS]


def fingerprint_examples(examples: Iterable[Example]) -> str:
    """The corpus fingerprint (:class:`CorpusHasher`) of ``examples``."""
    hasher = CorpusHasher()
    for ex in examples:
        hasher.add(ex)
    return hasher.hexdigest()


@dataclasses.dataclass
class Corpus:
    """Examples read from one or more sources, with a content fingerprint and the rows skipped."""

    examples: list[Example]
    fingerprint: str
    skipped: list[SkippedRow] = dataclasses.field(default_factory=list)
    sources: list[str] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def by_id(self) -> dict[str, Example]:
        return {ex.id: ex for ex in self.examples}

    def skip_summary(self) -> dict[str, int]:
        """How many rows were skipped, by reason (``"field: reason"``), most common first."""
        counts = Counter(f"{s.field}: {s.reason}" if s.field else s.reason for s in self.skipped)
        return dict(counts.most_common())


def row_hash_id(row: dict[str, Any]) -> str:
    """The content id of a row without an id: 12 hex characters of blake2b over its JSON."""
    payload = json.dumps(jsonable(row), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(payload.encode(), digest_size=ID_HEX_CHARS // 2).hexdigest()


def _source_list(sources: Sources) -> list[str]:
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    out = [os.fspath(s) for s in sources]
    if not out:
        raise InputError("no corpus source given")
    return out


def iter_corpus(
    sources: Sources,
    *,
    prompt_field: str | None = None,
    response_field: str | None = None,
    id_field: str | None = "id",
    skip_bad_rows: bool = False,
    hub_split: str = "train",
    skipped: list[SkippedRow] | None = None,
    require_response: bool = True,
    encoding: str = DEFAULT_ENCODING,
    source_field: str | None = None,
) -> Iterator[Example]:
    """Stream the examples of ``sources`` (files are read lazily, in batches); see :func:`load_corpus`.

    Skipped rows (with ``skip_bad_rows``) are appended to ``skipped`` when a list is given. Raises
    :class:`InputError` at the end if no example was produced. ``source_field`` is the config field
    that named the sources (``queries``, ``targets``): an error about a whole file names it.
    """
    mapping = FieldMapping(prompt_field, response_field)
    labels = _source_list(sources)
    seen: set[str] = set()
    produced = n_skipped = 0
    for source in labels:
        rows = _raw_rows(source, hub_split, encoding, source_field)
        for raw in rows:
            try:
                ex = _read_row(raw, mapping, id_field, seen, require_response)
            except RowProblem as problem:
                if not skip_bad_rows:
                    hint = (
                        SKIP_HINT
                        if produced or _any_good(rows, mapping, id_field, seen, require_response)
                        else (
                            f" (no row read is usable: check the row shape or map the columns with "
                            f"--prompt-field/--response-field; accepted shapes: {FORMATS_DOC})"
                        )
                    )
                    raise InputError(problem.reason + hint, field=problem.field, **raw.location()) from None
                n_skipped += 1
                if skipped is not None:
                    skipped.append(SkippedRow(raw.source, raw.line, problem.field, problem.reason))
                continue
            produced += 1
            yield ex
    if not produced:
        what = f"all {n_skipped} rows were bad and skipped" if n_skipped else "no rows"
        raise InputError(f"empty corpus: {what}", path=", ".join(labels), field=source_field)


def _read_row(
    raw: RawRow, mapping: FieldMapping, id_field: str | None, seen: set[str], require_response: bool
) -> Example:
    if raw.error is not None:
        raise RowProblem(raw.error, raw.error_field)
    return _example(raw.row, mapping, id_field, seen, require_response)  # type: ignore[arg-type]


def _any_good(
    rows: Iterator[RawRow],
    mapping: FieldMapping,
    id_field: str | None,
    seen: set[str],
    require_response: bool,
) -> bool:
    """Whether any of the next :data:`LOOKAHEAD_ROWS` rows reads (so that skipping bad rows would leave
    a corpus); called only on the way to refusing the first row, so consuming ``rows`` is harmless."""
    for raw in itertools.islice(rows, LOOKAHEAD_ROWS):
        try:
            _read_row(raw, mapping, id_field, seen, require_response)
            return True
        except (RowProblem, InputError):
            continue
    return False


def _raw_rows(source: str, hub_split: str, encoding: str, source_field: str | None) -> Iterator[RawRow]:
    """The raw rows of one source; an error about the whole file names ``source_field``."""
    try:
        yield from iter_raw_rows(source, hub_split=hub_split, encoding=encoding)
    except InputError as e:
        if source_field is None or e.field is not None or e.line is not None or e.row is not None:
            raise
        raise InputError(e.message, field=source_field, path=e.path) from None


def _example(
    row: dict[str, Any], mapping: FieldMapping, id_field: str | None, seen: set[str], require_response: bool
) -> Example:
    _check_encodable(row)
    prompt, response, consumed = extract(row, mapping, require_response=require_response)
    explicit = row.get(id_field) if id_field else None
    if id_field:
        consumed = consumed | {id_field}
    if explicit is not None:
        if isinstance(explicit, bool) or not isinstance(explicit, (str, int)):
            raise RowProblem(f"id must be a string or an integer, got {type(explicit).__name__}", id_field)
        ex_id = str(explicit)  # byte for byte: spaces are part of an id
        if not ex_id.strip():
            raise RowProblem("id is empty", id_field)
        if ex_id in seen:
            raise RowProblem(f"duplicate id '{ex_id}' (an earlier row has the same id)", id_field)
    else:
        base = ex_id = row_hash_id(row)
        k = 0
        while ex_id in seen:
            k += 1
            ex_id = f"{base}-{k}"
    seen.add(ex_id)
    return Example(ex_id, prompt, response, metadata_of(row, consumed))


def _check_encodable(value: Any, field: str | None = None) -> None:
    """Refuse a row holding a string that cannot be UTF-8 encoded (a lone surrogate), naming its field."""
    if isinstance(value, str):
        if not is_encodable(value):
            bad = next(c for c in value if not is_encodable(c))
            raise RowProblem(f"text holds a lone surrogate ({ascii(bad)}), which is not valid Unicode", field)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_encodable(key, field)
            _check_encodable(item, field or str(key))
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_encodable(item, field)


class ReadOptions(TypedDict, total=False):
    """The keyword options of :func:`iter_corpus` that :func:`load_corpus` and :func:`load_queries` pass on
    (defaults: those of :func:`iter_corpus`)."""

    prompt_field: str | None
    response_field: str | None
    id_field: str | None
    skip_bad_rows: bool
    hub_split: str
    encoding: str
    source_field: str | None


def load_corpus(sources: Sources, *, require_response: bool = True, **options: Unpack[ReadOptions]) -> Corpus:
    """Read every example of ``sources`` (one path or name, or several) into a :class:`Corpus`.

    The options (:class:`ReadOptions`, the keywords of :func:`iter_corpus`): ``prompt_field`` /
    ``response_field`` override row-shape detection; ``id_field`` names the id column (None: always
    derive content ids); ``hub_split`` picks the split of an HF dataset;
    ``require_response=False`` accepts rows without a response (queries, targets); ``encoding`` is
    the text encoding of JSONL, JSON and CSV/TSV files (UTF-8 by default); ``source_field`` names the
    config field that gave the sources in errors about a whole file (see :func:`iter_corpus`).
    """
    skipped: list[SkippedRow] = []
    labels = _source_list(sources)
    examples = list(iter_corpus(labels, skipped=skipped, require_response=require_response, **options))
    return Corpus(examples, fingerprint_examples(examples), skipped, labels)


def load_queries(source: Sources, **options: Unpack[ReadOptions]) -> Corpus:
    """Read query (test) examples: :func:`load_corpus` with the response optional."""
    return load_corpus(source, **options, require_response=False)


def write_rows(path: str | os.PathLike, rows: Iterable[dict[str, Any] | Example]) -> Path:
    """Write rows (dicts or Examples) atomically to ``.jsonl`` or ``.parquet``; returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".parquet"):
        raise InputError("export format must be .jsonl or .parquet", path=path)
    it = (r.to_row() if isinstance(r, Example) else r for r in rows)
    with atomic_path(path) as tmp:
        if suffix == ".jsonl":
            with open(tmp, "w", encoding="utf-8") as f:
                for row in it:
                    f.write(json.dumps(jsonable(row), ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
        else:
            _write_parquet(tmp, [jsonable(r) for r in it], path=path)
    return path


def _write_parquet(tmp: Path, rows: list[dict[str, Any]], *, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    arrays = {}
    for col in columns:
        try:
            arrays[col] = pa.array([row.get(col) for row in rows])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InputError(
                f"column '{col}' mixes value types that Parquet cannot hold ({exc}); "
                "export to .jsonl instead",
                path=path,
            ) from None
    pq.write_table(pa.table(arrays) if arrays else pa.table({}), tmp)
