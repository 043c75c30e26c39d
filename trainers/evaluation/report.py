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


def pareto_frontier(points: Mapping[str, tuple[float, float]]) -> list[str]:
    """The names whose ``(cost, quality)`` no other point beats: none is at most as costly and at least
    as good with one of the two strictly better. Cheapest first; non-finite points are left out."""
    finite = {n: (c, q) for n, (c, q) in points.items() if math.isfinite(c) and math.isfinite(q)}
    front = [
        n
        for n, (c, q) in finite.items()
        if not any(c2 <= c and q2 >= q and (c2 < c or q2 > q) for c2, q2 in finite.values())
    ]
    return sorted(front, key=lambda n: finite[n][0])


def pareto_plot(
    path: str | Path,
    points: Mapping[str, tuple[float, float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    errors: Mapping[str, tuple[float, float]] | None = None,
    groups: Mapping[str, str] | None = None,
) -> Path:
    """Quality against cost (log x), one labelled marker per point, optional (low, high) quality bars,
    colours by ``groups[name]``, and the Pareto frontier (:func:`pareto_frontier`) drawn as a step line."""
    plt = _pyplot()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    colours: dict[str, Any] = {}
    labelled: set[str] = set()
    for name, (cost, quality) in points.items():
        if not (math.isfinite(cost) and math.isfinite(quality) and cost > 0):
            continue
        group = (groups or {}).get(name, "")
        colour = colours.setdefault(group, f"C{len(colours)}")
        yerr = None
        if errors and name in errors:
            lo, hi = errors[name]
            yerr = np.nan_to_num([[quality - lo], [hi - quality]], nan=0.0).clip(min=0)
        first = group not in labelled
        labelled.add(group)
        ax.errorbar(
            cost, quality, yerr=yerr, fmt="o", color=colour, capsize=2, markersize=4,
            label=group if group and first else None,
        )  # fmt: skip
        ax.annotate(name, (cost, quality), fontsize=6, xytext=(3, 2), textcoords="offset points")
    front = [n for n in pareto_frontier(points) if points[n][0] > 0]
    if front:
        xs = [points[n][0] for n in front]
        ys = [points[n][1] for n in front]
        ax.step(xs, ys, where="post", color="black", linewidth=1, linestyle="--", label="Pareto frontier")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)
    return path


def curve_plot(
    path: str | Path,
    curves: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> Path:
    """One line with markers per named ``[(x, y), ...]`` curve."""
    plt = _pyplot()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, pts in curves.items():
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    _save(fig, path)
    return path
