"""Atomic writes: a file or folder appears complete or not at all (crash- and kill-safe).

This is the one atomic swap in airsearch: :func:`atomic_path` for anything written here,
:func:`swap_into_place` for a finished file or folder made elsewhere (a LanceDB table built under a
temporary name); the job runner's result files, the index's tables, checkpoints and reports all go
through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def swap_into_place(src: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename the finished ``src`` over ``target`` (same folder), then fsync that folder.

    A file replaces ``target`` in one ``os.replace``. A folder cannot be renamed over a non-empty one,
    so an existing ``target`` folder is first renamed aside (``.<name>.old-<pid>``), ``src`` is renamed
    into place and the old folder is deleted: readers see the old or the new folder, never a mix.
    """
    src, target = Path(src), Path(target)
    if src.is_dir() and target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(src, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, target)
    fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` (``.<name>.tmp-*``); on success swap it into place.

    On any exception the temporary file or folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.tmp-"
    tmp = (
        Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        if is_dir
        else Path(tempfile.mktemp(prefix=prefix, dir=target.parent))
    )
    try:
        yield tmp
        swap_into_place(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def fsync_dir(directory: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
