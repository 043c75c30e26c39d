"""The job result file format: one ``<job_id>.npz`` per finished job, read without unpickling.

:mod:`airsearch.trainers.runner` writes these files (atomically, one per job); anything that only reads a
finished run (a label store, a Daunce run: :mod:`airsearch.methods.daunce_run`) needs just this module.
A file holds numpy arrays (numeric or string) plus one JSON entry with every other value.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

RESULT_SUFFIX = ".npz"
JSON_KEY = "__json__"


def result_path(out_dir: str | os.PathLike, job_id: str) -> Path:
    return Path(out_dir) / f"{job_id}{RESULT_SUFFIX}"


def finished_job_ids(out_dir: str | os.PathLike) -> set[str]:
    """Ids of jobs with a committed result in ``out_dir`` (temporary files are ignored)."""
    d = Path(out_dir)
    if not d.is_dir():
        return set()
    return {
        p.name[: -len(RESULT_SUFFIX)]
        for p in d.iterdir()
        if p.name.endswith(RESULT_SUFFIX) and not p.name.startswith(".") and p.is_file()
    }


def read_result(out_dir: str | os.PathLike, job_id: str) -> dict[str, Any]:
    """Read a committed result (no unpickling): arrays plus the JSON fields."""
    path = result_path(out_dir, job_id)
    with np.load(path, allow_pickle=False) as z:
        out: dict[str, Any] = {k: z[k] for k in z.files if k != JSON_KEY}
        meta = json.loads(str(z[JSON_KEY])) if JSON_KEY in z.files else {}
    out.update(meta)
    return out
