"""Shared CLI plumbing: options generated from config dataclasses, error handling, JSON output."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from airsearch.config import CommandConfig
from airsearch.errors import AirsearchError


def _click_type(hint: Any) -> tuple[Any, bool, bool]:
    """(click type, multiple, is_flag) for a dataclass field type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        return _click_type(non_none[0]) if len(non_none) == 1 else (str, False, False)
    if origin in (tuple, list):
        inner, _, _ = _click_type(args[0]) if args else (str, False, False)
        return inner, True, False
    if typing.get_origin(hint) is typing.Literal:
        return click.Choice([str(a) for a in args]), False, False
    if hint is bool:
        return bool, False, True
    if hint in (int, float, str):
        return hint, False, False
    return str, False, False


def config_options(config_cls: type[CommandConfig], *, skip: tuple[str, ...] = ()) -> Callable:
    """Decorate a click command with one option per field of ``config_cls`` and ``--config FILE``.

    The wrapped function receives ``config=<config_cls instance>``: values from ``--config`` first,
    then every option the user gave explicitly on the command line.
    """
    hints = typing.get_type_hints(config_cls)
    fields = [f for f in dataclasses.fields(config_cls) if f.metadata.get("cli", True) and f.name not in skip]

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            config_file = kwargs.pop("config_file", None)
            base = config_cls.load(config_file).to_dict() if config_file else {}
            for f in fields:
                value = kwargs.pop(f.name)
                explicit = ctx.get_parameter_source(f.name) not in (
                    click.core.ParameterSource.DEFAULT,
                    click.core.ParameterSource.DEFAULT_MAP,
                    None,
                )
                if explicit or f.name not in base:
                    if isinstance(value, tuple) and not value and f.name in base:
                        continue
                    base[f.name] = list(value) if isinstance(value, tuple) else value
            kwargs["config"] = config_cls.from_dict(base, where="options")
            return fn(*args, **kwargs)

        for f in reversed(fields):
            ctype, multiple, is_flag = _click_type(hints[f.name])
            flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
            decls = [flag] if isinstance(flag, str) else list(flag)
            default = (
                f.default
                if f.default is not dataclasses.MISSING
                else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            )
            opts: dict[str, Any] = {
                "help": f.metadata.get("help", ""),
                "show_default": default not in (None, (), []),
            }
            if is_flag:
                if "/" not in decls[0]:
                    decls[0] = f"{decls[0]}/--no-{decls[0][2:]}"
                opts.update(is_flag=True, default=bool(default))
            else:
                opts.update(
                    type=ctype,
                    multiple=multiple,
                    default=tuple(default) if multiple and default is not None else default,
                )
            wrapper = click.option(*decls, f.name, **opts)(wrapper)
        wrapper = click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False),
            help="YAML/JSON file with this command's options; flags override it.",
        )(wrapper)
        return wrapper

    return decorate


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON to stdout.")


def handle_errors(fn: Callable) -> Callable:
    """Turn expected failures into a one-line message on stderr and a non-zero exit, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AirsearchError as e:
            click.secho(f"error: {e}", fg="red", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.secho("interrupted; finished work is kept, rerun the same command to resume", err=True)
            sys.exit(130)

    return wrapper


def emit(result: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    """Print ``result`` as JSON (``--json``) or as the human summary ``human(result)``."""
    if as_json:
        click.echo(json.dumps(result, indent=2, default=_json_default))
    else:
        click.echo(human(result) if human else json.dumps(result, indent=2, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    return str(o)
