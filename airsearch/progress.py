"""Progress bars for every long step; silenced with AIRSEARCH_QUIET=1 or quiet=True."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def quiet_default() -> bool:
    return os.environ.get("AIRSEARCH_QUIET", "") not in ("", "0")


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
