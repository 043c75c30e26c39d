"""The summary ``README.md`` of ``benchmarks/reproduce.py``: tables, paired gains, cost, the papers' numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airsearch import fmt, markdown_table

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
    scale: str,
    stage_seconds: float,
    lm_path: str,
    teacher: dict,
    golds: dict[str, dict],
    lds: dict[str, dict],
    cls: dict,
    trace: dict,
) -> str:
    """The study's ``README.md``: every table, the paired differences, the gold movement, the cost table
    and the papers' numbers. ``golds`` / ``lds`` hold one stage result per gold protocol."""
    lines = [
        f"# Reproduction at scale '{scale}'\n",
        f"Machine: {machine()}. Stage time, summed: {stage_seconds / 60:.1f} min "
        "(each stage's `stage_seconds` is in `stages/`).\n",
        f"Target LM: {display_path(lm_path)}. Best gradient teacher (LDS on training labels): {teacher['teacher']}.\n",
    ]
    for protocol in (p for p in ("paper", "local") if p in lds):
        lines += lds_section(protocol, golds[protocol], lds[protocol])
    if golds:
        lines += ["\n## How far the gold fine-tunes move\n", movement_table(golds)]
    if len(lds) == 2:
        lines += [
            "\n## LDS orderings under the two gold protocols\n",
            ordering_changes(lds["local"], lds["paper"]),
        ]
    lines += [
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
    ]
    if lds:
        protocol = "paper" if "paper" in lds else "local"
        lines += [
            f"\n## Cost per attributed query (ours, LDS run, {protocol} gold)\n",
            cost_table(lds[protocol]),
        ]
    lines.append("\n## The papers' own numbers -- measured on OTHER models and data, not comparable\n")
    for k, v in PAPERS.items():
        lines.append(f"- {k}: " + "; ".join(f"{a} {b}" for a, b in v.items()))
    return "\n".join(lines) + "\n"


PROTOCOL_TEXT = {
    "paper": "gradient methods take gradients on a warm-up model fine-tuned on {n} held-out-task rows set "
    "aside; each gold fine-tune starts from the base LM, on {m} rows for {steps} steps (AirRep's protocol, "
    "scaled down).",
    "local": "each gold fine-tune starts from the very model the gradients are taken on, on {m} rows for "
    "{steps} steps (close to TracIn's linearisation, so it favours gradient methods).",
}


def lds_section(protocol: str, gold: dict[str, Any], lds: dict[str, Any]) -> list[str]:
    """One protocol's LDS table (clustered intervals), its gold in words and the paired differences."""
    rec = gold["record"]
    cfg, warm = rec["config"], rec.get("warmup") or {}
    text = PROTOCOL_TEXT[protocol].format(
        n=warm.get("n"), m=cfg["subset_size"], steps=rec["steps_per_finetune"]
    )
    ways = " x ".join(lds["clusters"]["ways"]) or "dev examples"
    out = [
        f"\n## LDS on held-out tasks, {protocol} gold protocol (ours; AirRep Table 1)\n",
        f"Gold: {text} {sum(lds['gold']['n_subsets'])} fine-tunes over {len(lds['gold']['splits'])} splits, "
        f"max_length {lds['gold']['max_length']} in every stage. Intervals: 95% cluster bootstrap over "
        f"{ways}, crossed (the example-level interval is in the JSON as `lds_examples`).\n",
        lds["table"],
        paired_gains(lds),
    ]
    if protocol == "local":
        out.append(
            "\nDDA is not run under the local protocol: its base model th0 is the model the gradients are "
            "taken on, so the debias term only rescales grad-cos (beta < 1), cancels it (beta = 1) or "
            "flips it (beta > 1)."
        )
    return out


def movement_table(golds: dict[str, dict]) -> str:
    """Per protocol: fine-tunes, steps, mean parameter distance and the loss changes they cause."""

    def num(x: float | None, digits: int = 3) -> str:
        return "-" if x is None else f"{x:.{digits}f}"

    rows = []
    for protocol, gold in golds.items():
        rec = gold["record"]
        m, w = rec["movement"], rec.get("warmup")
        rows.append(
            [
                f"{protocol}: gold fine-tunes", m["jobs"], rec["steps_per_finetune"], num(m["param_distance"]),
                num(m["relative_distance"], 4), f"{num(m['train_loss_before'])} -> {num(m['train_loss_after'])}",
                f"{num(m['dev_loss_before'])} -> {num(m['dev_loss_after'])}", num(m["dev_loss_spread"]),
            ]
        )  # fmt: skip
        if w:
            rows.append(
                [
                    f"{protocol}: warm-up model", 1, w["steps"], num(w["param_distance"]),
                    num(w["relative_distance"], 4), f"{num(w['loss_before'])} -> {num(w['loss_after'])}",
                    f"{num(w['held_out_loss_before'])} -> {num(w['held_out_loss_after'])}", "-",
                ]
            )  # fmt: skip
    head = [
        "fine-tune", "count", "steps each", "mean ||dtheta||", "relative", "own-rows loss", "dev loss",
        "dev-loss spread across subsets",
    ]  # fmt: skip
    return markdown_table(head, rows) + (
        "\nDistances are L2 over every weight from the model the fine-tune starts at; the dev loss of the "
        "warm-up is on held-out rows of the same tasks."
    )


def ordering_changes(local: dict[str, Any], paper: dict[str, Any]) -> str:
    """Each method's LDS and rank under both protocols, and the pairs whose order flips."""
    shared = [m for m in local["methods"] if m in paper["methods"]]

    def ranks(res: dict[str, Any]) -> dict[str, int]:
        means = {m: res["methods"][m]["lds"]["mean"] for m in shared}
        order = sorted(shared, key=lambda m: -(means[m] if means[m] == means[m] else -1e9))
        return {m: i + 1 for i, m in enumerate(order)}

    rl, rp = ranks(local), ranks(paper)
    rows = [
        [
            m,
            fmt(local["methods"][m]["lds"]["mean"], 2, 100),
            rl[m],
            fmt(paper["methods"][m]["lds"]["mean"], 2, 100),
            rp[m],
        ]
        for m in sorted(shared, key=lambda m: rp[m])
    ]
    flips = [
        f"{a} / {b}"
        for i, a in enumerate(shared)
        for b in shared[i + 1 :]
        if (rl[a] < rl[b]) != (rp[a] < rp[b])
    ]
    table = markdown_table(["method", "LDS local", "rank", "LDS paper", "rank"], rows)
    return (
        table
        + f"\nPairs whose order differs between the protocols ({len(flips)}): "
        + ("; ".join(flips) if flips else "none")
    )


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
    """Each trained AirRep minus the base encoder, BM25 and the best gradient row, paired by dev example,
    with the cluster-bootstrap interval that ``eval lds`` recorded (``paired`` in its JSON)."""
    methods, paired = lds["methods"], lds.get("paired", {})
    others = [m for m in methods if not m.startswith("airrep")]
    gradient = [m for m in others if "@" in m or m.startswith(("haif", "repsim", "daunce"))]
    finite = [m for m in gradient if methods[m]["lds"]["mean"] == methods[m]["lds"]["mean"]]
    best = max(finite, key=lambda m: methods[m]["lds"]["mean"], default=None)
    against = [m for m in ("base", "bm25", "bm25:text=response", best) if m in methods]
    lines = []
    for a in (m for m in methods if m.startswith("airrep")):
        for b in against:
            d = paired.get(f"{a} - {b}")
            if d is None:
                continue
            c = d["clustered"]
            lines.append(
                f"- {a} - {b}: {100 * c['mean']:+.2f} [{100 * c['low']:+.2f}, {100 * c['high']:+.2f}] "
                f"(x100; cluster bootstrap; better on {d['share_better']:.0%} of {c['n']} dev examples)"
            )
    return "\nPaired differences (AirRep minus another row):\n\n" + "\n".join(lines) if lines else ""


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
