"""Expected failures: each carries a message that says what is wrong and, structured, where.

The location is data, not text: ``field`` (a config field name, e.g. ``proj_dim``), ``path`` (a file
or folder), ``line`` (a 1-based line of ``path``) and ``row`` (a row id, or a 1-based row number
where a format has no lines). ``str(error)`` renders them one way everywhere::

    train.jsonl:12: row 'x': field 'response': must be a string
    field 'proj_dim': must be >= 0

The library never names a CLI flag; the CLI maps ``field`` to its flag when it prints
(:func:`airsearch.cli.common.handle_errors`). The CLI prints these without a traceback and exits
non-zero; any other exception is a bug.
"""

from __future__ import annotations

import os
from collections.abc import Callable


class AirsearchError(Exception):
    """Base class for every expected, user-facing failure."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        path: str | os.PathLike | None = None,
        line: int | None = None,
        row: int | str | None = None,
    ) -> None:
        self.message = message
        self.field = field
        self.path = os.fspath(path) if path is not None else None
        self.line = line
        self.row = row
        super().__init__(self.render())

    def location(self, field_label: Callable[[str], str] | None = None) -> str:
        """``path:line: row R: field 'f'`` with the parts that are set; ``field_label`` names the field
        (the CLI passes one that returns the option's flag)."""
        parts = []
        if self.path is not None:
            parts.append(f"{self.path}:{self.line}" if self.line is not None else self.path)
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.row is not None:
            parts.append(f"row {self.row!r}")
        if self.field is not None:
            parts.append(field_label(self.field) if field_label else f"field '{self.field}'")
        return ": ".join(parts)

    def render(self, field_label: Callable[[str], str] | None = None) -> str:
        """The message behind its location."""
        where = self.location(field_label)
        return f"{where}: {self.message}" if where else self.message

    def __str__(self) -> str:
        return self.render()

    def __reduce__(self) -> tuple:
        # keep the structured location across processes (runner workers pickle their failures)
        return (_restore, (type(self), self.message, self.field, self.path, self.line, self.row))


def _restore(
    cls: type[AirsearchError],
    message: str,
    field: str | None,
    path: str | None,
    line: int | None,
    row: int | str | None,
) -> AirsearchError:
    err = cls.__new__(cls)
    AirsearchError.__init__(err, message, field=field, path=path, line=line, row=row)
    return err


class InputError(AirsearchError):
    """Bad user input: a corpus row, a config value, a missing file."""


class FingerprintMismatch(AirsearchError):
    """An artefact was made by a different corpus, model, encoder or config than the one in use."""


class MissingDependency(AirsearchError):
    """An optional extra (faiss, ray, gguf) is needed but not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package; install it with: pip install 'airsearch[{extra}]'"
        )
