"""The size sweep's report: LDS x cost per size, break-even query counts, Pareto plots, the ablations,
the SmolLM2 cost point and the issue's three goals, as ``README.md`` and ``results.json``.

Cost of a row (``eval lds`` measures ``prepare_seconds``, ``seconds_per_query`` and storage):

- one-off: AirRep = its labels (stage time) + its training + encoding the training rows; a gradient
  method or RepSim = the warm-up fine-tune it takes gradients on + the training rows' vectors (a proxy
  row: S0's warm-up); BM25, base, random = building their index;
- break-even: the query count after which AirRep's total (one-off + n x per query) is the lower:
  ``ceil((one_off_A - one_off_G) / (q_G - q_A))``, 0 when AirRep is never dearer, none when it is
  dearer per query and in one-off cost.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from reproduce_report import display_path, machine

from airsearch import (
    DevClusters,
    cluster_keys,
    curve_plot,
    fmt,
    markdown_table,
    paired_difference,
    pareto_frontier,
    pareto_plot,
    write_json_atomic,
    write_text_atomic,
)

_FOLDER = re.compile(r"airrep:airrep_(S\w+?)_(\S+)$")


@dataclasses.dataclass
class Row:
    """One LDS row with its costs."""

    name: str
    kind: str  # airrep | gradient | proxy | baseline
    lds: float
    low: float
    high: float
    ms_per_query: float
    bytes_per_example: float
    one_off_s: float


def kind_of(name: str) -> str:
    if name.startswith("airrep:"):
        return "airrep"
    if name.startswith("proxy:"):
        return "proxy"
    return "gradient" if "@" in name or name == "repsim" else "baseline"


def size_rows(size: str, res: dict, golds: dict, encoders: dict, ablations: dict) -> list[Row]:
    """The rows of one ``eval lds`` result with their one-off costs (module docstring)."""
    rows = []
    for name, r in res["methods"].items():
        c, kind = r["cost"], kind_of(name)
        one_off = c["prepare_seconds"]
        if kind == "airrep":
            trained = trained_encoder(name, encoders, ablations)
            one_off += trained["one_off_seconds"] if trained else math.nan
        elif kind in ("gradient", "proxy"):
            warm = golds["S0" if kind == "proxy" else size]["record"].get("warmup") or {}
            one_off += warm.get("seconds", 0.0)
        rows.append(
            Row(
                name, kind, r["lds"]["mean"], r["lds"]["low"], r["lds"]["high"],
                1000 * c["seconds_per_query"], c["storage_bytes_per_train_example"], one_off,
            )
        )  # fmt: skip
    return rows


def trained_encoder(name: str, encoders: dict, ablations: dict) -> dict | None:
    """The training stage of the row ``airrep:airrep_<size>_<kind>`` (a main or an ablation encoder)."""
    m = _FOLDER.match(name)
    if not m:  # an encoder trained elsewhere (SweepScale.transfer_encoders), by its folder name
        return encoders.get("transfer", {}).get(name.removeprefix("airrep:"))
    size, kind = m.groups()
    return encoders.get(size, {}).get(kind) or (
        ablations.get(kind.replace("plus", "+")) if size == "S0" else None
    )


def break_even(a: Row, g: Row) -> float:
    """Queries after which ``a`` (AirRep) costs less in total than ``g``; ``inf`` when never."""
    dq, do = (g.ms_per_query - a.ms_per_query) / 1000, a.one_off_s - g.one_off_s
    if do <= 0 and dq >= 0:
        return 0.0
    return math.inf if dq <= 0 else float(math.ceil(do / dq))


def paired(res_a: dict, a: str, res_b: dict, b: str) -> dict[str, Any]:
    """``a - b`` per dev example (two ``eval lds`` results on one gold), cluster-bootstrapped as they were."""
    clusters = DevClusters(**res_a["clusters"])
    keys = cluster_keys(clusters, res_a["config"]["cluster_field"])
    d = paired_difference(a, b, res_a["methods"][a]["per_query"], res_b["methods"][b]["per_query"], keys)
    return d.to_dict()


def goals(sizes: list[str], lds: dict, rows: dict[str, list[Row]], cost: dict) -> dict[str, dict]:
    """The issue's three goals, each met / not met / not measured with its numbers."""
    s0, s2 = sizes[0], sizes[-1]
    out: dict[str, dict] = {}
    checks = {}
    for r in (r for r in rows[s0] if r.kind == "airrep"):
        diffs = {b: lds[s0]["paired"].get(f"{r.name} - {b}", {}).get("clustered") for b in ("bm25", "base")}
        checks[r.name] = {b: d for b, d in diffs.items() if d}
    ok = [n for n, d in checks.items() if len(d) == 2 and all(x["low"] > 0 for x in d.values())]
    out["S0: AirRep beats BM25 and base"] = {"status": "met" if ok else "not met", "by": ok, "paired": checks}
    front = {}
    for a in (r for r in rows[s2] if r.kind == "airrep"):
        front[a.name] = [
            g.name
            for g in rows[s2]
            if g.kind in ("gradient", "proxy") and g.ms_per_query < a.ms_per_query and g.lds > a.lds
        ]
    ok = [n for n, dom in front.items() if not dom]
    out[f"{s2}: AirRep on the Pareto frontier"] = {
        "status": ("met" if ok else "not met") if front else "not measured",
        "undominated": ok,
        "dominated_by": front,
    }
    ratios = {k: v for k, v in cost.get("ratio_to_airrep", {}).items() if k.startswith("gradcos")}
    out["SmolLM2-135M: gradient >= 100x AirRep per query"] = {
        "status": ("met" if min(ratios.values()) >= 100 else "not met") if ratios else "not measured",
        "ratios": cost.get("ratio_to_airrep", {}),
        "why": cost.get("skipped"),
    }
    return out


def lds_cost_table(rows: list[Row], airrep: list[Row]) -> str:
    head = ["method", "LDS (x100)", "95% CI (clustered)", "ms / query", "KiB / example", "one-off (s)"]
    head += [f"break-even vs {a.name.split(':', 1)[1]}" for a in airrep]
    body = []
    for r in sorted(rows, key=lambda r: -r.lds if math.isfinite(r.lds) else math.inf):
        cells = [
            r.name, fmt(r.lds, 2, 100), f"[{fmt(r.low, 2, 100)}, {fmt(r.high, 2, 100)}]",
            fmt(r.ms_per_query, 1), fmt(r.bytes_per_example / 1024, 2), fmt(r.one_off_s, 1),
        ]  # fmt: skip
        for a in airrep:
            n = break_even(a, r) if r.kind in ("gradient", "proxy") else math.nan
            cells.append("never" if n == math.inf else ("–" if n != n else f"{int(n):,}"))
        body.append(cells)
    return markdown_table(head, body)


def write_report(
    sweep: Any, lms: dict, golds: dict, encoders: dict, lds: dict, proxy: dict, ablations: dict, cost: dict
) -> dict[str, Any]:
    """Write ``README.md``, ``results.json``, ``pareto_<size>.png`` and ``lm_curves.png`` into ``sweep.out``."""
    out, p = sweep.out, sweep.p
    sizes = [s.name for s in p.sizes]
    rows: dict[str, list[Row]] = {}
    for s in sizes:
        rows[s] = size_rows(s, lds[s], golds, encoders, ablations)
        if s in proxy:
            rows[s] += size_rows(s, proxy[s], golds, encoders, ablations)
        pts = {r.name: (r.ms_per_query, r.lds) for r in rows[s] if r.name != "random"}
        pareto_plot(
            out / f"pareto_{s}.png", pts, errors={r.name: (r.low, r.high) for r in rows[s]},
            groups={r.name: r.kind for r in rows[s]}, xlabel="ms per query (log)", ylabel="LDS",
            title=f"{s} ({lms[s]['num_parameters'] / 1e6:.2f}M parameters): LDS vs cost per query",
        )  # fmt: skip
    curves = {f"{s} ({lms[s]['num_parameters'] / 1e6:.2f}M)": lms[s]["held_out_curve"] for s in sizes}
    curve_plot(out / "lm_curves.png", curves, title="Held-out loss during pre-training", xlabel="step",
               ylabel="mean token NLL")  # fmt: skip
    result = {
        "scale": sweep.scale,
        "preset": dataclasses.asdict(p),
        "machine": machine(),
        "stage_seconds": sweep.stages.total_seconds(),
        "lms": {s: {k: v for k, v in lms[s].items() if k != "lm"} for s in sizes},
        "rows": {s: [dataclasses.asdict(r) for r in rows[s]] for s in sizes},
        "frontier": {s: pareto_frontier({r.name: (r.ms_per_query, r.lds) for r in rows[s]}) for s in sizes},
        "ablations": ablation_rows(lds, encoders, ablations),
        "smollm2": {k: v for k, v in cost.items() if k != "timings"},
        "goals": goals(sizes, lds, rows, cost),
    }
    write_json_atomic(out / "results.json", result)
    write_text_atomic(out / "README.md", readme(sweep, result, rows, golds))
    return result


def ablation_rows(lds: dict, encoders: dict, ablations: dict) -> list[dict[str, Any]]:
    """Each S0 encoder: held-out-split LDS (the choice), gold LDS and its paired gain over the baseline."""
    res = lds.get("S0-ablations")
    if not res:
        return []
    names = list(res["methods"])
    base = next(n for n in names if n.endswith("_retrain"))
    trained = {**encoders["S0"], **ablations}
    held = {f"airrep:airrep_S0_{k.replace('+', 'plus')}": a["best_lds"] for k, a in trained.items()}
    out = []
    for n in (n for n in names if n.startswith("airrep:")):
        m = res["methods"][n]["lds"]
        gain = paired(res, n, res, base)["clustered"] if n != base else None
        out.append({"encoder": n, "held_out_split_lds": held.get(n), "gold": m, "gain_vs_retrain": gain})
    chosen = max(
        (r for r in out if r["held_out_split_lds"] is not None),
        key=lambda r: r["held_out_split_lds"],
        default=None,
    )
    for r in out:
        r["chosen"] = r is chosen
    return out


def readme(sweep: Any, res: dict, rows: dict[str, list[Row]], golds: dict) -> str:
    p, lines = sweep.p, []
    lines += [
        f"# Target-LM size sweep at scale '{sweep.scale}'\n",
        f"Machine: {res['machine']}. Stage time, summed: {res['stage_seconds'] / 60:.1f} min "
        "(each stage's `stage_seconds` is in `stages/`). Command: "
        f"`python benchmarks/size_sweep.py --scale {sweep.scale}`.\n",
        "## Target LMs (one BPE tokenizer, one corpus)\n",
        markdown_table(
            ["size", "layout", "parameters", "steps run (max)", "held-out NLL first -> last", "flattened"],
            [
                [
                    s.name,
                    f"hidden {s.hidden}, {s.layers} layers",
                    f"{res['lms'][s.name]['num_parameters']:,}",
                    f"{res['lms'][s.name]['steps_run']} ({s.steps})",
                    " -> ".join(
                        f"{c[1]:.3f}"
                        for c in res["lms"][s.name]["held_out_curve"][
                            :: max(1, len(res["lms"][s.name]["held_out_curve"]) - 1)
                        ]
                    ),
                    res["lms"][s.name]["flattened"],
                ]
                for s in p.sizes
            ],
        ),  # fmt: skip
        "Curves: [lm_curves.png](lm_curves.png). Flattened = the last "
        f"{p.patience} measurements (every {p.eval_every} steps) improved the held-out loss by less than "
        f"{p.min_delta:.0%}.\n",
    ]
    gold = golds[p.sizes[0].name]["record"]
    lines.append(
        f"Gold (paper protocol, at each size from that size's LM): {p.paper_splits} splits x {p.paper_subsets}"
        f" subsets of {p.paper_subset} rows, {p.paper_dev} dev queries per split, warm-up on {p.warmup} rows,"
        f" {gold['steps_per_finetune']} steps per fine-tune, max_length {gold['max_length']}. The same subsets"
        " and queries at every size.\n"
    )
    for s in (s.name for s in p.sizes):
        airrep = [r for r in rows[s] if r.kind == "airrep"]
        lines += [
            f"## {s}: LDS x cost\n",
            lds_cost_table(rows[s], airrep),
            f"Pareto plot: [pareto_{s}.png](pareto_{s}.png); frontier: {', '.join(res['frontier'][s])}.\n",
        ]
    lines += ["## Ablations at S0 (chosen on the held-out retraining split, never on the gold)\n"]
    if res["ablations"]:
        lines.append(
            markdown_table(
                [
                    "encoder",
                    "held-out-split LDS",
                    "gold LDS (x100) [CI]",
                    "gain vs retrain (x100) [CI]",
                    "kept",
                ],
                [
                    [
                        a["encoder"],
                        fmt(a["held_out_split_lds"], 3),
                        f"{fmt(a['gold']['mean'], 2, 100)} [{fmt(a['gold']['low'], 2, 100)}, {fmt(a['gold']['high'], 2, 100)}]",
                        "–"
                        if not a["gain_vs_retrain"]
                        else f"{fmt(a['gain_vs_retrain']['mean'], 2, 100)} "
                        f"[{fmt(a['gain_vs_retrain']['low'], 2, 100)}, {fmt(a['gain_vs_retrain']['high'], 2, 100)}]",
                        "yes" if a["chosen"] else "",
                    ]
                    for a in res["ablations"]
                ],
            )  # fmt: skip
        )
    not_run = [
        a
        for a in ("volume", "mix", "lr-half", "lr-double", "epochs+2", "seq-64", "seq-256")
        if a not in p.ablations
    ]
    lines.append(f"Not run at this scale: {', '.join(not_run) or 'none'}.\n")  # fmt: skip
    sm = res["smollm2"]
    lines.append("## SmolLM2-135M cost point (cost only)\n")
    if "skipped" in sm:
        lines.append(f"Not measured: {sm['skipped']}.\n")
    else:
        lines.append(
            f"{sm['num_parameters']:,} parameters; {len(sm['examples'])} held-out rows cut at {sm['max_tokens']} "
            f"tokens (LM tokens {sm['lm_tokens']}, encoder tokens {sm['encoder_tokens']}); AirRep encode "
            f"{1000 * sm['airrep_encode_seconds']:.1f} ms per query.\n"
        )
        lines.append(
            markdown_table(
                ["gradient per query", "seconds", "x AirRep"],
                [
                    [k, fmt(v, 2), f"{sm['ratio_to_airrep'][k]:.0f}x"]
                    for k, v in sm["gradient_seconds"].items()
                ],
            )
        )
    lines.append("## Goals (issue 11)\n")
    for g, v in res["goals"].items():
        lines.append(f"- **{g}: {v['status']}.** `{_short(v)}`")
    lines.append(f"\nTarget LM folders: {display_path(str(sweep.out))}/<size>/lm (not committed).")
    return "\n".join(lines) + "\n"


def _short(v: dict) -> str:
    """The goal's numbers in one line (intervals x100)."""

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            if {"mean", "low", "high"} <= set(x):
                return f"{100 * x['mean']:+.2f} [{100 * x['low']:+.2f}, {100 * x['high']:+.2f}]"
            return {k: walk(y) for k, y in x.items() if k != "status"}
        return round(x, 1) if isinstance(x, float) else x

    return str(walk(v))
