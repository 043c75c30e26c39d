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
    "trak~graddot": "TRAK (k = 512) vs grad-dot (context)",
    "trak~ekfac": "TRAK (k = 512) vs EK-FAC influence (context)",
}


def collect_runs(runs_dir: Path, name: str) -> dict[str, dict[str, dict]]:
    """Every finished run of every tool of one benchmark (rep folder -> ``run.json``), read back."""
    runs: dict[str, dict[str, dict]] = {}
    for tool_dir in sorted((runs_dir / name).iterdir()):
        reps = sorted(tool_dir.glob("rep*/run.json"))
        if reps:
            runs[tool_dir.name] = {p.parent.name: json.loads(p.read_text()) for p in reps}
    order = ["airsearch"] + sorted(t for t in runs if t != "airsearch")
    return {t: runs[t] for t in order if t in runs}


def fidelity(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per score kind both sides have; a TRAK score is set against airsearch's grad-dot and EK-FAC."""
    pairs = [(k, k, k) for k in KIND_LABELS if k in ours and k in theirs]
    if "trak" in theirs:
        pairs += [(f"trak~{k}", k, "trak") for k in ("graddot", "ekfac") if k in ours]
    out = {}
    for label, mine, peer in pairs:
        if ours[mine].shape == theirs[peer].shape:
            a, b = ours[mine].ravel(), theirs[peer].ravel()
            out[label] = {
                "pearson": float(pearsonr(a, b)[0]),
                "spearman": float(spearmanr(a, b)[0]),
                "max_rel_error": float(np.abs(b - a).max() / np.abs(a).max()),
                "scale": float(np.dot(a, b) / np.dot(a, a)),
            }
    return out


def speed(runs: dict[str, dict[str, dict]]) -> dict[str, dict[str, Any]]:
    """Median seconds per tool and operation, and the median over reps of the paired ratio
    tool / airsearch (both measured in the same rep, minutes apart)."""
    table: dict[str, dict[str, Any]] = {}
    ours = runs.get("airsearch", {})
    for tool, reps in runs.items():
        ops = sorted({op for r in reps.values() for op in r["timings"]})
        table[tool] = {}
        for op in ops:
            secs = {rep: r["timings"][op] for rep, r in reps.items() if op in r["timings"]}
            paired = [
                s / ours[rep]["timings"][op]
                for rep, s in secs.items()
                if op in ours.get(rep, {}).get("timings", {})
            ]
            table[tool][op] = {
                "median_s": statistics.median(secs.values()),
                "runs_s": [round(v, 3) for v in secs.values()],
                "ratio_to_airsearch": statistics.median(paired) if paired else None,
                "paired_ratios": [round(v, 3) for v in paired],
            }
    return table


def write_report(results: dict[str, Any], runs_dir: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, bench in results["benchmarks"].items():
        bench["runs"] = collect_runs(runs_dir, name)
        first = {
            t: runs_dir / name / t / min(reps) / "scores.safetensors" for t, reps in bench["runs"].items()
        }
        ours = load_file(str(first["airsearch"])) if first["airsearch"].exists() else {}
        bench["fidelity"] = {
            t: fidelity(ours, load_file(str(p))) for t, p in first.items() if t != "airsearch" and p.exists()
        }
        bench["speed"] = speed(bench["runs"])
        meta = bench["meta"]
        n_examples = meta["n_train"] + meta["n_test"]
        for ops in bench["speed"].values():
            for op, row in ops.items():
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
            "### Speed",
            "",
            "Median seconds over reps; ratio = the median over reps of tool / airsearch measured in the same "
            "rep (> 1: airsearch is faster); examples/s = (train + test examples) / median seconds.",
            "",
        ]
        lines += ["| tool | operation | median s | runs (s) | ratio | paired ratios | examples/s |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for tool, ops in bench["speed"].items():
            for op, row in ops.items():
                ratio = f"{row['ratio_to_airsearch']:.2f}" if row["ratio_to_airsearch"] else "-"
                eps = f"{row['examples_per_s']:.2f}" if "examples_per_s" in row else "-"
                lines.append(
                    f"| {tool} | {op} | {row['median_s']:.2f} | {row['runs_s']} | {ratio} | "
                    f"{row['paired_ratios']} | {eps} |"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Paired speed ratios tool / airsearch per operation (log scale; above 1: airsearch is faster)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = list(results["benchmarks"].items())
    fig, axes = plt.subplots(1, len(benches), figsize=(6 * len(benches), 4), squeeze=False)
    for ax, (name, bench) in zip(axes[0], benches, strict=True):
        tools = [t for t in bench["speed"] if t != "airsearch"]
        ops = sorted(
            {op for t in tools for op, row in bench["speed"][t].items() if row["ratio_to_airsearch"]}
        )
        width = 0.8 / max(len(tools), 1)
        for i, tool in enumerate(tools):
            vals = [(bench["speed"][tool].get(op, {}).get("ratio_to_airsearch") or np.nan) for op in ops]
            ax.bar(np.arange(len(ops)) + i * width, vals, width, label=tool)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_ylim(0.3, 10)
        ax.set_xticks(np.arange(len(ops)) + width * (len(tools) - 1) / 2, ops, rotation=30, ha="right")
        ax.set_ylabel("seconds, tool / airsearch (paired median)")
        ax.set_title(f"{name}: {bench['meta']['n_train']} train x {bench['meta']['n_test']} test")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
