"""One writer per table: ``index --append/--upsert/--overwrite``, ``delete`` and ``restore`` serialise.

A writer holds an exclusive ``flock`` on ``<db>/<table>.lock`` (a file beside the table) from before it
reads the live table until its commit has landed, so each writer sees the previous one's rows: ids
are checked (``--append``) or merged (``--upsert``) against the table as it is when the commit
happens, and stay unique under any interleaving. A second writer waits, printing once on stderr
``waiting for ... (pid N, since ...)``, and gives up after ``timeout`` seconds with a one-line
:class:`LockTimeout`. Readers (``query``, ``select``, ``serve``) never take the lock: Lance versions
let them read while a writer commits.

The kernel drops a ``flock`` when its process dies (even ``kill -9``), so a crashed writer never
blocks the next one. The file holds the holder's pid and command for the waiting message and is
removed on release; a waiter that locked a file since removed tries again on the new one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from airsearch.errors import AirsearchError, InputError

LOCK_SUFFIX = ".lock"
DEFAULT_LOCK_TIMEOUT = 600.0  # seconds a writer waits for another one before giving up
_POLL = 0.2


class LockTimeout(AirsearchError):
    """Another writer held the table longer than the wait allowed."""


def lock_path(db: str | os.PathLike, table: str) -> Path:
    return Path(db) / f"{table}{LOCK_SUFFIX}"


def _holder(path: Path) -> str:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another airsearch writer"
    since = time.strftime("%H:%M:%S", time.localtime(data.get("since", time.time())))
    return f"{data.get('what') or 'another airsearch writer'} (pid {data.get('pid', '?')}, since {since})"


@contextlib.contextmanager
def table_lock(
    db: str | os.PathLike,
    table: str,
    *,
    what: str = "",
    timeout: float = DEFAULT_LOCK_TIMEOUT,
    say: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the write lock of ``table`` in ``db`` for the block (see the module docstring); ``what``
    names this writer in other writers' waiting message, ``say`` prints this one's (default stderr)."""
    path = lock_path(db, table)
    deadline = time.monotonic() + max(timeout, 0.0)
    said = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _unwritable(db, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"table {table!r} is still being written by {_holder(path)} after {timeout:g} s; "
                    "try again when it has finished",
                    field="lock_timeout",
                    path=db,
                ) from None
            if not said:
                (say or _stderr)(
                    f"waiting for {_holder(path)} to finish writing table {table!r} "
                    f"(giving up after {timeout:g} s)"
                )
                said = True
            time.sleep(_POLL)
            continue
        try:  # the file may have been removed by the holder that just released it: lock the new one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        break
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "what": what, "since": time.time()}).encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)  # releases the flock


def _unwritable(db: str | os.PathLike, e: OSError) -> InputError:
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return InputError("cannot write in the index folder (permission denied or read-only)", path=db)
    return InputError(f"cannot write in the index folder: {e.strerror or e}", path=db)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
