"""Content fingerprints that tie every artefact (labels, encoder, index) to what made it.

A fingerprint is a short hex digest. Two artefacts made from the same inputs carry the same
fingerprint; :func:`check_match` refuses a mismatch with a message naming both sides.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from airsearch.errors import FingerprintMismatch

DIGEST_CHARS = 16


def _new() -> hashlib._Hash:
    return hashlib.blake2b(digest_size=16)


def fingerprint_json(obj: Any) -> str:
    """Fingerprint of a JSON-serialisable object, independent of key order."""
    h = _new()
    h.update(json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode())
    return h.hexdigest()[:DIGEST_CHARS]


def fingerprint_bytes(chunks: Iterable[bytes]) -> str:
    h = _new()
    for chunk in chunks:
        h.update(len(chunk).to_bytes(8, "little"))
        h.update(chunk)
    return h.hexdigest()[:DIGEST_CHARS]


def fingerprint_file(path: str | Path, block: int = 1 << 20) -> str:
    h = _new()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()[:DIGEST_CHARS]


def fingerprint_dir(
    path: str | Path, suffixes: tuple[str, ...] = (".safetensors", ".json", ".txt", ".model", ".bin")
) -> str:
    """Fingerprint of the weight and config files in a model folder (sorted relative paths + contents)."""
    root = Path(path)
    h = _new()
    for p in sorted(q for q in root.rglob("*") if q.is_file() and q.suffix in suffixes):
        h.update(str(p.relative_to(root)).encode())
        h.update(fingerprint_file(p).encode())
    return h.hexdigest()[:DIGEST_CHARS]


def fingerprint_state_dict(state: Mapping[str, Any]) -> str:
    """Fingerprint of tensor weights: names, shapes, dtypes and bytes, in name order."""
    h = _new()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
    return h.hexdigest()[:DIGEST_CHARS]


def check_match(
    kind: str,
    expected: str | None,
    actual: str | None,
    *,
    path: str | os.PathLike | None = None,
    field: str | None = None,
    hint: str = "",
) -> None:
    """Refuse (raise :class:`FingerprintMismatch`) when two fingerprints of ``kind`` differ."""
    if expected is None or actual is None or expected == actual:
        return
    msg = f"{kind} fingerprint mismatch: the artefact was made with {expected}, but {actual} is in use."
    if hint:
        msg += " " + hint
    raise FingerprintMismatch(msg, path=path, field=field)
