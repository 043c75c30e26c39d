"""Run one ``airsearch`` command in-process, as a user would type it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airsearch.cli.main import app
from click.testing import CliRunner, Result


def run(*args: Any, ok: bool = True) -> Result:
    """``airsearch ARGS`` through click's runner (arguments are ``str()``-ed); ``ok`` asserts exit 0."""
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def assert_one_line_error(result: Result, *fragments: str, code: int | None = 2) -> None:
    """An expected failure: exit ``code`` (any non-zero when None), no traceback, every fragment shown."""
    if code is None:
        assert result.exit_code != 0, result.output
    else:
        assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)


def fill(template: Sequence[Any], **values: Any) -> list[str]:
    """An argv template with ``{name}`` placeholders filled in (for parametrized command lines)."""
    return [str(a).format(**values) for a in template]
