"""What every results renderer shares: where the results live, reading them, and writing a table."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = "benchmarks/results"


@cache
def load(path: str) -> Any:
    return json.loads((ROOT / path).read_text())


def table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(out + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def sources(*paths: str, depth: int) -> str:
    """The files a table was rendered from, as links relative to the document (``depth`` folders down)."""
    up = "../" * depth
    return "Rendered from " + ", ".join(f"[`{p}`]({up}{p})" for p in paths) + ".\n"


def x100(stat: dict[str, Any] | None, interval: bool = True, sign: bool = False) -> str:
    """An LDS (or a difference of two) x100 with its 95% interval: ``17.0 [8.5, 27.0]``."""
    if stat is None:
        return "not run"
    f = "{:+.1f}" if sign else "{:.1f}"
    text = f.format(100 * stat["mean"])
    if interval and stat.get("low") is not None:
        text += " [" + ", ".join(f.format(100 * stat[k]) for k in ("low", "high")) + "]"
    return text


READABLE = {
    "airrep:airrep_retrain": "AirRep, retraining labels",
    "airrep:airrep_teacher": "AirRep, grad-cos teacher labels",
    "base": "base encoder (all-MiniLM-L6-v2, untrained)",
    "bm25": "BM25, full text",
    "bm25:text=response": "BM25, responses only",
    "repsim": "RepSim (target LM hidden states)",
    "random": "random",
}
KINDS = {"retrain": "retraining labels", "teacher": "grad-cos teacher labels"}
