"""What makes an AirRep training step cheaper on a CPU, and what it costs in held-out LDS (issue 24).

    python benchmarks/bench_train_steps.py --labels DIR --base-encoder DIR [--reference ENCODER_DIR]
        [--options freeze3 freeze5 dev16 len64] [--full-steps 120] [--threads 1]
        [--out benchmarks/results/train_steps]

Every option trains the same encoder on the same label store with the same held-out split, seed and
schedule as ``--reference`` (a trained encoder folder: its ``train_config.json`` is the config, and
one field changes per option; the label store's fingerprint must match). The options are compared at
**equal CPU time**: each trains until it has spent as much process CPU time on training steps
(held-out measurements excluded) as ``full`` spends on ``--full-steps`` steps, and the table gives the
best held-out LDS reached by several fractions of that budget. CPU time, not wall time, because this
machine is shared: a step's CPU seconds barely move with the load, its wall seconds do. Options:

- ``full``: every layer trained (the paper's setting). With ``--reference`` its curve is the reference
  run's own (same config, labels and seed, so the same steps) and only its CPU per step is measured
  here; without one it is trained like the others;
- ``freezeN``: embeddings and the lowest N layers frozen, their outputs computed once per row
  (``--freeze-layers N``; the saved encoder computes the same function at query time);
- ``devN``: N dev examples per step instead of the reference's;
- ``len64``: a 64-token budget instead of the encoder's own (changes what the encoder computes at query
  time; the rows' token lengths are reported).

A profile of ``--profile-steps`` steps of ``full`` and of each option comes first, CPU and wall seconds per
phase: tokenising the step's rows (what a pre-tokenised cache would save), pass 1 (encode without
grad), pass 2b (re-encode with grad and back-propagate) and the rest (scores, loss, optimizer). Every
option and the profile are stages (``<out>_runs/<name>.json``), kept and skipped when rerun, so a killed
run resumes at the option it was in; run several options in parallel processes with ``--threads 1``.
Writes ``<out>.json`` and ``<out>.md``; encoders go to ``--work``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from bench_options import RESULTS, WORK, bench_parser  # noqa: E402
from train_steps_report import markdown  # noqa: E402

from airsearch import write_json_atomic, write_text_atomic  # noqa: E402

SCRATCH = {"dir": WORK / "train_steps"}  # --work: the encoders trained here


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


class StepClock:
    """``on_step`` of a training run: CPU and wall seconds of every step. The step after a held-out
    measurement (``(n - 1) % eval_every == 0``) also paid for the measurement, so it counts as the median
    step. Raises :class:`_Budget` once the training CPU time reaches ``cpu_budget``."""

    def __init__(self, eval_every: int, cpu_budget: float = float("inf")) -> None:
        self.eval_every, self.cpu_budget = eval_every, cpu_budget
        self.cpu: dict[int, float] = {}
        self.wall: dict[int, float] = {}
        self.last = (time.process_time(), time.perf_counter())

    def __call__(self, step: int, loss: float) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        self.cpu[step], self.wall[step] = cpu - self.last[0], wall - self.last[1]
        self.last = (time.process_time(), time.perf_counter())
        if self.train_cpu() >= self.cpu_budget:
            raise _Budget

    def clean(self, seconds: dict[int, float]) -> list[float]:
        return [v for n, v in seconds.items() if (n - 1) % self.eval_every != 0 and n > 1]

    def per_step(self, seconds: dict[int, float]) -> float:
        clean = self.clean(seconds)
        return statistics.median(clean) if clean else max(seconds.values(), default=0.0)

    def train_cpu(self, upto: int | None = None) -> float:
        """Training CPU seconds of steps 1..upto (measurement steps and the first counted as the median)."""
        med = self.per_step(self.cpu)
        steps = [n for n in self.cpu if upto is None or n <= upto]
        return sum(self.cpu[n] if n in self.clean_steps() else med for n in steps)

    def clean_steps(self) -> set[int]:
        return {n for n in self.cpu if (n - 1) % self.eval_every != 0 and n > 1}


def profile(cfg: Any, steps: int) -> dict[str, dict[str, float]]:
    """CPU and wall seconds per step of each phase over ``steps`` steps (after one warm-up step), and
    the seconds to tokenise one step's rows."""
    # the two passes are timed by wrapping the functions of the documented module that runs them
    # (the front door has no per-phase timer; tests/test_benchmarks_smoke.py allows this one import)
    import airsearch.trainers.encoder_training.two_pass as tp

    from airsearch import train_encoder

    phases = ("pass1_encode_no_grad", "pass2b_encode_and_backprop")
    spent = {k: [0.0, 0.0] for k in phases}
    counting = {"on": False}
    original = {"encode_no_grad": tp.encode_no_grad, "backprop_embeddings": tp.backprop_embeddings}

    def timed(name: str, key: str):
        def wrapper(*a: Any, **k: Any) -> Any:
            c0, w0 = time.process_time(), time.perf_counter()
            try:
                return original[name](*a, **k)
            finally:
                if counting["on"]:
                    spent[key][0] += time.process_time() - c0
                    spent[key][1] += time.perf_counter() - w0

        return wrapper

    clock = StepClock(eval_every=10_000)

    def on_step(step: int, loss: float) -> None:
        clock(step, loss)
        counting["on"] = step >= 1
        if step > steps:
            raise _Budget

    tp.encode_no_grad = timed("encode_no_grad", phases[0])
    tp.backprop_embeddings = timed("backprop_embeddings", phases[1])
    out = SCRATCH["dir"] / "profile"
    shutil.rmtree(out, ignore_errors=True)
    try:
        train_encoder(cfg.replace(out=str(out), eval_every=10_000, patience=0), on_step=on_step)
    except _Budget:
        pass
    finally:
        tp.encode_no_grad, tp.backprop_embeddings = (
            original["encode_no_grad"],
            original["backprop_embeddings"],
        )
    shutil.rmtree(out, ignore_errors=True)
    timed_steps = [n for n in clock.cpu if n > 1]
    total = {
        "cpu": sum(clock.cpu[n] for n in timed_steps) / len(timed_steps),
        "wall": sum(clock.wall[n] for n in timed_steps) / len(timed_steps),
    }
    per = {k: {"cpu": v[0] / steps, "wall": v[1] / steps} for k, v in spent.items()}
    per["rest_scores_loss_optimizer"] = {
        m: total[m] - sum(per[k][m] for k in phases) for m in ("cpu", "wall")
    }
    per["tokenize_step_rows"] = tokenize_seconds(cfg)
    per["step_total"] = total
    return {k: {m: round(v, 4) for m, v in d.items()} for k, d in per.items()}


def tokenize_seconds(cfg: Any) -> dict[str, float]:
    """Seconds to tokenise one step's rows (subsets x members + dev rows) with the encoder's tokenizer."""
    from airsearch import AirRepEncoder, LabelStore

    store = LabelStore.open(cfg.labels)
    split, examples = store.splits(warn=False)[0], store.examples()
    ids = [i for m in split.members[: cfg.subsets_per_step] for i in m]
    ids += list(split.dev_ids[: cfg.dev_per_step or len(split.dev_ids)])
    enc = AirRepEncoder.load(cfg.base_encoder, device="cpu")
    rows = [examples[i] for i in ids]
    enc.input_ids(rows)  # warm
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(5):
        enc.input_ids(rows)
    return {"cpu": (time.process_time() - c0) / 5, "wall": (time.perf_counter() - w0) / 5}


def run_option(name: str, cfg: Any, cpu_budget: float) -> dict[str, Any]:
    """Train until the training CPU time reaches ``cpu_budget``; the held-out curve with CPU seconds."""
    from airsearch import train_encoder

    out = SCRATCH["dir"] / name
    shutil.rmtree(out, ignore_errors=True)
    clock = StepClock(cfg.eval_every, cpu_budget)
    load_before = os.getloadavg()[0]
    try:
        train_encoder(cfg.replace(out=str(out)), on_step=clock)
        stopped = "plateau or cap before the budget"
    except _Budget:
        stopped = "CPU budget"
    log = json.loads((out / "training.json").read_text())["result"]
    curve = [{**c, "cpu": clock.train_cpu(c["step"])} for c in log["lds_curve"]]
    return {
        "option": name,
        "steps": max(clock.cpu, default=0),
        "cpu_seconds_per_step": clock.per_step(clock.cpu),
        "wall_seconds_per_step": clock.per_step(clock.wall),
        "stopped": stopped,
        "curve": curve,
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


def full_cost(cfg: Any, steps: int) -> dict[str, float]:
    """Median CPU and wall seconds per ``full`` step over ``steps`` steps, measured as an option's run is
    (no held-out measurement in between): the profile's few steps are noisier on a loaded machine."""
    from airsearch import train_encoder

    out = SCRATCH["dir"] / "full_cost"
    shutil.rmtree(out, ignore_errors=True)
    clock = StepClock(eval_every=10_000)

    def on_step(step: int, loss: float) -> None:
        clock(step, loss)
        if step >= steps:
            raise _Budget

    with contextlib.suppress(_Budget):
        train_encoder(cfg.replace(out=str(out), eval_every=10_000, patience=0), on_step=on_step)
    shutil.rmtree(out, ignore_errors=True)
    cpu = [v for n, v in clock.cpu.items() if n > 1]
    wall = [v for n, v in clock.wall.items() if n > 1]
    return {"steps": len(cpu), "cpu": statistics.median(cpu), "wall": statistics.median(wall)}


def reference_full(reference: Path, cpu_per_step: float, wall_per_step: float, cpu_budget: float) -> dict:
    """``full`` from the reference run's own curve (the same steps) and the CPU per step measured here."""
    log = json.loads((reference / "training.json").read_text())["result"]
    curve = [{**c, "cpu": c["step"] * cpu_per_step} for c in log["lds_curve"]]
    return {
        "option": "full",
        "steps": int(cpu_budget // cpu_per_step),
        "cpu_seconds_per_step": cpu_per_step,
        "wall_seconds_per_step": wall_per_step,
        "stopped": f"curve of the reference run ({reference.name}, {log['steps']} steps, {log['stop_reason']})",
        "curve": [c for c in curve if c["cpu"] <= cpu_budget * 1.0001],
        "reference_seconds_per_step_quiet": log["seconds_per_step"],
    }


def stage(runs: Path, name: str, fn: Any) -> Any:
    """``<runs>/<name>.json`` if present (a finished stage), else ``fn()`` written there."""
    path = runs / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    value = fn()
    write_json_atomic(path, value)
    return value


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(
        __doc__,
        out=RESULTS / "train_steps",
        out_help="results path without its suffix (.json and .md are written; stages in <out>_runs/)",
        work=WORK / "train_steps",
    )
    ap.add_argument("--labels", required=True)
    ap.add_argument("--base-encoder", default="default")
    ap.add_argument("--reference", help="a trained encoder folder: its config and curve are `full`'s")
    ap.add_argument("--options", nargs="+", default=["freeze3", "freeze5", "dev16", "len64"])
    ap.add_argument("--full-steps", type=int, default=120, help="the CPU budget: this many `full` steps")
    ap.add_argument("--profile-steps", type=int, default=4)
    ap.add_argument(
        "--full-cost-steps", type=int, default=0,
        help="with --reference: measure full's CPU per step over this many steps (0: the profile's)",
    )  # fmt: skip
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--eval-every", type=int, default=20, help="without --reference")
    ap.add_argument("--holdout", type=int, default=1, help="without --reference")
    a = ap.parse_args(argv)
    SCRATCH["dir"] = a.work
    import torch

    from airsearch import LabelStore, TrainConfig

    if a.threads:
        torch.set_num_threads(a.threads)
    store = LabelStore.open(a.labels)
    base = TrainConfig(
        out="unused", labels=a.labels, base_encoder=a.base_encoder, lr=2e-5, subsets_per_step=8,
        dev_per_step=40, holdout_splits=a.holdout, warmup_steps=10, seed=0, batch_size=16, device="cpu",
        max_steps=100_000, eval_every=a.eval_every, patience=0, checkpoint_every=100_000,
    )  # fmt: skip
    reference = Path(a.reference) if a.reference else None
    if reference:
        recorded = json.loads((reference / "train_config.json").read_text())
        keep = {
            k: v
            for k, v in recorded["config"].items()
            if k not in ("max_steps", "patience", "epochs", "base_encoder")
        }
        base = base.replace(**keep, labels=a.labels, base_encoder=a.base_encoder)
    opts = options(a.options if reference else ["full", *[o for o in a.options if o != "full"]])
    runs = Path(f"{a.out}_runs")
    runs.mkdir(parents=True, exist_ok=True)
    first_freeze = next((n for n in opts if n.startswith("freeze")), None)
    prof = {
        name: stage(runs, f"profile_{name}_t{a.threads}", lambda n=name: profile(
            base.replace(**opts.get(n, {})), a.profile_steps))
        for name in ("full", first_freeze) if name
    }  # fmt: skip
    full_cpu, full_wall = prof["full"]["step_total"]["cpu"], prof["full"]["step_total"]["wall"]
    cost = None
    if reference and a.full_cost_steps:
        cost = stage(runs, f"full_cost_t{a.threads}", lambda: full_cost(base, a.full_cost_steps))
        full_cpu, full_wall = cost["cpu"], cost["wall"]
    budget = a.full_steps * full_cpu
    done = []
    if reference:
        done.append(reference_full(reference, full_cpu, full_wall, budget))
    for name, change in opts.items():
        change = dict(change)
        if "max_seq_length" in change:
            change = {"base_encoder": short_encoder(a.base_encoder, change.pop("max_seq_length"))}
        cfg = base.replace(**change)
        done.append(stage(runs, f"{name}_t{a.threads}", lambda n=name, c=cfg: run_option(n, c, budget)))
        print(
            f"{name}: {done[-1]['steps']} steps, best {max(c['lds'] for c in done[-1]['curve'])}",
            file=sys.stderr,
        )
    stages_here = sorted(p.stem for p in runs.glob("*.json") if not p.stem.startswith("profile_"))
    res = {
        "machine": f"{os.cpu_count()}-core CPU ({_cpu_model()}), shared with other jobs",
        "threads": a.threads or torch.get_num_threads(),
        "labels": a.labels,
        "reference": str(reference) if reference else None,
        "full_steps": a.full_steps,
        "cpu_budget": budget,
        "config": dataclasses.asdict(base),
        "token_lengths": token_lengths(a.base_encoder, store.splits(warn=False), store.examples()),
        "profile": prof,
        "full_cost": cost,
        "options": done,
        "other_stages_in_runs": [s for s in stages_here if s not in {f"{o}_t{a.threads}" for o in opts}],
    }
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
