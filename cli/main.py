"""The ``airsearch`` console script: a thin click layer over the Python API.

Each command lives in its own module under ``cli/`` and is registered in :data:`COMMANDS`. A command's
module is imported only when that command runs (or ``--help`` lists it), and command modules import
only their config dataclass at the top: the heavy libraries (torch, transformers, LanceDB) load
inside the command, so ``--help``, ``--version`` and option errors answer at once.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import click
from airsearch.cli.common import LazyGroup, handle_errors

from airsearch import __version__

# name -> (module, attribute) of every top-level command or group, in --help order.
COMMANDS: dict[str, tuple[str, str]] = {
    "index": ("airsearch.cli.index_cmd", "index_cmd"),
    "query": ("airsearch.cli.query_cmd", "query_cmd"),
    "method-column": ("airsearch.cli.column_cmd", "column_cmd"),
    "select": ("airsearch.cli.select_cmd", "select_cmd"),
    "info": ("airsearch.cli.info_cmd", "info_cmd"),
    "delete": ("airsearch.cli.delete_cmd", "delete_cmd"),
    "restore": ("airsearch.cli.restore_cmd", "restore_cmd"),
    "explain": ("airsearch.cli.explain_cmd", "explain_cmd"),
    "serve": ("airsearch.cli.serve_cmd", "serve_cmd"),
    "labels": ("airsearch.cli.labels_cmd", "labels"),
    "lm": ("airsearch.cli.lm_cmd", "lm"),
    "eval": ("airsearch.cli.eval_cmd", "eval_group"),
    "attribute": ("airsearch.cli.attribute_cmd", "attribute_cmd"),
    "train": ("airsearch.cli.train_cmd", "train_cmd"),
    "encoder": ("airsearch.cli.encoder_cmd", "encoder_group"),
}

LIBRARIES = (
    r"(transformers|peft|sentence_transformers|huggingface_hub|torch|datasets|lance|lancedb|sklearn)\b"
)
# Set before any heavy import: transformers and the HF hub read them when first imported.
QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


class AirsearchGroup(LazyGroup):
    """The top-level group: expected failures anywhere below it (including option validation in
    ``config_options``) print one line and exit non-zero, never a traceback; so do click's own usage
    errors (an unknown option, a bad choice), as ``error: ... (see 'airsearch CMD --help')``."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        return handle_errors(super().invoke)(ctx)

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:  # noqa: D102
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as e:
            e.show()
            sys.exit(e.exit_code)
        except click.ClickException as e:
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            click.secho(f"error: {' '.join(e.format_message().split())}{hint}", fg="red", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(
    cls=AirsearchGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="airsearch")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars, no library warnings.")
def app(quiet: bool) -> None:
    """airsearch: find the training examples that made a language model produce an output."""
    # transformers' warnings are not for the person at the prompt: errors only, unless they ask
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if quiet:
        os.environ["AIRSEARCH_QUIET"] = "1"
        for key, value in QUIET_ENV.items():
            os.environ[key] = value
        # API-churn warnings are for library developers; other library warnings too under -q
        for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
            warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("ignore", module=LIBRARIES)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
