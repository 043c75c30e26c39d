"""The Markdown page of ``bench_train_steps.py``: the per-phase profile and the options' best held-out
LDS at equal CPU time, rendered from the result the bench writes."""

from __future__ import annotations

from typing import Any

FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # of the CPU budget: where the options are compared


def best_by(curve: list[dict], cpu: float) -> float | None:
    seen = [c["lds"] for c in curve if c["cpu"] <= cpu * 1.0001 and c["step"] > 0]
    return max(seen) if seen else None


def markdown(res: dict[str, Any]) -> str:
    budget = res["cpu_budget"]
    lines = [
        "# AirRep training steps on a CPU: CPU seconds per step and held-out LDS at equal CPU time",
        "",
        f"Machine: {res['machine']}; torch threads per run: {res['threads']}. Labels: {res['labels']} "
        f"(the held-out split, seed and schedule of the reference {res['reference'] or '(none: full trained here)'}). "
        f"Budget: the CPU time of {res['full_steps']} `full` steps, {budget:.0f} CPU-s per option "
        "(held-out measurements excluded).",
        "",
        "Token lengths of the rows (template included, before any budget): "
        + ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in res["token_lengths"].items()
        ),
        "",
        "## Per-phase profile (CPU / wall seconds per step)",
        "",
    ]
    first = next(iter(res["profile"].values()))
    lines += ["| option | " + " | ".join(first) + " |", "|---|" + "---|" * len(first)]
    for name, prof in res["profile"].items():
        lines.append(
            f"| {name} | " + " | ".join(f"{v['cpu']:.2f} / {v['wall']:.2f}" for v in prof.values()) + " |"
        )
    points = [f * budget for f in FRACTIONS]
    lines += [
        "",
        "## Best held-out LDS by equal CPU time",
        "",
        "| option | CPU-s / step | wall s / step | steps run | base | "
        + " | ".join(f"{p:.0f} CPU-s" for p in points)
        + " | stopped |",
        "|---|---|---|---|---|" + "---|" * len(points) + "---|",
    ]
    for r in res["options"]:
        cells = [best_by(r["curve"], p) for p in points]
        lines.append(
            f"| {r['option']} | {r['cpu_seconds_per_step']:.2f} | {r['wall_seconds_per_step']:.2f} | "
            f"{r['steps']} | {r['curve'][0]['lds']:.3f} | "
            + " | ".join("n/a" if c is None else f"{c:.3f}" for c in cells)
            + f" | {r['stopped']} |"
        )
    ref = res["options"][0].get("reference_seconds_per_step_quiet")
    if res.get("full_cost"):
        c = res["full_cost"]
        lines += ["", f"`full`'s CPU per step: the median of {c['steps']} steps run here like the options' "
                  "(the profile's few steps ran under a heavier load)."]  # fmt: skip
    if ref:
        lines += ["", f"Wall seconds per step are this loaded machine's; the reference run's own was {ref:.1f} s "
                  "per `full` step (2 threads, averaged over its whole run and its varying load)."]  # fmt: skip
    return "\n".join(lines) + "\n"
