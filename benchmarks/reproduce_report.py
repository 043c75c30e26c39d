"""The summary ``README.md`` of ``benchmarks/reproduce.py``: tables, paired gains, cost, the papers' numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airsearch.trainers.evaluation.report import fmt, markdown_table

ROOT = Path(__file__).resolve().parents[1]

PAPERS = {  # measured by the papers on other models and data (Qwen2.5-0.5B / LLaMA2-7B / GPT-2 ...)
    "lds": {
        "AirRep": 26.23,
        "LoGra": 18.45,
        "LESS": 16.16,
        "TracIn": 11.33,
        "GTE-small": 7.65,
        "TF-IDF": 9.98,
    },
    "classify": {"AirRep": 86.4, "LoGra": 85.4, "GTE-small": 50.6},
    "entity-swap": {
        "DDA": "70.0 R@500 / 91.64 AUC",
        "BM25": "44.3 / 74.4",
        "TRAK": "21.2 / 58.0",
        "TracIn": "20.0 / 57.4",
    },
    "pii": {"GPT-2 (102M)": "HAIF 100% vs best baseline 57%", "Qwen1.5-0.5B": "HAIF 70.2% vs 49.3%"},
}


def summary(
    scale: str, stage_seconds: float, lm_path: str, teacher: dict, lds: dict, cls: dict, trace: dict
) -> str:
    """The study's ``README.md``: every table, the paired gains, the cost table and the papers' numbers."""
    lines = [
        f"# Reproduction at scale '{scale}'\n",
        f"Machine: {machine()}. Stage time, summed: {stage_seconds / 60:.1f} min "
        "(each stage's `stage_seconds` is in `stages/`).\n",
        f"Target LM: {display_path(lm_path)}. Best gradient teacher (LDS on training labels): {teacher['teacher']}.\n",
        "## LDS on held-out tasks (ours; AirRep Table 1)\n",
        lds["table"],
        paired_gains(lds),
        "\n`dda` equals `gradcos` in this table: the gold subsets are fine-tuned from the target LM "
        "itself, so DDA has one checkpoint and no separate base model to subtract.",
        "\n## Data classification by task (ours; AirRep Table 2)\n",
        cls["table"],
        "\n## Entity-swap tracing (ours; DDA Table 1)\n",
        trace["entity-swap"]["table"],
        "\n## PII-E top-1 tracing (ours; HAIF Table 2)\n",
        trace["pii"]["table"],
        "\n## DDA without its debias term (DDA's own ablation; same fine-tuned checkpoints)\n",
        *(
            f"{b}:\n\n{trace[f'{b}-ablation']['table']}"
            for b in ("entity-swap", "pii")
            if f"{b}-ablation" in trace
        ),
        "\n## Cost per attributed query (ours, LDS run)\n",
        cost_table(lds),
        "\n## The papers' own numbers -- measured on OTHER models and data, not comparable\n",
    ]
    for k, v in PAPERS.items():
        lines.append(f"- {k}: " + "; ".join(f"{a} {b}" for a, b in v.items()))
    return "\n".join(lines) + "\n"


def cost_table(res: dict[str, Any]) -> str:
    """Per-method cost of the LDS run, with each figure as a ratio to the first AirRep encoder's."""
    methods = res["methods"]
    ref = next((methods[m]["cost"] for m in methods if m.startswith("airrep")), None)

    def ratio(value: float, key: str) -> str:
        base = ref[key] if ref else 0.0
        return f"{value / base:.1f}x" if base else "-"

    rows = []
    for m, r in methods.items():
        c = r["cost"]
        rows.append(
            [
                m,
                fmt(c["prepare_seconds"], 2),
                ratio(c["prepare_seconds"], "prepare_seconds"),
                fmt(c["seconds_per_query"] * 1000, 2),
                ratio(c["seconds_per_query"], "seconds_per_query"),
                fmt(c["storage_bytes_per_train_example"] / 1024, 2),
                ratio(c["storage_bytes_per_train_example"], "storage_bytes_per_train_example"),
            ]
        )
    head = ["method", "prepare (s)", "x AirRep", "ms per query", "x AirRep", "KiB per train ex.", "x AirRep"]
    return markdown_table(head, rows)


def paired_gains(lds: dict[str, Any]) -> str:
    """Each trained AirRep's LDS gain over the base encoder, paired by dev example, with a bootstrap CI."""
    import numpy as np
    from airsearch.trainers.evaluation.metrics import bootstrap_mean_ci

    methods = lds["methods"]
    if "base" not in methods:
        return ""
    base = np.asarray(methods["base"]["per_query"], dtype=np.float64)
    lines = []
    for m in (m for m in methods if m.startswith("airrep")):
        gain = np.asarray(methods[m]["per_query"], dtype=np.float64) - base
        ci = bootstrap_mean_ci(gain, n_resamples=2000)
        lines.append(
            f"- {m} - base: {100 * ci.mean:+.2f} [{100 * ci.low:+.2f}, {100 * ci.high:+.2f}] "
            f"(x100; paired bootstrap over {ci.n} dev examples; better on {np.mean(gain > 0):.0%} of them)"
        )
    return "\nPaired gain over the base encoder:\n\n" + "\n".join(lines) if lines else ""


def display_path(path: str) -> str:
    """``path`` relative to the repository when it lies inside it (summaries are committed)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return path


def machine() -> str:
    """The machine the stages ran on, in words (recorded in the summary)."""
    import os
    import platform

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {gpu}, torch {torch.__version__}"
