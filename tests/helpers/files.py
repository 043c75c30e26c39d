"""What a folder holds, to check that a refused command wrote nothing (no file, table or version)."""

from __future__ import annotations

from pathlib import Path


def tree_state(*roots: Path) -> dict[str, tuple[bool, int, int]]:
    """``{path: (is_dir, size, mtime_ns)}`` of every file and folder under ``roots`` (a LanceDB table's
    new version is a new manifest file, so it shows here too)."""
    out = {}
    for root in roots:
        if not root.exists():
            continue
        for p in [root, *root.rglob("*")]:
            st = p.stat()
            out[str(p)] = (p.is_dir(), 0 if p.is_dir() else st.st_size, 0 if p.is_dir() else st.st_mtime_ns)
    return out
