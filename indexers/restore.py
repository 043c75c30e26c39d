"""``restore_table``: bring back an earlier version of a table (the Python API of ``airsearch restore``).

Lance keeps a table's versions: every append, upsert and delete makes a new one, and ``airsearch
info`` lists them. Restoring version N commits a NEW version whose rows, indexes and provenance are
those of version N, so nothing is lost: the version it undoes can itself be restored later. It
takes the table's write lock (:mod:`airsearch.indexers.lock`). ``index --overwrite`` replaces the
table's folder, so the versions before an overwrite are gone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lance
from airsearch.indexers.config import RestoreConfig
from airsearch.indexers.damage import manifest_version
from airsearch.indexers.lock import table_lock
from airsearch.indexers.store import IndexStore, check_name

from airsearch.errors import InputError
from airsearch.results import Result

DAMAGED = "_damaged"  # where restore keeps the unreadable manifests it set aside


@dataclasses.dataclass(frozen=True)
class RestoreSummary(Result):
    """What :func:`restore_table` did."""

    db: str
    table: str
    restored: int  # the version brought back
    replaced: int  # the newest version before the restore
    version: int  # the table's new version (a copy of ``restored``)
    rows: int
    set_aside: list[int] = dataclasses.field(default_factory=list)  # unreadable versions moved to _damaged/


def restore_table(cfg: RestoreConfig) -> RestoreSummary:
    """Make version ``cfg.version`` (or the one before the newest) the table's newest version."""
    store = IndexStore(cfg.db)
    name = cfg.table or store._default_name()
    check_name(name)
    if not store.exists(name):
        raise InputError(
            f"no table named {name!r}; tables here: {store.table_names() or 'none'}", path=store.path
        )
    folder = store.path / f"{name}.lance"
    with table_lock(store.path, name, what="airsearch restore", timeout=cfg.lock_timeout):
        kept = sorted(
            v for m in (folder / "_versions").glob("*.manifest") if (v := manifest_version(m)) is not None
        )
        if not kept:
            raise InputError("no versions found in the table folder", path=folder)
        newest = kept[-1]
        target = cfg.version if cfg.version is not None else (kept[-2] if len(kept) > 1 else None)
        if target is None:
            raise InputError(
                "the table has only one version; there is nothing before it", field="before_last"
            )
        if target not in kept:
            raise InputError(f"version {target} is not kept; kept versions: {_ranges(kept)}", field="version")
        if target == newest:
            raise InputError(f"version {target} is already the newest", field="version")
        try:
            old = lance.dataset(str(folder), version=target)
        except Exception as e:  # noqa: BLE001 - a damaged manifest of that version
            raise InputError(
                f"version {target} cannot be read ({type(e).__name__}); choose another", field="version"
            ) from None
        set_aside = _set_aside_unreadable(folder, after=target)
        if lance.dataset(str(folder)).version != target:
            old.restore()
        now = lance.dataset(str(folder))
        return RestoreSummary(
            db=str(store.path),
            table=name,
            restored=target,
            replaced=newest,
            version=now.version,
            rows=now.count_rows(),
            set_aside=set_aside,
        )


def _set_aside_unreadable(folder: Path, *, after: int) -> list[int]:
    """Move the unreadable manifests of versions after ``after`` to ``<table>.lance/_damaged/`` (kept,
    not deleted): Lance cannot commit over a damaged newest manifest. Returns their versions."""
    moved = []
    for manifest in (folder / "_versions").glob("*.manifest"):
        version = manifest_version(manifest)
        if version is None or version <= after:
            continue
        try:
            lance.dataset(str(folder), version=version)
        except Exception:  # noqa: BLE001 - unreadable: set aside
            (folder / DAMAGED).mkdir(exist_ok=True)
            manifest.rename(folder / DAMAGED / manifest.name)
            moved.append(version)
    if moved:
        (folder / "_versions" / "latest_version_hint.json").unlink(missing_ok=True)
    return sorted(moved)


def _ranges(versions: list[int]) -> str:
    """``1-4, 7`` for ``[1, 2, 3, 4, 7]``."""
    out, start = [], versions[0]
    for a, b in zip(versions, [*versions[1:], None], strict=True):
        if b != a + 1:
            out.append(f"{start}-{a}" if start != a else str(a))
            start = b
    return ", ".join(out)
