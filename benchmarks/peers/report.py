"""Fidelity and speed tables of the peer benchmark: ``results.json``, ``README.md`` and ``speed.png``."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file
from scipy.stats import pearsonr, spearmanr

KIND_LABELS = {
    "graddot": "grad-dot",
    "gradcos": "grad-cos",
    "kfac": "K-FAC influence",
    "kfac_cos": "K-FAC cosine",
    "ekfac": "EK-FAC influence",
    "ekfac_cos": "EK-FAC cosine",
    "ekfac_fixed": "EK-FAC influence, damping 1e-3",
}


def fidelity(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    out = {}
    for kind in KIND_LABELS:
        if kind in ours and kind in theirs and ours[kind].shape == theirs[kind].shape:
            a, b = ours[kind].ravel(), theirs[kind].ravel()
            out[kind] = {
                "pearson": float(pearsonr(a, b)[0]),
                "spearman": float(spearmanr(a, b)[0]),
                "max_rel_error": float(np.abs(b - a).max() / np.abs(a).max()),
                "scale": float(np.dot(a, b) / np.dot(a, a)),
            }
    return out


def speed(runs: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for tool, reps in runs.items():
        ops = sorted({op for r in reps for op in r["timings"]})
        table[tool] = {
            op: {
                "median_s": statistics.median([r["timings"][op] for r in reps if op in r["timings"]]),
                "runs_s": [round(r["timings"][op], 3) for r in reps if op in r["timings"]],
            }
            for op in ops
        }
    return table


def write_report(results: dict[str, Any], runs_dir: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, bench in results["benchmarks"].items():
        first = {t: runs_dir / name / t / "rep0" / "scores.safetensors" for t in bench["runs"]}
        ours = load_file(str(first["airsearch"])) if first["airsearch"].exists() else {}
        bench["fidelity"] = {
            t: fidelity(ours, load_file(str(p))) for t, p in first.items() if t != "airsearch" and p.exists()
        }
        bench["speed"] = speed(bench["runs"])
        meta = bench["meta"]
        n_examples = meta["n_train"] + meta["n_test"]
        for ops in bench["speed"].values():
            for op, row in ops.items():
                base = bench["speed"].get("airsearch", {}).get(op)
                row["ratio_to_airsearch"] = row["median_s"] / base["median_s"] if base else None
                if op.startswith("score_"):
                    row["examples_per_s"] = n_examples / row["median_s"]
        del bench["runs"]
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "README.md").write_text(markdown(results))
    plot(results, out_dir / "speed.png")


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# airsearch against peer attribution libraries",
        "",
        f"Machine: {results['machine']}; "
        f"{results['threads']} torch thread(s) per tool. Written by `benchmarks/peers/run.py`.",
        "",
    ]
    for name, bench in results["benchmarks"].items():
        meta = bench["meta"]
        lines += [
            f"## {name}: {meta['lm_source'].split('/')[-1]} ({meta['num_parameters']:,} parameters)",
            "",
            f"Scope: {len(meta['modules'])} Linear modules, {meta['scope_parameters']:,} parameters; "
            f"{meta['n_train']} train x {meta['n_test']} test examples, max length {meta['max_length']}, "
            "response-only mean NLL.",
            "",
            "### Fidelity (each peer against airsearch, same scope)",
            "",
            "| peer | score | Pearson | Spearman | max rel. error | scale (peer / airsearch) |",
            "|---|---|---|---|---|---|",
        ]
        for tool, kinds in bench["fidelity"].items():
            for kind, f in kinds.items():
                lines.append(
                    f"| {tool} | {KIND_LABELS[kind]} | {f['pearson']:.6f} | {f['spearman']:.6f} | "
                    f"{f['max_rel_error']:.2e} | {f['scale']:.4g} |"
                )
        lines += [
            "",
            "### Speed (median seconds over reps; ratio = tool / airsearch, > 1 means airsearch is faster)",
            "",
        ]
        lines += ["| tool | operation | median s | runs | ratio | examples/s |", "|---|---|---|---|---|---|"]
        for tool, ops in bench["speed"].items():
            for op, row in ops.items():
                ratio = f"{row['ratio_to_airsearch']:.2f}" if row["ratio_to_airsearch"] else "-"
                eps = f"{row['examples_per_s']:.2f}" if "examples_per_s" in row else "-"
                lines.append(f"| {tool} | {op} | {row['median_s']:.2f} | {row['runs_s']} | {ratio} | {eps} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = list(results["benchmarks"].items())
    fig, axes = plt.subplots(1, len(benches), figsize=(6 * len(benches), 4), squeeze=False)
    for ax, (name, bench) in zip(axes[0], benches, strict=True):
        tools = list(bench["speed"])
        ops = sorted({op for t in tools for op in bench["speed"][t]})
        width = 0.8 / max(len(tools), 1)
        for i, tool in enumerate(tools):
            vals = [bench["speed"][tool].get(op, {}).get("median_s", np.nan) for op in ops]
            ax.bar(np.arange(len(ops)) + i * width, vals, width, label=tool)
        ax.set_xticks(np.arange(len(ops)) + width * (len(tools) - 1) / 2, ops, rotation=30, ha="right")
        ax.set_ylabel("median seconds")
        ax.set_title(f"{name}: {bench['meta']['n_train']} train x {bench['meta']['n_test']} test")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
