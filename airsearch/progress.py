"""Progress bars for every long step; silenced with AIRSEARCH_QUIET=1 or quiet=True."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def quiet_default() -> bool:
    return os.environ.get("AIRSEARCH_QUIET", "") not in ("", "0")


def quiet_libraries() -> None:
    """When quiet, silence what transformers and the HF hub print while loading a model (their
    "Loading weights" bars and warnings); call it before loading one."""
    if not quiet_default():
        return
    try:
        from huggingface_hub.utils import disable_progress_bars
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - both come with sentence-transformers
        return
    disable_progress_bars()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def announce(line: str, *, quiet: bool | None = None) -> None:
    """Print a one-line plan or notice to stderr (so ``--json`` stdout stays clean), unless quiet."""
    if not (quiet_default() if quiet is None else quiet):
        tqdm.write(line, file=sys.stderr)


def format_seconds(seconds: float) -> str:
    """A duration for people: ``45 s``, ``12 min``, ``3.5 h``."""
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def progress(
    iterable: Iterable[T] | None = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    quiet: bool | None = None,
    **kwargs: Any,
) -> Iterator[T] | tqdm:
    """Wrap ``iterable`` in a tqdm bar written to stderr (so ``--json`` stdout stays clean)."""
    disable = quiet_default() if quiet is None else quiet
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        disable=disable,
        dynamic_ncols=True,
        leave=False,
        **kwargs,
    )
