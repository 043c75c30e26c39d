"""The converged reproduction's tables (issue 24) for ``render_results.py``: the AirRep encoders trained
until their held-out LDS stopped rising (``benchmarks/reproduce.py --out .../converged``), against the
rows the goals compare them with. Each table reads the full run's own evaluation stage
(``eval/<kind>``) once it is there, else the interim evaluation of the encoders that had finished
(``benchmarks/reproduce_interim.py``, ``eval/interim_<tag>_<kind>``)."""

from __future__ import annotations

from typing import Any

from results_tables import KINDS, READABLE, RESULTS, ROOT, load, sources, table, x100

CONVERGED = f"{RESULTS}/reproduction/converged"


CONVERGED_ROWS = [
    "base",
    "bm25",
    "bm25:text=response",
    "repsim",
    "gradcos@1ckpt:proj_dim=384",
    "gradcos@1ckpt:proj_dim=2048",
    "tracin@1ckpt:proj_dim=384",
    "random",
]


def _converged_tag() -> str:
    """The interim evaluation's tag: the encoders that had finished (``retrain``, ``retrain_teacher``)."""
    found = sorted((ROOT / CONVERGED / "eval").glob("interim_*_lds_paper"), key=lambda q: len(q.name))
    return found[-1].name.removeprefix("interim_").removesuffix("_lds_paper")


def _converged(kind: str) -> str:
    """The folder of an evaluation (``lds_paper``, ``lds_local``, ``classify``, ``trace``): the full run's
    when it has written its file, else the interim one's."""
    full = f"{CONVERGED}/eval/{kind}"
    if (ROOT / full / CONVERGED_FILES[kind].split("/")[1]).is_file():
        return full
    return f"{CONVERGED}/eval/interim_{_converged_tag()}_{kind}"


def _converged_stage(kind: str) -> dict[str, Any]:
    return load(f"{CONVERGED}/stages/encoder_{kind}.json")


def _converged_name(method: str) -> str:
    kind = method.removeprefix("airrep:airrep_")
    if method.startswith("airrep:"):
        st = _converged_stage(kind)
        return f"AirRep, {KINDS[kind]} ({st['steps']} steps, stopped: {st['stop_reason']})"
    return READABLE.get(method, f"`{method}`")


def _converged_lds(protocol: str) -> dict[str, Any]:
    return load(f"{_converged(f'lds_{protocol}')}/lds.json")


CONVERGED_FILES = {
    "lds_paper": "lds_paper/lds.json",
    "lds_local": "lds_local/lds.json",
    "classify": "classify/classify.json",
    "trace": "trace/trace_entity_swap.json",
    "trace_entity_swap": "trace/trace_entity_swap.json",
    "trace_pii": "trace/trace_pii.json",
}
# the rows the issue pairs each encoder with
PAIRED_WITH = ("base", "bm25", "bm25:text=response", "repsim", "gradcos@1ckpt:proj_dim=384")


def _converged_sources(depth: int, *kinds: str) -> str:
    files = (CONVERGED_FILES[k].split("/") for k in kinds)
    paths = (f"{_converged(folder)}/{name}" for folder, name in files)
    return sources(*(q for q in paths if (ROOT / q).is_file()), depth=depth)


def converged_headline(depth: int) -> str:
    encoders = [m for m in _converged_lds("paper")["methods"] if m.startswith("airrep:")]
    rows = []
    for m in encoders + CONVERGED_ROWS:
        cells = []
        for protocol in ("paper", "local"):
            entry = _converged_lds(protocol)["methods"].get(m)
            cells.append(x100(entry["lds"]) if entry else "not run")
        rows.append([_converged_name(m), *cells])
    head = ["method", "LDS x100, paper gold [95% CI]", "LDS x100, local gold [95% CI]"]
    return table(head, rows) + "\n" + _converged_sources(depth, "lds_paper", "lds_local")


def converged_paired(depth: int) -> str:
    rows = []
    for key in _converged_lds("paper")["paired"]:
        if not key.startswith("airrep:"):
            continue
        mine, other = key.split(" - ", 1)
        if other not in PAIRED_WITH:
            continue
        cells = [
            x100(_converged_lds(p)["paired"].get(key, {}).get("clustered"), sign=True)
            for p in ("paper", "local")
        ]
        rows.append([f"{_converged_name(mine)} - {_converged_name(other)}", *cells])
    head = ["paired difference (x100, 95% clustered CI)", "paper gold", "local gold"]
    return table(head, rows) + "\n" + _converged_sources(depth, "lds_paper", "lds_local")


def converged_training(depth: int) -> str:
    rows, paths = [], []
    for kind in ("retrain", "teacher"):
        path = f"{CONVERGED}/stages/encoder_{kind}.json"
        if not (ROOT / path).is_file():
            rows.append([KINDS[kind], "training", "", "", "", ""])
            continue
        st, paths = load(path), [*paths, path]
        rows.append(
            [
                KINDS[kind],
                f"{st['steps']} ({st['stop_reason']})",
                f"step {st['best_step']}",
                f"{100 * st['base_lds']:.1f} -> {100 * st['best_lds']:.1f}",
                f"{st['best_lds'] / st['base_lds']:.2f}x",
                f"{st['seconds_per_step']:.1f} s ({st['seconds'] / 3600:.1f} h)",
            ]
        )
    head = ["encoder", "steps (stop)", "kept", "held-out LDS x100, base -> kept", "gain", "per step (wall)"]
    return table(head, rows) + "\n" + sources(*paths, depth=depth)


def converged_goals(depth: int) -> str:
    """Issue 24's goals, each read from the converged run's files (the retraining-label encoder)."""
    enc = "airrep:airrep_retrain"
    paper = _converged_lds("paper")
    lds = {m: v["lds"]["mean"] for m, v in paper["methods"].items()}
    pair = {
        k.split(" - ", 1)[1]: v["clustered"] for k, v in paper["paired"].items() if k.startswith(enc + " - ")
    }
    cls = load(f"{_converged('classify')}/classify.json")["methods"]
    swap = load(f"{_converged('trace')}/trace_entity_swap.json")["methods"]
    pii_path = ROOT / _converged("trace") / "trace_pii.json"
    pii = load(f"{_converged('trace')}/trace_pii.json")["methods"] if pii_path.is_file() else None
    st = _converged_stage("retrain")
    ratio = lds[enc] / lds["base"]
    yes = {True: "met", False: "not met"}
    rows = [
        ["stopped on a plateau, not a cap", f"{st['steps']} steps, stop: {st['stop_reason']}", yes[st["stop_reason"] == "plateau"]],
        ["LDS >= 2x the base encoder's (paper: 3.4x)", f"{ratio:.2f}x ({100 * lds[enc]:.1f} vs {100 * lds['base']:.1f})", yes[ratio >= 2]],
        ["beats full-text BM25, paired interval above 0", x100(pair["bm25"], sign=True), yes[pair["bm25"]["low"] > 0]],
        ["moonshot: >= `gradcos@1ckpt:proj_dim=384` (equal storage)", x100(pair["gradcos@1ckpt:proj_dim=384"], sign=True), yes[pair["gradcos@1ckpt:proj_dim=384"]["mean"] >= 0]],
        ["classification top-1 >= 95%", f"{100 * cls[enc]['top1']:.0f}% (base {100 * cls['base']['top1']:.0f}%)", yes[cls[enc]["top1"] >= 0.95]],
        ["entity-swap tracing, R@k vs its base encoder", f"{100 * swap[enc]['r_at_k']:.1f} vs {100 * swap['base']['r_at_k']:.1f}", "worse than base" if swap[enc]["r_at_k"] < swap["base"]["r_at_k"] else "not worse"],
    ]  # fmt: skip
    if pii:
        rows.append(["PII tracing top-1 vs its base encoder", f"{100 * pii[enc]['top1']:.0f}% vs {100 * pii['base']['top1']:.0f}%",
                     "worse than base" if pii[enc]["top1"] < pii["base"]["top1"] else "not worse"])  # fmt: skip
    head = ["goal (retraining-label encoder; paper-protocol gold, clustered CI)", "measured", ""]
    return table(head, rows) + "\n" + _converged_sources(depth, "lds_paper", "classify", "trace_entity_swap")


TRACING_ROWS = ("base", "bm25", "random", "tracin", "gradcos", "dda", "haif", "daunce-bb")


def converged_tracing(depth: int) -> str:
    """Classification top-1, entity-swap AUC / R@k and PII top-1 of every encoder and the other rows."""
    cls = load(f"{_converged('classify')}/classify.json")["methods"]
    swap = load(f"{_converged('trace')}/trace_entity_swap.json")["methods"]
    pii_path = ROOT / _converged("trace") / "trace_pii.json"
    pii = load(f"{_converged('trace')}/trace_pii.json")["methods"] if pii_path.is_file() else {}
    every = list(dict.fromkeys([*cls, *swap, *pii]))  # a method's checkpoints differ between the runs
    names = [m for m in every if m.startswith("airrep:")]
    names += [m for m in every if m.split("@")[0].split(":")[0] in TRACING_ROWS]
    rows = []
    for m in names:
        c, s, q = cls.get(m), swap.get(m), pii.get(m)
        rows.append([
            _converged_name(m),
            f"{100 * c['top1']:.0f}%" if c else "not run",
            f"{100 * s['auc']:.1f} / {100 * s['r_at_k']:.1f}" if s else "not run",
            f"{100 * q['top1']:.0f}%" if q else ("not run yet" if not pii else "not run"),
        ])  # fmt: skip
    head = ["method", "classification top-1", "entity-swap AUC / R@k (x100)", "PII top-1"]
    return table(head, rows) + "\n" + _converged_sources(depth, "classify", "trace_entity_swap", "trace_pii")


STEP_COST = f"{RESULTS}/train_steps.json"
STEP_OPTIONS = {
    "full": "every layer trained (the paper's setting; the converged run)",
    "freeze3": "embeddings + lowest 3 of 6 layers frozen, cached per row",
    "freeze5": "embeddings + lowest 5 of 6 layers frozen, cached per row",
    "dev16": "16 dev examples per step instead of 40",
    "len64": "64-token budget instead of 128 (changes the query-time encoder)",
}


def converged_step_cost(depth: int) -> str:
    """Issue 24's step-cost options at equal CPU time (``benchmarks/bench_train_steps.py``)."""
    res = load(STEP_COST)
    budget, full = res["cpu_budget"], res["options"][0]["cpu_seconds_per_step"]
    fractions = (0.25, 0.5, 1.0)
    rows = []
    for r in res["options"]:
        best = []
        for f in fractions:
            seen = [c["lds"] for c in r["curve"] if c["cpu"] <= f * budget * 1.0001 and c["step"] > 0]
            best.append(f"{100 * max(seen):.1f}" if seen else "n/a")
        rows.append([
            f"`{r['option']}`: {STEP_OPTIONS.get(r['option'], '')}",
            f"{r['cpu_seconds_per_step']:.1f} ({full / r['cpu_seconds_per_step']:.2f}x)",
            str(int(budget // r["cpu_seconds_per_step"])),
            *best,
        ])  # fmt: skip
    head = ["option", "CPU-s per step (speed-up)", "steps in budget"]
    head += [f"best held-out LDS x100 by {f * budget:.0f} CPU-s" for f in fractions]
    tok = res["profile"]["full"]["tokenize_step_rows"]["cpu"]
    note = (
        f"\nTokenising one step's rows: {tok:.3f} CPU-s of the full step's {full:.1f} (what a pre-tokenised"
        " cache would save).\n"
    )
    return table(head, rows) + note + "\n" + sources(STEP_COST, depth=depth)


SWEEP = f"{RESULTS}/size_sweep/converged"
SWEEP_ENCODERS = {
    "encoder-retrain": "that size's retraining labels",
    "encoder-teacher": "that size's grad-cos teacher labels",
    "ablation-volume": "more grad-cos teacher labels (ablation)",
    "ablation-mix": "more teacher labels + the retraining labels (ablation)",
}


def _at_the_stop(curve: list[float]) -> str:
    """How a held-out curve (base first) stood when training stopped."""
    base, trained = curve[0], curve[1:]
    rising = 0  # measurements in a row, up to the last, that rose
    while rising + 1 < len(trained) and trained[-1 - rising] > trained[-2 - rising]:
        rising += 1
    if max(trained) <= base:
        return "never above its base" + (
            f"; rising over its last {rising + 1} measurements" if rising else ""
        )
    return "rising at the end" if trained[-1] >= max(trained) else "past its best"


def converged_sweep_training(depth: int) -> str:
    """Every encoder of the converged size sweep: steps, stop, the held-out curve and how it stood."""
    rows, paths = [], []
    for path in sorted((ROOT / SWEEP / "stages").glob("S*-*.json")):
        size, what = path.stem.split("-", 1)
        if what not in SWEEP_ENCODERS:
            continue
        st = load(f"{SWEEP}/stages/{path.name}")
        paths.append(f"{SWEEP}/stages/{path.name}")
        curve = [c["lds"] for c in st["lds_curve"]]
        every = st["lds_curve"][1]["step"] - st["lds_curve"][0]["step"] if len(curve) > 1 else 0
        rows.append([
            f"{size}, {SWEEP_ENCODERS[what]}",
            f"{st['steps']} ({st['stop_reason']})",
            f"step {st['best_step']}",
            " -> ".join(f"{100 * v:.1f}" for v in curve) + (f" (every {every} steps)" if every else ""),
            _at_the_stop(curve),
            f"{st['seconds_per_step']:.1f} s",
        ])  # fmt: skip
    head = ["encoder", "steps (stop)", "kept", "held-out LDS x100, base first", "at the stop", "per step"]
    return table(head, rows) + "\n" + sources(*paths, depth=depth)


NOISE = f"{RESULTS}/heldout_noise/heldout_noise.json"


def converged_heldout_noise(depth: int) -> str:
    """Each kept encoder's held-out LDS with the interval of its own measurement, and minus its base
    (``benchmarks/heldout_noise.py``: subsets and dev examples of the held-out split resampled)."""
    res = load(NOISE)
    rows = []
    for st in res["studies"]:
        split = f"{st['subsets']} subsets x {st['dev_examples']} dev examples"
        rows.append([st["study"], split, "base encoder (untrained)", "", x100(st["base"]), ""])
        for kind, e in st["encoders"].items():
            rows.append([
                st["study"], split, KINDS.get(kind, SWEEP_ENCODERS.get(f"ablation-{kind}", kind)),
                f"{e['steps']} ({e['stop_reason']}, kept step {e['best_step']})",
                x100(e["lds"]), x100(e["minus_base"], sign=True),
            ])  # fmt: skip
    head = ["study", "held-out split", "encoder", "steps", "held-out LDS x100 [95%]", "minus base [95%]"]
    return table(head, rows) + "\n" + sources(NOISE, depth=depth)


RENDERERS = {
    "converged-heldout-noise": converged_heldout_noise,
    "converged-sweep-training": converged_sweep_training,
    "converged-step-cost": converged_step_cost,
    "converged-tracing": converged_tracing,
    "converged-headline": converged_headline,
    "converged-paired": converged_paired,
    "converged-training": converged_training,
    "converged-goals": converged_goals,
}
