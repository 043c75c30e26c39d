"""Shared CLI plumbing: options generated from config dataclasses, error handling, JSON output.

Library errors name config fields (``AirsearchError.field``); :func:`handle_errors` prints the
command's flag for the field instead (``--proj-dim``), from the same field metadata that made the
option (:func:`flag_of`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import sys
import types
import typing
import warnings
from collections.abc import Callable
from typing import Any

import click

from airsearch.config import CommandConfig, flattened_fields, required_fields
from airsearch.errors import AirsearchError, InputError
from airsearch.results import to_jsonable

# ctx.meta key (shared by a context and its children): field name -> how the CLI spells it
_FIELD_LABELS = "airsearch.field_labels"


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


def _decls(f: dataclasses.Field) -> list[str]:
    """The option declarations of a config field: its ``"flag"`` metadata, else ``--field-name``."""
    flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
    return [flag] if isinstance(flag, str) else list(flag)


def flag_of(f: dataclasses.Field) -> str:
    """The CLI flag of a config field (the long form when the metadata gives several)."""
    decls = _decls(f)
    return next((d for d in decls if d.startswith("--")), decls[0]).split("/")[0]


def field_labels(
    config_cls: type[CommandConfig] | None,
    command: click.Command | None = None,
    *,
    skip: tuple[str, ...] = (),
) -> dict[str, str]:
    """How the CLI names each field of ``config_cls`` in an error: ``option '--flag'`` (from the field's
    metadata, :func:`flag_of`); other parameters of ``command`` by their name: ``argument 'CORPUS'``
    for a positional argument, ``option '--flag'`` for an option outside the config."""
    fields = [f for f, _ in option_fields(config_cls)] if config_cls else ()
    labels = {
        f.name: f"option '{flag_of(f)}'" for f in fields if f.metadata.get("cli", True) and f.name not in skip
    }
    for p in command.params if command else ():
        if p.name and p.name not in labels:
            if isinstance(p, click.Argument):
                labels[p.name] = f"argument '{p.human_readable_name}'"
            elif p.opts:
                labels[p.name] = f"option '{max(p.opts, key=len)}'"
    return labels


def option_fields(config_cls: type[CommandConfig]) -> list[tuple[dataclasses.Field, Any]]:
    """``(field, type)`` of every option of ``config_cls``: its own fields, with a nested config's
    (``"flatten": True``) replaced by the fields it flattens (:func:`airsearch.config.flattened_fields`)."""
    hints = typing.get_type_hints(config_cls)
    nested = flattened_fields(config_cls)
    out: list[tuple[dataclasses.Field, Any]] = []
    for f in dataclasses.fields(config_cls):
        if f.name not in nested:
            out.append((f, hints[f.name]))
            continue
        inner_hints = typing.get_type_hints(hints[f.name])
        out += [
            (g, inner_hints[g.name]) for g in dataclasses.fields(hints[f.name]) if g.name in nested[f.name]
        ]
    return out


def config_options(config_cls: type[CommandConfig], *, skip: tuple[str, ...] = ()) -> Callable:
    """Decorate a click command with one option per field of ``config_cls`` and ``--config FILE``.

    The wrapped function receives ``config=<config_cls instance>``: values from ``--config`` first,
    then every option the user gave explicitly on the command line. A field hidden from the options
    (``"cli": False``) is filled from the command's positional argument of the same name, when given.
    A config file's old field spellings are read with a printed deprecation warning.
    """
    pairs = option_fields(config_cls)
    hints = {f.name: hint for f, hint in pairs}
    all_fields = [f for f, _ in pairs if f.name not in skip]
    # options in field order, except that fields marked ``"late": True`` (shared option groups a
    # config inherits, such as the preconditioning options) are listed after the command's own
    fields = sorted(
        (f for f in all_fields if f.metadata.get("cli", True)), key=lambda f: bool(f.metadata.get("late"))
    )
    positional = [f.name for f in all_fields if not f.metadata.get("cli", True)]
    required = required_fields(config_cls)

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            ctx.meta[_FIELD_LABELS] = field_labels(config_cls, ctx.command, skip=skip)
            config_file = kwargs.pop("config_file", None)
            base = _read_config_file(config_cls, config_file) if config_file else {}
            from_file = set(base)  # the fields whose values the file gave (flags may override them)
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
                    if value is None and f.name in required:
                        continue  # not given: from_dict names the missing field
                    base[f.name] = list(value) if isinstance(value, tuple) else value
                    from_file.discard(f.name)
            for name in positional:
                if name in kwargs:
                    value = kwargs.pop(name)
                    if value:
                        base[name] = list(value) if isinstance(value, tuple) else value
                        from_file.discard(name)
            try:
                kwargs["config"] = config_cls.from_dict(base)
            except InputError as e:
                if e.field not in from_file or e.path is not None:
                    raise
                # a bad value read from the file: the error names the file too
                raise InputError(e.message, field=e.field, path=config_file) from None
            return fn(*args, **kwargs)

        for f in reversed(fields):
            ctype, multiple, is_flag = _click_type(hints[f.name])
            decls = _decls(f)
            default = (
                f.default
                if f.default is not dataclasses.MISSING
                else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            )
            opts: dict[str, Any] = {
                "help": f.metadata.get("help", "") + ("  [required]" if f.name in required else ""),
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


def _read_config_file(config_cls: type[CommandConfig], path: str) -> dict[str, Any]:
    """A config file's fields; old spellings are renamed and each rename is printed as a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        data = config_cls.read_file(path)
    for w in caught:
        if issubclass(w.category, DeprecationWarning):
            click.secho(f"warning: {w.message}", fg="yellow", err=True)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return data


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when used: ``lazy_commands`` maps each name
    to ``(module, attribute)``; ``short_help`` may give a name's one-line help so that ``--help``
    lists it without importing its module."""

    def __init__(
        self,
        *args: Any,
        lazy_commands: dict[str, tuple[str, str]] | None = None,
        short_help: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})
        self.lazy_short_help = dict(short_help or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self.lazy_commands, *sorted(set(super().list_commands(ctx)) - set(self.lazy_commands))]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands and cmd_name not in self.commands:
            module, attr = self.lazy_commands[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Click's lookup, with "did you mean" drawn from every command name, loaded or not (click
        offers only the commands already imported)."""
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand:
            raise click.exceptions.NoSuchCommand(
                str(args[0]), possibilities=self.list_commands(ctx), ctx=ctx
            ) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        limit = formatter.width - 6 - max((len(n) for n in self.list_commands(ctx)), default=0)
        for name in self.list_commands(ctx):
            if name in self.lazy_short_help and name not in self.commands:
                rows.append((name, self.lazy_short_help[name]))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON to stdout.")


def handle_errors(fn: Callable) -> Callable:
    """Turn expected failures into a one-line message on stderr and a non-zero exit, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AirsearchError as e:
            click.secho(f"error: {render_error(e)}", fg="red", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.secho("interrupted; finished work is kept, rerun the same command to resume", err=True)
            sys.exit(130)
        except Exception as e:
            _exit_if_damaged(e, kwargs)
            raise
        except BaseException as e:  # a Rust panic inside Lance arrives as a BaseException
            if type(e).__name__ == "PanicException":
                _exit_if_damaged(e, kwargs)
            raise

    return wrapper


def _exit_if_damaged(e: BaseException, params: dict[str, Any]) -> None:
    """Exit with one line when ``e`` came from a damaged table of the command's ``--db``."""
    damage = _damaged_table(e, params)
    if damage is not None:
        click.secho(f"error: {render_error(damage)}", fg="red", err=True)
        sys.exit(damage.exit_code)


def _damaged_table(e: BaseException, params: dict[str, Any]) -> AirsearchError | None:
    """The one-line error for a failure caused by a damaged table of the command's ``--db`` (naming the
    damaged file and whether ``restore`` helps), else ``None``."""
    db = params.get("db")
    if not isinstance(db, str) or not db:
        return None
    from airsearch.indexers.damage import diagnose_failure

    table = params.get("table")
    return diagnose_failure(e, db, table if isinstance(table, str) and table else None)


def render_error(e: AirsearchError) -> str:
    """The error's message and location, with a config field named by the running command's flag."""
    ctx = click.get_current_context(silent=True)
    labels: dict[str, str] = {}
    if ctx is not None:
        labels = ctx.meta.get(_FIELD_LABELS) or field_labels(None, ctx.command)
    return e.render(lambda name: labels.get(name, f"field '{name}'"))


def emit(result: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    """Print a typed result (:class:`airsearch.results.Result`, or a list of them) as its
    ``to_dict()`` JSON (``--json``), or as the human summary ``human(result)``."""
    if as_json or human is None:
        click.echo(json.dumps(to_jsonable(result), indent=2, default=str))
    else:
        click.echo(human(result))
