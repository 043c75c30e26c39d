"""Writing evaluation results: a results JSON, a Markdown table and PNG plots (matplotlib Agg)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from airsearch.atomic import atomic_path, write_json_atomic, write_text_atomic


def fmt(value: Any, digits: int = 2, scale: float = 1.0) -> str:
    """A table cell: numbers rounded (NaN as an en dash), other values as text."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "–" if not math.isfinite(float(value)) else f"{float(value) * scale:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)


def bar_plot(
    path: str | Path,
    labels: Sequence[str],
    values: Mapping[str, Sequence[float]],
    *,
    title: str,
    ylabel: str,
    errors: Mapping[str, Sequence[tuple[float, float]]] | None = None,
) -> Path:
    """Grouped bars: one group per label, one bar per series in ``values``; optional (low, high)."""
    plt = _pyplot()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(labels) + 2), 3.6))
    width = 0.8 / max(1, len(values))
    x = np.arange(len(labels))
    for i, (series, vals) in enumerate(values.items()):
        v = np.array([np.nan if val is None else val for val in vals], dtype=float)
        yerr = None
        if errors and series in errors:
            lo = np.array([a for a, _ in errors[series]], dtype=float)
            hi = np.array([b for _, b in errors[series]], dtype=float)
            yerr = np.nan_to_num(np.stack([v - lo, hi - v]), nan=0.0).clip(min=0)
        ax.bar(x + i * width - 0.4 + width / 2, np.nan_to_num(v), width, yerr=yerr, capsize=3, label=series)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.axhline(0, color="black", linewidth=0.6)
    if len(values) > 1:
        ax.legend(fontsize=8)
    _save(fig, path)
    return path


def distribution_plot(
    path: str | Path, per_method: Mapping[str, Sequence[float]], *, title: str, ylabel: str
) -> Path:
    """Box plot with jittered points: the per-query distribution of a metric, one box per method."""
    plt = _pyplot()
    path = Path(path)
    names = list(per_method)
    data = [np.asarray(per_method[n], float)[np.isfinite(np.asarray(per_method[n], float))] for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 2), 3.8))
    ax.boxplot([d if d.size else np.array([np.nan]) for d in data], showfliers=False)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, d.size), d, s=6, alpha=0.4)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _save(fig, path)
    return path


def write_results(out_dir: str | Path, name: str, results: dict[str, Any], table: str) -> dict[str, str]:
    """Write ``<name>.json`` (results + table) and ``<name>.md`` into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"{name}.json", {**results, "table": table})
    write_text_atomic(out / f"{name}.md", table)
    return {"json": str(out / f"{name}.json"), "markdown": str(out / f"{name}.md")}
