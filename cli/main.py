"""The ``airsearch`` console script: a thin click layer over the Python API.

Each command lives in its own module under ``cli/`` and is registered in :data:`COMMANDS`.
"""

from __future__ import annotations

import importlib
import os

import click
from airsearch.cli.common import handle_errors

# (module, attribute) of every top-level command or group, in --help order.
COMMANDS: list[tuple[str, str]] = [
    ("airsearch.cli.index_cmd", "index_cmd"),
    ("airsearch.cli.query_cmd", "query_cmd"),
    ("airsearch.cli.select_cmd", "select_cmd"),
    ("airsearch.cli.info_cmd", "info_cmd"),
    ("airsearch.cli.delete_cmd", "delete_cmd"),
    ("airsearch.cli.explain_cmd", "explain_cmd"),
    ("airsearch.cli.serve_cmd", "serve_cmd"),
    ("airsearch.cli.labels_cmd", "labels"),
    ("airsearch.cli.lm_cmd", "lm"),
    ("airsearch.cli.eval_cmd", "eval_group"),
    ("airsearch.cli.attribute_cmd", "attribute_cmd"),
    ("airsearch.cli.train_cmd", "train_cmd"),
]


class AirsearchGroup(click.Group):
    """The top-level group: expected failures anywhere below it (including option validation in
    ``config_options``) print one line and exit non-zero, never a traceback."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        return handle_errors(super().invoke)(ctx)


@click.group(cls=AirsearchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="airsearch")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def app(quiet: bool) -> None:
    """airsearch: find the training examples that made a language model produce an output."""
    if quiet:
        os.environ["AIRSEARCH_QUIET"] = "1"


for _module, _attr in COMMANDS:
    app.add_command(getattr(importlib.import_module(_module), _attr))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
