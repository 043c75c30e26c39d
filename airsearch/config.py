"""One config dataclass per command.

Each command's options are the fields of a :class:`CommandConfig` subclass. The same dataclass
gives the CLI its options (:func:`airsearch.cli.common.config_options`), is written beside every artefact so
that a run can be reproduced, and is read back from YAML or JSON with ``--config FILE``.

Fields carry their help text in ``field(metadata={"help": ...})``; optional ``"flag"`` names the CLI
option when it should differ from the field name and ``"cli": False`` hides a field from the CLI.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from airsearch.errors import InputError

C = TypeVar("C", bound="CommandConfig")


@dataclasses.dataclass
class CommandConfig:
    """Base class: serialisation and validation shared by every command's config."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], *, where: str = "config") -> C:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown field(s) {unknown}; known fields: {sorted(names)}", where=where)
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for k, v in data.items():
            kwargs[k] = _coerce(v, hints.get(k), where=f"{where}: field '{k}'")
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Subclasses raise :class:`InputError` naming the field when a value is out of range."""

    def save(self, path: str | Path) -> None:
        path = Path(path)
        text = (
            json.dumps(self.to_dict(), indent=2, default=str)
            if path.suffix == ".json"
            else yaml.safe_dump(self.to_dict(), sort_keys=False)
        )
        path.write_text(text)

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        path = Path(path)
        if not path.exists():
            raise InputError("config file not found", where=str(path))
        try:
            data = (
                json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
            )
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise InputError(f"cannot parse config: {e}", where=str(path)) from None
        if not isinstance(data, dict):
            raise InputError("config file must hold a mapping of field names to values", where=str(path))
        return cls.from_dict(data, where=str(path))

    def replace(self: C, **changes: Any) -> C:
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg


def require(cond: bool, field_name: str, message: str) -> None:
    """Validation helper: raise an :class:`InputError` naming the field."""
    if not cond:
        raise InputError(message, where=f"option '{field_name}'")


def _coerce(value: Any, hint: Any, *, where: str) -> Any:
    if value is None or hint is None:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], where=where) if len(non_none) == 1 else value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [value]
        inner = args[0] if args else None
        return (
            tuple(_coerce(v, inner, where=where) for v in value)
            if origin is tuple
            else [_coerce(v, inner, where=where) for v in value]
        )
    try:
        if hint is bool and isinstance(value, str):
            return value.lower() in ("1", "true", "yes", "on")
        if hint in (int, float, str, bool):
            return hint(value)
    except (TypeError, ValueError):
        raise InputError(f"expected {hint.__name__}, got {value!r}", where=where) from None
    return value
