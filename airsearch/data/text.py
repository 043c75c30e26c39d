"""Text corpus files: decoded in a stated encoding, told apart from binary files.

Text formats (JSONL, JSON, CSV/TSV, optionally gzipped) are decoded with a stated ``encoding``
(UTF-8 by default; a UTF-8 byte-order mark is skipped). A file whose first block holds NUL bytes is
not text and is refused whole, naming the file (a UTF-16/32 file, recognised by its byte-order mark,
is told to give its encoding). ASCII-compatible encodings are decoded line by line, so that one line
that is not text in the encoding is one bad row (:mod:`airsearch.data.readers`).
"""

from __future__ import annotations

import codecs
import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from airsearch.errors import InputError

DEFAULT_ENCODING = "utf-8"
TEXT_PROBE_BYTES = 8192  # the block looked at to tell text from binary
# byte-order marks of the encodings whose text holds NUL bytes (UTF-32 first: its LE mark starts
# with UTF-16's)
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def check_encoding(encoding: str) -> str:
    """The codec's canonical name; an unknown encoding is an :class:`InputError` naming ``encoding``."""
    try:
        return codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise InputError(
            f"unknown text encoding {encoding!r} (e.g. utf-8, latin-1, cp1252, utf-16)", field="encoding"
        ) from None


class TextFile:
    """A text corpus file (optionally gzipped) read in a stated encoding.

    Opening it checks that it is text: NUL bytes in its first block (:data:`TEXT_PROBE_BYTES`) mean a
    binary file, refused naming the path (UTF-16/32 files hold NULs and are exempt). ASCII-compatible
    encodings are decoded line by line, so one undecodable line is one bad row; UTF-16/32 files are
    decoded as one stream.
    """

    def __init__(self, path: Path, label: str, encoding: str = DEFAULT_ENCODING) -> None:
        self.path, self.label = path, label
        self.codec = check_encoding(encoding)
        self.encoding = encoding
        self.wide = self.codec.startswith(("utf-16", "utf-32"))
        with self.open_binary() as f:
            probe = self._read(f, TEXT_PROBE_BYTES)
        if b"\x00" in probe and not self.wide:
            wide = next((name for bom, name in _WIDE_BOMS if probe.startswith(bom)), None)
            if wide is not None:
                raise InputError(
                    f"this file is {wide} text (it starts with a {wide} byte-order mark); "
                    f"give its encoding: {wide.lower()}",
                    path=label,
                    field="encoding",
                )
            raise InputError(
                "not a text file (it holds NUL bytes); corpus files are JSON Lines, JSON, CSV or TSV "
                "text (optionally .gz), Parquet, or an HF dataset folder",
                path=label,
            )

    def open_binary(self) -> IO[bytes]:
        if self.path.name.lower().endswith(".gz"):
            return gzip.open(self.path, "rb")  # type: ignore[return-value]
        return open(self.path, "rb")  # noqa: SIM115

    def _read(self, f: IO[bytes], n: int = -1) -> bytes:
        try:
            return f.read(n)
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            raise InputError(f"not a readable gzip file ({exc})", path=self.label) from None

    def decode_error(self, exc: UnicodeDecodeError, where: str | None = None) -> str:
        """The problem with undecodable bytes: which byte and where (``at column N`` of the line)."""
        byte = exc.object[exc.start : exc.start + 1].hex()
        return (
            f"not {self.encoding} text (byte 0x{byte} {where or f'at column {exc.start + 1}'}); "
            "give the file's encoding (e.g. latin-1 or cp1252)"
        )

    def lines(self, *, errors: str = "strict") -> Iterator[tuple[int, str | None, str | None]]:
        """``(line number, text, None)`` per line, or ``(line number, None, problem)`` for a line that is
        not text in the encoding (with ``errors="strict"``; other ``errors`` modes decode every line)."""
        if self.wide:
            yield from self._wide_lines()
            return
        bom = codecs.BOM_UTF8 if self.codec == "utf-8" else b""
        with self.open_binary() as f:
            lineno = 0
            while True:
                try:
                    raw = f.readline()
                except (OSError, EOFError) as exc:
                    raise InputError(f"not a readable gzip file ({exc})", path=self.label) from None
                if not raw:
                    return
                lineno += 1
                if lineno == 1 and bom and raw.startswith(bom):
                    raw = raw[len(bom) :]
                try:
                    yield lineno, raw.decode(self.encoding, errors), None
                except UnicodeDecodeError as exc:
                    yield lineno, None, self.decode_error(exc)

    def _wide_lines(self) -> Iterator[tuple[int, str | None, str | None]]:
        with self.open_binary() as f:
            data = self._read(f)
        try:
            text = data.decode(self.encoding)
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count("\n".encode(self.encoding)) + 1
            raise InputError(self.decode_error(exc), path=self.label, line=line, field="encoding") from None
        for lineno, line in enumerate(text.lstrip("\ufeff").splitlines(keepends=True), start=1):
            yield lineno, line, None

    def read_all(self) -> str:
        """The whole file as text (a file that does not decode is refused, naming its line)."""
        parts = []
        for lineno, text, problem in self.lines():
            if problem is not None:
                raise InputError(problem, path=self.label, line=lineno, field="encoding")
            parts.append(text)
        return "".join(parts)


def undecodable_cell(source: TextFile, cell: str, column: str) -> str:
    """The decode problem of a CSV cell read with ``surrogateescape`` (its original bytes re-decoded)."""
    try:
        cell.encode(source.encoding, "surrogateescape").decode(source.encoding)
    except UnicodeDecodeError as exc:
        return source.decode_error(exc, f"in column {column!r}")
    return f"not {source.encoding} text (in column {column!r})"


def is_encodable(text: str) -> bool:
    """False when ``text`` holds a lone surrogate (``"\\ud800"`` in JSON), which no UTF-8 file or
    Arrow column can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
