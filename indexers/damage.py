"""Damaged tables: name the damaged file and say whether ``airsearch restore`` can help.

Lance reports a truncated or missing file as a bare I/O error ("failed to fill whole buffer", "file
size is too small") without naming it. When a read fails that way, :func:`diagnose_failure` checks
the table part by part: every version's manifest (``_versions/*.manifest``), the data files of the
newest readable version (``data/*.lance``), and its full-text (BM25) and vector indexes
(``_indices/<uuid>/``). The first damaged part found is named, with the way out: the newest earlier
version that reads whole (``airsearch restore --version N``), or a rebuild (``index --overwrite``).
"""

from __future__ import annotations

import os
from pathlib import Path

import lance

from airsearch.errors import AirsearchError

_U64 = 2**64 - 1


class DamagedTable(AirsearchError):
    """A table file is truncated or missing."""


def is_storage_error(e: BaseException) -> bool:
    """An exception the Lance engine raised for the files it read (not a bad request)."""
    if isinstance(e, AirsearchError):
        return False
    text = f"{type(e).__name__}: {e}"
    return "Panic" in type(e).__name__ or "lance" in text.lower() or isinstance(e, FileNotFoundError)


def diagnose_failure(e: BaseException, db: str | os.PathLike, table: str | None) -> DamagedTable | None:
    """The :class:`DamagedTable` error behind the failure ``e`` of a read of ``table`` (the only or
    every table when ``None``) in ``db``; ``None`` when ``e`` is not a storage error or the table reads
    whole (then ``e`` is something else and stays as it is)."""
    if not is_storage_error(e):
        return None
    root = Path(db)
    names = [table] if table else sorted(p.name[: -len(".lance")] for p in root.glob("[!._]*.lance"))
    for name in names:
        found = find_damage(root, name)
        if found is not None:
            return found
    return None


def manifest_version(manifest: Path) -> int | None:
    try:
        n = int(manifest.stem)
    except ValueError:
        return None
    return _U64 - n if n > 2**63 else n  # Lance's newer naming counts down from 2**64 - 1


def _reads_whole(folder: Path, version: int | None) -> tuple[bool, str | None]:
    """Whether ``version`` of the table reads whole; else ``(False, damaged file relative to folder)``."""
    try:
        ds = lance.dataset(str(folder), version=version)
    except Exception:  # noqa: BLE001 - any failure to open is damage here
        return False, None
    for frag in ds.get_fragments():
        try:
            frag.to_table()
        except Exception:  # noqa: BLE001
            files = [f"data/{Path(d.path).name}" for d in frag.data_files()]
            return False, ", ".join(files) or None
    try:
        indices = ds.describe_indices()
    except Exception:  # noqa: BLE001
        return False, "_indices"
    for idx in indices:
        try:
            if "vector" in idx.field_names or idx.field_names == ["vector"]:
                dim = ds.schema.field("vector").type.list_size
                ds.to_table(nearest={"column": "vector", "q": [0.0] * dim, "k": 1}, columns=["id"])
            else:
                ds.to_table(full_text_query={"query": "the", "columns": idx.field_names}, columns=["id"])
        except Exception:  # noqa: BLE001
            uuids = [str(s.uuid) for s in getattr(idx, "segments", [])] or [idx.name]
            kind = "vector" if "vector" in idx.field_names else "full-text (BM25)"
            return False, f"_indices/{uuids[0]} ({kind} index {idx.name!r})"
    return True, None


def find_damage(db: Path, table: str) -> DamagedTable | None:
    """The first damaged part of ``table`` in ``db`` (see the module docstring), or ``None``."""
    folder = db / f"{table}.lance"
    manifests = sorted(
        ((v, m) for m in (folder / "_versions").glob("*.manifest") if (v := manifest_version(m)) is not None),
        reverse=True,
    )
    damaged, newest_ok = None, None
    for version, manifest in manifests:
        ok, part = _reads_whole(folder, version)
        if ok:
            if damaged is None:
                return None  # the newest version reads whole: the failure was not damage
            newest_ok = version
            break
        if damaged is None:
            try:
                lance.dataset(str(folder), version=version)
                damaged = part or "a data file"
            except Exception:  # noqa: BLE001
                damaged = f"_versions/{manifest.name} (the manifest of version {version})"
    if damaged is None:
        return None
    fix = (
        f"`airsearch restore --db {db} --table {table} --version {newest_ok}` brings back version "
        f"{newest_ok}, which reads whole"
        if newest_ok is not None
        else f"no earlier version reads whole, so restore cannot help: rebuild it with "
        f"`airsearch index CORPUS --db {db} --table {table} --overwrite`"
    )
    return DamagedTable(
        f"table {table!r} is damaged: {damaged} is truncated or unreadable; {fix}", path=folder
    )
