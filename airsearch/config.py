"""One config dataclass per command.

Each command's options are the fields of a :class:`CommandConfig` subclass. The same dataclass
gives the CLI its options (:func:`airsearch.cli.common.config_options`), is written beside every artefact so
that a run can be reproduced, and is read back from YAML or JSON with ``--config FILE``.

Fields carry their help text in ``field(metadata={"help": ...})``; optional ``"flag"`` names the CLI
option when it should differ from the field name and ``"cli": False`` hides a field from the options
(a command may fill it from a positional argument of the same name instead); ``"late": True`` lists
the option after the command's own (an option group several configs inherit).

A field whose type is another :class:`CommandConfig` and whose metadata says ``"flatten": True`` is a
*nested* config (a command's ``MethodConfig``): its fields are the command's flags too (except those
in ``"skip"`` and those the command has itself), a config file may give them flat or under the field's
name, :meth:`~CommandConfig.to_dict` writes them nested, and the command's config reads them as its
own attributes (``cfg.beta`` is ``cfg.method_config.beta``); :meth:`~CommandConfig.replace` routes
them to the nested config.

A config validates itself: ``__post_init__`` calls :meth:`CommandConfig.validate`, so constructing,
:meth:`~CommandConfig.replace` and :meth:`~CommandConfig.from_dict` all refuse an invalid value with an
:class:`~airsearch.errors.InputError` naming the field, and a config that exists is valid. Subclasses
are ``kw_only`` dataclasses; a required field has no default (never an empty string).

One vocabulary: the corpus is ``corpus`` (a list of files or sources), the target LM folder ``lm``,
the model before fine-tuning ``base_lm``, fine-tuned checkpoints ``checkpoints``, the JL projection
dimension ``proj_dim`` and a LoRA rank ``lora_rank``. A repeatable option is spelled in the singular
(``--checkpoint``, ``--method``, ``--id``). Configs saved with the old spellings
(:data:`RENAMED_FIELDS`) still load, with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
import warnings
from pathlib import Path
from typing import Any, TypeVar

import yaml

from airsearch.config_file import MAX_CONFIG_BYTES, ConfigTooLarge, parse_config_text
from airsearch.errors import InputError

C = TypeVar("C", bound="CommandConfig")


# Old field spellings -> today's names (one table for every config). A saved config using an old
# name still loads, with a DeprecationWarning; a name is renamed only in configs that have the new
# field and not the old one.
RENAMED_FIELDS: dict[str, str] = {
    "sources": "corpus",
    "model": "lm",
    "base_model": "base_lm",
    "checkpoint": "checkpoints",
    "projection_dim": "proj_dim",
    "proj_seed": "seed",
    "lora": "lora_rank",
    "lora_r": "lora_rank",
    "teacher_checkpoint": "teacher_checkpoints",
    "teacher_base_model": "teacher_base_lm",
}


class _ConfigMeta(type):
    """Lets a config be constructed with a nested config's flattened fields as keywords
    (``QueryConfig(db=..., rerank="dda", beta=0.5)``): they go to the nested config."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        nested = flattened_fields(cls) if dataclasses.is_dataclass(cls) else {}
        if nested:
            hints = typing.get_type_hints(cls)
            for outer, inner_names in nested.items():
                flat = {k: kwargs.pop(k) for k in list(kwargs) if k in inner_names}
                given = kwargs.get(outer)
                if isinstance(given, dict):
                    flat = {**given, **flat}
                    given = None
                if flat:
                    kwargs[outer] = given.replace(**flat) if given is not None else hints[outer](**flat)
        return super().__call__(*args, **kwargs)


@dataclasses.dataclass
class CommandConfig(metaclass=_ConfigMeta):
    """Base class: serialisation and validation shared by every command's config."""

    def __post_init__(self) -> None:
        self.validate()

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: a flattened field of a nested config
        for outer, inner_names in flattened_fields(type(self)).items():
            inner = self.__dict__.get(outer)
            if inner is not None and name in inner_names:
                return getattr(inner, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def validate(self) -> None:
        """Subclasses raise :class:`InputError` with ``field=`` (see :func:`require`) when a value is out
        of range; called by ``__post_init__``, so every constructed config is valid."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = (
                v.to_dict() if isinstance(v, CommandConfig) else list(v) if isinstance(v, tuple) else v
            )
        return out

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], *, path: str | os.PathLike | None = None) -> C:
        """Build and validate a config from plain values; ``path`` is the file they came from, if any
        (errors name it and the field). Old field spellings are renamed, with a warning."""
        data = nest_flattened(cls, renamed_fields(cls, data, path=path))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown field(s) {unknown}; known fields: {sorted(names)}", path=path)
        missing = [name for name in required_fields(cls) if data.get(name) is None]
        if missing:
            also = f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else ""
            raise InputError(f"is required{also}", field=missing[0], path=path)
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for k, v in data.items():
            try:
                kwargs[k] = _coerce(v, hints.get(k))
            except (TypeError, ValueError):
                raise InputError(
                    f"expected {_type_name(hints.get(k))}, got {v!r}", field=k, path=path
                ) from None
        for f in flattened_fields(cls):
            if isinstance(kwargs.get(f), dict):
                kwargs[f] = hints[f].from_dict(kwargs[f], path=path)
        return cls(**kwargs)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        text = (
            json.dumps(self.to_dict(), indent=2, default=str)
            if path.suffix == ".json"
            else yaml.safe_dump(self.to_dict(), sort_keys=False)
        )
        path.write_text(text)

    @classmethod
    def read_file(cls, path: str | Path) -> dict[str, Any]:
        """The field values a YAML/JSON config file holds (old spellings renamed), not yet validated:
        command-line flags may still add to them before :meth:`from_dict`."""
        path = Path(path)
        if not path.exists():
            raise InputError("config file not found", path=path)
        if path.is_dir():
            raise InputError("is a folder, not a config file", path=path)
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise InputError(
                f"config file is over {MAX_CONFIG_BYTES:,} bytes; a config is a short mapping", path=path
            )
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read config: {getattr(e, 'strerror', None) or e}", path=path) from None
        try:
            data = parse_config_text(text, json_format=path.suffix == ".json")
        except ConfigTooLarge as e:
            raise InputError(str(e), path=path) from None
        except json.JSONDecodeError as e:
            raise InputError(
                f"cannot parse config: {e.msg} at column {e.colno}", path=path, line=e.lineno
            ) from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            what = getattr(e, "problem", None) or " ".join(str(e).split())
            line = mark.line + 1 if mark is not None else None
            raise InputError(f"cannot parse config: {what}", path=path, line=line) from None
        if not isinstance(data, dict):
            raise InputError("config file must hold a mapping of field names to values", path=path)
        return renamed_fields(cls, data, path=path)

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        return cls.from_dict(cls.read_file(path), path=path)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes``, validated like any new config (a flattened field's change goes to
        its nested config)."""
        for outer, inner_names in flattened_fields(type(self)).items():
            inner = {k: changes.pop(k) for k in list(changes) if k in inner_names}
            if inner:
                changes[outer] = changes.get(outer, getattr(self, outer)).replace(**inner)
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(kw_only=True)
class CorpusReadOptions(CommandConfig):
    """How a command reads its corpus's rows: the same four options on every command that indexes or
    scores a corpus, so one file gives the same ids and texts everywhere (docs/usage/corpus-formats.md).
    Listed after the command's own options."""

    prompt_field: str | None = dataclasses.field(
        default=None, metadata={"late": True, "help": "column holding the prompt (default: detect the shape)"}
    )
    response_field: str | None = dataclasses.field(
        default=None, metadata={"late": True, "help": "column holding the response"}
    )
    id_field: str = dataclasses.field(
        default="id",
        metadata={"late": True, "help": "column holding row ids (rows without one get content ids)"},
    )
    skip_bad_rows: bool = dataclasses.field(
        default=False, metadata={"late": True, "help": "skip unreadable rows and report them"}
    )

    def read_options(self) -> dict[str, Any]:
        """These options as keywords of :func:`airsearch.data.corpus.load_corpus`."""
        return {
            "prompt_field": self.prompt_field,
            "response_field": self.response_field,
            "id_field": self.id_field or None,
            "skip_bad_rows": self.skip_bad_rows,
        }


def flattened_fields(cls: type) -> dict[str, tuple[str, ...]]:
    """``{nested field: the names of its fields that ``cls`` flattens}`` (the fields marked
    ``"flatten": True``; a nested field in the field's ``"skip"`` or named like one of ``cls``'s own
    fields stays inside)."""
    cached = _FLATTENED.get(cls)
    if cached is not None:
        return cached
    own = {f.name for f in dataclasses.fields(cls)}
    marked = [f for f in dataclasses.fields(cls) if f.metadata.get("flatten")]
    hints = typing.get_type_hints(cls) if marked else {}
    out: dict[str, tuple[str, ...]] = {}
    for f in marked:
        skip = set(f.metadata.get("skip", ())) | own
        out[f.name] = tuple(g.name for g in dataclasses.fields(hints[f.name]) if g.name not in skip)
    _FLATTENED[cls] = out
    return out


_FLATTENED: dict[type, dict[str, tuple[str, ...]]] = {}


def nest_flattened(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the flat values of nested configs' fields moved under their nested field (merged
    over a nested mapping given there; the flat value wins)."""
    out = dict(data)
    for outer, inner_names in flattened_fields(cls).items():
        flat = {k: out.pop(k) for k in list(out) if k in inner_names}
        if flat:
            nested = out.get(outer)
            if isinstance(nested, CommandConfig):
                nested = nested.to_dict()
            out[outer] = {**(nested if isinstance(nested, dict) else {}), **flat}
    return out


def required_fields(cls: type[CommandConfig]) -> list[str]:
    """Fields of ``cls`` without a default (the ones a config file or the flags must give)."""
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


def field_defaults(cls: type[CommandConfig]) -> dict[str, Any]:
    """The default value of every field of ``cls`` that has one."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = list(f.default) if isinstance(f.default, tuple) else f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def renamed_fields(
    cls: type[CommandConfig], data: dict[str, Any], *, path: str | os.PathLike | None = None
) -> dict[str, Any]:
    """``data`` with every old field spelling of :data:`RENAMED_FIELDS` replaced by today's name.

    Each rename warns with a :class:`DeprecationWarning`; giving both spellings is an :class:`InputError`.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    names |= {n for inner in flattened_fields(cls).values() for n in inner}
    out = dict(data)
    for old, new in RENAMED_FIELDS.items():
        if old not in out or old in names or new not in names:
            continue
        if new in out:
            raise InputError(
                f"both '{old}' (the old spelling) and '{new}' are given; keep '{new}'", field=new, path=path
            )
        where = f"{os.fspath(path)}: " if path is not None else ""
        warnings.warn(
            f"{where}field '{old}' is now called '{new}'; the old spelling is still read but will be removed",
            DeprecationWarning,
            stacklevel=3,
        )
        out[new] = out.pop(old)
    return out


def require(cond: bool, field_name: str, message: str) -> None:
    """Validation helper: raise an :class:`InputError` with ``field=field_name`` unless ``cond``."""
    if not cond:
        raise InputError(message, field=field_name)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as the field type ``hint``, strictly: nothing is lost on the way (``1.5`` is not an
    int, ``[1, 2]`` not a string, ``"maybe"`` not a bool). Raises ``TypeError``/``ValueError``."""
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
        if not isinstance(value, (list, tuple)):
            raise TypeError(value)
        inner = args[0] if args else None
        items = (_coerce(v, inner) for v in value)
        return tuple(items) if origin is tuple else list(items)
    if origin is typing.Literal:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise TypeError(value)
    if hint is int:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if isinstance(value, (int, float)) or (
            isinstance(value, str) and value.strip().lstrip("+-").isdigit()
        ):
            return int(value)
        raise TypeError(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(value)
        return float(value)
    if hint is str:
        if isinstance(value, (dict, list, tuple, set, bool)) or value is None:
            raise TypeError(value)
        return str(value)
    return value


def coerce_value(value: Any, hint: Any) -> Any:
    """``value`` (a string from a spec or a flag) as the field type ``hint``, strictly; raises
    :class:`InputError` naming the expected type (the caller adds the field)."""
    try:
        return _coerce(value, hint)
    except (TypeError, ValueError):
        raise InputError(f"must be a {_type_name(hint)}, got {value!r}") from None


def _type_name(hint: Any) -> str:
    origin_args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(origin_args) == 1:
        hint = origin_args[0]
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
