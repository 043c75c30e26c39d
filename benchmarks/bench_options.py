"""The options every benchmark script shares, parsed one way.

Every script in ``benchmarks/`` builds its command line with :func:`bench_parser` and adds only its own
sizes: ``--out`` (the folder its JSON + Markdown results go to, by default under
``benchmarks/results/``), ``--work`` (the scratch folder for models, tables and other heavy artefacts,
by default under ``benchmarks/work/``, git-ignored), ``--seed`` and ``--scale`` where a script has
them. Each script's ``main(argv)`` takes the arguments as a list and returns an exit status, so that
``tests/test_benchmarks_smoke.py`` runs it, at micro size, into a temporary folder.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WORK = HERE / "work"

_ABSENT = object()


def bench_parser(
    doc: str | None,
    *,
    out: Path | str | None | object = _ABSENT,
    out_help: str = "folder the results (JSON + Markdown) are written to",
    work: Path | str | None | object = _ABSENT,
    seed: int | object = _ABSENT,
    scales: Sequence[str] = (),
    scale: str | None = None,
    quiet: bool = False,
) -> argparse.ArgumentParser:
    """A parser with the shared options that the script names: ``out`` / ``work`` (their default
    folders; None: no default, the script picks one, as ``out_help`` says), ``seed`` (its default),
    ``scales`` (the ``--scale`` presets, ``scale`` the default one) and ``quiet``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if out is not _ABSENT:
        ap.add_argument("--out", type=_path, default=_path(out), help=out_help)
    if work is not _ABSENT:
        ap.add_argument(
            "--work",
            type=_path,
            default=_path(work),
            help="scratch folder for models, tables and other large artefacts (not committed)",
        )
    if seed is not _ABSENT:
        ap.add_argument("--seed", type=int, default=seed, help="random seed")
    if scales:
        ap.add_argument("--scale", choices=list(scales), default=scale, help="size preset")
    if quiet:
        ap.add_argument("--quiet", action="store_true", help="no progress output")
    return ap


def _path(value: object) -> Path | None:
    return None if value is None else Path(str(value))
