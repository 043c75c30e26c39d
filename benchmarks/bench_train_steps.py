"""What makes an AirRep training step cheaper on a CPU, and what it costs in held-out LDS (issue 24).

    python benchmarks/bench_train_steps.py --labels DIR --base-encoder DIR [--splits 12] [--holdout 2]
        [--budget 900] [--options full freeze3 freeze5 dev16] [--out benchmarks/results/train_steps]

Each option trains the same encoder on the same finished label splits (the first ``--splits`` of the
store: the last ``--holdout`` of them held out) for ``--budget`` seconds of wall time, measuring
held-out LDS every ``--eval-every`` steps, and is compared at **equal wall-clock time**: the best
held-out LDS reached by t seconds, for several t. Options:

- ``full``: every layer trained (the paper's setting), the CPU per-step sizes (8 subsets; every dev row
  of the split up to 128);
- ``freezeN``: embeddings and the lowest N layers frozen, their outputs computed once per row
  (``--freeze-layers N``; the saved encoder computes the same function);
- ``devN``: N dev examples per step instead of all;
- ``len64``: a 64-token budget instead of the encoder's own (the rows' token lengths are reported).

A per-phase profile of a few steps of ``full`` and of the first freeze option comes first: pass 1
(encode without grad), pass 2a (scores and embedding gradients), pass 2b (re-encode with grad and
back-propagate). Writes ``<out>.json`` and ``<out>.md``; encoders go to ``benchmarks/work/train_steps``.
The machine and its load average are recorded: on a shared machine seconds are noisy, so the options
run one after another in the order given and the load is printed beside each.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from bench_options import RESULTS, WORK, bench_parser  # noqa: E402

from airsearch import write_json_atomic, write_text_atomic  # noqa: E402

SCRATCH = {"dir": WORK / "train_steps"}  # --work: the encoders and checkpoints trained here

CHECKPOINTS_AT = (60, 120, 300, 600, 900, 1200, 1800)


def time_points(budget: float) -> list[int]:
    """The wall-clock times (s) at which the options are compared: the fixed points within the budget,
    and the budget itself."""
    return sorted({t for t in CHECKPOINTS_AT if t < budget} | {int(budget)})


class _Budget(Exception):
    pass


def options(names: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        if name == "full":
            out[name] = {}
        elif name.startswith("freeze"):
            out[name] = {"freeze_layers": int(name.removeprefix("freeze"))}
        elif name.startswith("dev"):
            out[name] = {"dev_per_step": int(name.removeprefix("dev"))}
        elif name.startswith("len"):
            out[name] = {"max_seq_length": int(name.removeprefix("len"))}
        else:
            raise SystemExit(f"unknown option {name!r}")
    return out


def short_encoder(base: str, length: int) -> str:
    from airsearch import AirRepEncoder

    path = SCRATCH["dir"] / f"base_{length}"
    if not (path / "airsearch_encoder.json").exists():
        AirRepEncoder.from_base(
            base if base != "default" else None, device="cpu", max_seq_length=length
        ).save(path)
    return str(path)


def token_lengths(base: str, splits: list[Any], examples: dict[str, Any]) -> dict[str, float]:
    import numpy as np

    from airsearch import AirRepEncoder

    enc = AirRepEncoder.load(base, device="cpu")
    ids = sorted({i for s in splits for m in s.members for i in m} | {i for s in splits for i in s.dev_ids})
    long = AirRepEncoder.from_base(None, device="cpu", max_seq_length=512)
    lengths = np.array([len(x) for x in long.input_ids([examples[i] for i in ids])])
    return {
        "rows": len(ids),
        "encoder_max_seq_length": enc.info.max_seq_length,
        "median_tokens": float(np.median(lengths)),
        "p90_tokens": float(np.percentile(lengths, 90)),
        "share_over_64": float((lengths > 64).mean()),
        "share_over_128": float((lengths > 128).mean()),
    }


def profile(cfg: Any, splits: list[Any], examples: dict[str, Any], steps: int = 4) -> dict[str, float]:
    """Seconds per phase of ``steps`` training steps (after one warm-up step)."""
    # the two passes are timed by wrapping the functions of the documented module that runs them
    # (the front door has no per-phase timer; tests/test_benchmarks_smoke.py allows this one import)
    import airsearch.trainers.encoder_training.two_pass as tp

    from airsearch import train_encoder

    spent = {"pass1_encode_no_grad": 0.0, "pass2b_encode_and_backprop": 0.0, "step_total": 0.0}
    counting = {"on": False}
    original = {"encode_no_grad": tp.encode_no_grad, "backprop_embeddings": tp.backprop_embeddings}

    def timed(name: str, key: str):
        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original[name](*a, **k)
            finally:
                if counting["on"]:
                    spent[key] += time.perf_counter() - t0

        return wrapper

    last = {"t": time.perf_counter()}

    def on_step(step: int, loss: float) -> None:
        now = time.perf_counter()
        if counting["on"]:
            spent["step_total"] += now - last["t"]
        counting["on"] = step >= 1
        last["t"] = time.perf_counter()
        if step > steps:
            raise _Budget

    tp.encode_no_grad = timed("encode_no_grad", "pass1_encode_no_grad")
    tp.backprop_embeddings = timed("backprop_embeddings", "pass2b_encode_and_backprop")
    out = SCRATCH["dir"] / "profile"
    shutil.rmtree(out, ignore_errors=True)
    try:
        train_encoder(
            cfg.replace(out=str(out), eval_every=10_000), splits=splits, examples=examples, on_step=on_step
        )
    except _Budget:
        pass
    finally:
        tp.encode_no_grad, tp.backprop_embeddings = (
            original["encode_no_grad"],
            original["backprop_embeddings"],
        )
    per = {k: v / steps for k, v in spent.items()}
    per["pass2a_scores_and_rest"] = (
        per["step_total"] - per["pass1_encode_no_grad"] - per["pass2b_encode_and_backprop"]
    )
    return {k: round(v, 3) for k, v in per.items()}


def run_option(
    name: str, cfg: Any, splits: list[Any], examples: dict[str, Any], budget: float
) -> dict[str, Any]:
    import json

    from airsearch import train_encoder

    out = SCRATCH["dir"] / name
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()

    def stop(step: int, loss: float) -> None:
        if time.monotonic() - started > budget:
            raise _Budget

    load_before = os.getloadavg()[0]
    try:
        result = train_encoder(
            cfg.replace(out=str(out)), splits=splits, examples=examples, on_step=stop
        ).to_dict()
        curve, stopped = result["lds_curve"], result["stop_reason"]
        steps, per_step = result["steps"], result["seconds_per_step"]
    except _Budget:
        log = json.loads((out / "training.json").read_text())
        curve, stopped = log["result"]["lds_curve"], "wall-clock budget"
        steps, per_step = log["result"]["steps"], log["result"]["seconds_per_step"]
    at = {}
    for t in time_points(budget):
        seen = [p["lds"] for p in curve if p["seconds"] <= t and p["step"] > 0]
        at[str(t)] = max(seen) if seen else None
    return {
        "option": name,
        "steps": steps,
        "seconds_per_step": per_step,
        "stopped": stopped,
        "base_lds": curve[0]["lds"],
        "best_lds": max((p["lds"] for p in curve if p["step"] > 0), default=None),
        "best_lds_by_seconds": at,
        "curve": curve,
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# AirRep training steps on a CPU: seconds per step and held-out LDS at equal wall time",
        "",
        f"Machine: {res['machine']}. Labels: {res['labels']['path']} (first {res['labels']['splits']} finished "
        f"splits, the last {res['labels']['holdout']} held out; {res['labels']['train_rows']} distinct rows). "
        f"Base encoder: {res['base_encoder']}. Budget {res['budget']} s per option, held-out LDS every "
        f"{res['eval_every']} steps.",
        "",
        "Token lengths of the rows (template included, before any budget): "
        + ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in res["token_lengths"].items()
        ),
        "",
        "## Per-phase profile (seconds per step)",
        "",
        "| option | " + " | ".join(next(iter(res["profile"].values())).keys()) + " |",
        "|---|" + "---|" * len(next(iter(res["profile"].values()))),
    ]
    for name, p in res["profile"].items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in p.values()) + " |")
    times = time_points(res["budget"])
    lines += [
        "",
        "## Held-out LDS at equal wall-clock time (best measured by t seconds)",
        "",
        "| option | s / step | steps in budget | base | "
        + " | ".join(f"t={t}s" for t in times)
        + " | load (before/after) |",
        "|---|---|---|---|" + "---|" * len(times) + "---|",
    ]
    for r in res["options"]:
        cells = [
            (
                "n/a"
                if r["best_lds_by_seconds"].get(str(t)) is None
                else f"{r['best_lds_by_seconds'][str(t)]:.3f}"
            )
            for t in times
        ]
        lines.append(
            f"| {r['option']} | {r['seconds_per_step']:.2f} | {r['steps']} | {r['base_lds']:.3f} | "
            + " | ".join(cells)
            + f" | {r['load_average_before']}/{r['load_average_after']} |"
        )
    if res.get("not_run"):
        lines += ["", f"Not run: {', '.join(res['not_run']['options'])} ({res['not_run']['why']})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(
        __doc__,
        out=RESULTS / "train_steps",
        out_help="results path without its suffix (.json and .md are written)",
        work=WORK / "train_steps",
    )
    ap.add_argument("--labels", required=True)
    ap.add_argument("--base-encoder", default="default")
    ap.add_argument("--splits", type=int, default=12)
    ap.add_argument("--holdout", type=int, default=2)
    ap.add_argument("--budget", type=float, default=900)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--options", nargs="+", default=["full", "freeze3", "freeze5", "dev16"])
    a = ap.parse_args(argv)
    SCRATCH["dir"] = a.work

    from airsearch import LabelStore, TrainConfig

    store = LabelStore.open(a.labels)
    splits = [
        s
        for s in store.splits(warn=False)
        if len(s.members) == max(len(x.members) for x in store.splits(warn=False))
    ][: a.splits]
    if len(splits) < a.splits:
        raise SystemExit(f"only {len(splits)} complete splits in {a.labels}; need {a.splits}")
    examples = store.examples()
    base = TrainConfig(
        out="unused", base_encoder=a.base_encoder, lr=a.lr, subsets_per_step=8, dev_per_step=128,
        holdout_splits=a.holdout, warmup_steps=10, seed=0, batch_size=16, device="cpu",
        max_steps=100_000, eval_every=a.eval_every, patience=0, checkpoint_every=a.eval_every,
    )  # fmt: skip
    opts = options(a.options)
    res: dict[str, Any] = {
        "machine": f"{os.cpu_count()}-core CPU ({_cpu_model()}), shared with other jobs",
        "labels": {
            "path": a.labels,
            "splits": a.splits,
            "holdout": a.holdout,
            "train_rows": len({i for s in splits for m in s.members for i in m}),
        },  # fmt: skip
        "base_encoder": a.base_encoder,
        "budget": a.budget,
        "eval_every": a.eval_every,
        "config": dataclasses.asdict(base),
        "token_lengths": token_lengths(a.base_encoder, splits, examples),
        "profile": {},
        "options": [],
    }
    first_freeze = next((n for n in opts if n.startswith("freeze")), None)
    for name in ("full", first_freeze):
        if name:
            res["profile"][name] = profile(base.replace(**opts.get(name, {})), splits, examples)
            print(f"profile {name}: {res['profile'][name]}", file=sys.stderr, flush=True)
    for name, change in opts.items():
        change = dict(change)
        if "max_seq_length" in change:
            change = {"base_encoder": short_encoder(a.base_encoder, change.pop("max_seq_length"))}
        res["options"].append(run_option(name, base.replace(**change), splits, examples, a.budget))
        print(f"{name}: {res['options'][-1]['best_lds_by_seconds']}", file=sys.stderr, flush=True)
        write_json_atomic(Path(f"{a.out}.json"), res)
        write_text_atomic(Path(f"{a.out}.md"), markdown(res))
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
