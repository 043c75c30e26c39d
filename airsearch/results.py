"""Typed results: every public function behind a command returns a frozen dataclass.

Each result class is ``@dataclass(frozen=True)`` and derives from :class:`Result`, which gives it
``to_dict()``: the JSON that the command's ``--json`` prints (nested results, paths, tuples and
numpy values become plain JSON values). The CLI prints its human summary from the attributes.

A field declared with :func:`omitted_when_none` is left out of ``to_dict()`` while it is ``None``, so
optional parts of a result keep the JSON shape they had as dicts.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

_OMIT_NONE = "omit_none"


class Result:
    """Mixin for frozen result dataclasses: ``to_dict()`` for ``--json``."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.metadata.get(_OMIT_NONE):
                continue
            out[f.name] = to_jsonable(value)
        return out


def omitted_when_none(default: Any = None) -> Any:
    """A result field that ``to_dict()`` leaves out while it is ``None``."""
    return dataclasses.field(default=default, metadata={_OMIT_NONE: True})


def to_jsonable(value: Any) -> Any:
    """Plain JSON values (dict, list, str, numbers, bool, None) for a result or any part of one."""
    if isinstance(value, Result):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, tensors
        return value.tolist()
    return value
