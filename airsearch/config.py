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
import os
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
    def from_dict(cls: type[C], data: dict[str, Any], *, path: str | os.PathLike | None = None) -> C:
        """Build and validate a config from plain values; ``path`` is the file they came from, if any
        (errors name it and the field)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown field(s) {unknown}; known fields: {sorted(names)}", path=path)
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for k, v in data.items():
            try:
                kwargs[k] = _coerce(v, hints.get(k))
            except (TypeError, ValueError):
                raise InputError(
                    f"expected {_type_name(hints.get(k))}, got {v!r}", field=k, path=path
                ) from None
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Subclasses raise :class:`InputError` with ``field=`` (see :func:`require`) when a value is out
        of range."""

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
            raise InputError("config file not found", path=path)
        try:
            data = (
                json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
            )
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise InputError(f"cannot parse config: {e}", path=path) from None
        if not isinstance(data, dict):
            raise InputError("config file must hold a mapping of field names to values", path=path)
        return cls.from_dict(data, path=path)

    def replace(self: C, **changes: Any) -> C:
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg


def require(cond: bool, field_name: str, message: str) -> None:
    """Validation helper: raise an :class:`InputError` with ``field=field_name`` unless ``cond``."""
    if not cond:
        raise InputError(message, field=field_name)


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as the field type ``hint`` (raises ``TypeError``/``ValueError`` when it cannot be)."""
    if value is None or hint is None:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0]) if len(non_none) == 1 else value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [value]
        inner = args[0] if args else None
        items = (_coerce(v, inner) for v in value)
        return tuple(items) if origin is tuple else list(items)
    if hint is bool and isinstance(value, str):
        return value.lower() in ("1", "true", "yes", "on")
    if hint in (int, float, str, bool):
        return hint(value)
    return value


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
