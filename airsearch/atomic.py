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
    if not is_dir and target.is_dir():
        from airsearch.errors import InputError

        raise InputError("is a folder; give the path of a file to write", path=target)
    make_parent(target)
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


def file_in_the_way(folder: str | os.PathLike) -> Path | None:
    """The file that stands where ``folder`` or one of its parents should be a folder, if any."""
    folder = Path(folder)
    return next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)


def make_parent(target: str | os.PathLike, *, field: str | None = None) -> None:
    """Create the folder ``target`` goes in; a file where a folder should be is an
    :class:`~airsearch.errors.InputError` naming ``target`` (and ``field``, the option that gave it)."""
    from airsearch.errors import InputError

    blocker = file_in_the_way(Path(target).parent)
    if blocker is not None:
        raise InputError(f"cannot write here: {blocker} is a file, not a folder", field=field, path=target)
    Path(target).parent.mkdir(parents=True, exist_ok=True)


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


@contextlib.contextmanager
def removed_if_left_empty(folder: str | os.PathLike) -> Iterator[None]:
    """A failed command leaves no empty folder behind: if ``folder`` did not exist before this block
    and the block fails, the folder is removed again when nothing (but empty folders) is in it."""
    folder = Path(folder)
    existed = folder.exists()
    try:
        yield
    except BaseException:
        if not existed and folder.is_dir():
            for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    sub.rmdir()  # only empty ones go
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) for a short critical section, such as committing a finished build
    and forgetting its staging, so that the work lands whole; the interrupt is raised right after.

    Outside the main thread (where Python cannot install signal handlers) this does nothing."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
