"""How much a held-out LDS measurement moves by chance, for the encoders of a finished study.

``airsearch train`` keeps the encoder of its best held-out measurement and stops on a plateau of
those measurements (issue 24). Each measurement is the mean, over dev examples, of a Spearman
correlation across the held-out split's subsets (``airsearch.metrics.lds``); with few subsets and
dev examples it is noisy, and a "best step" can be chance. This script measures that noise: for the
base encoder and each kept encoder it predicts the held-out split's Eq. 7 group scores once, then
resamples the split's subsets *and* its dev examples with replacement (both are samples: the
subsets from all possible subsets, the dev examples from the task's), recomputing the LDS each time,
seeded. It reports each encoder's held-out LDS with that 95% interval, and the kept encoder minus
the base encoder with the interval of the paired difference (the same resamples for both).

    python benchmarks/heldout_noise.py                 # the converged size sweep and reproduction
    python benchmarks/heldout_noise.py --resamples 2000

Writes ``benchmarks/results/heldout_noise.{json,md}``. Reads the encoders and label stores that the
studies left on disk (git-ignored): run it where the studies ran.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from airsearch import AirRepEncoder, LabelStore, lds_per_example, predict_split_scores  # noqa: E402

OUT = ROOT / "benchmarks/results/heldout_noise"


def studies(sweep: Path, reproduction: Path) -> list[dict[str, Any]]:
    """Each study's held-out label store, base encoder and kept encoders (those present on disk)."""
    out = []
    for size, labels, kinds in (
        ("S0", "labels", ("retrain", "teacher", "volume", "mix")),
        ("S1", "labels", ("retrain", "teacher")),
        ("S2", "teacher_labels", ("teacher",)),  # S2 has no retraining labels: the teacher's split
    ):
        out.append({
            "study": f"size sweep {size}",
            "labels": sweep / size / labels,
            "base": sweep / "base_encoder_128",
            "encoders": {k: sweep / size / f"airrep_{size}_{k}" for k in kinds},
            "stages": {k: sweep / "stages" / f"{size}-{'ablation' if k in ('volume', 'mix') else 'encoder'}-{k}.json"
                       for k in kinds},
        })  # fmt: skip
    out.append({
        "study": "converged reproduction",
        "labels": reproduction / "labels",
        "base": reproduction / "base_encoder_128",
        "encoders": {"retrain": reproduction / "airrep_retrain"},
        "stages": {"retrain": reproduction / "stages" / "encoder_retrain.json"},
    })  # fmt: skip
    return out


def resampled_lds(
    predicted: dict[str, np.ndarray], targets: np.ndarray, n: int, seed: int
) -> dict[str, np.ndarray]:
    """Each encoder's LDS over ``n`` resamples of subsets (rows) and dev examples (columns), the same
    resamples for every encoder."""
    rng = np.random.default_rng(seed)
    n_sub, n_dev = targets.shape
    out = {name: np.empty(n) for name in predicted}
    for r in range(n):
        rows, cols = rng.integers(0, n_sub, n_sub), rng.integers(0, n_dev, n_dev)
        t = targets[np.ix_(rows, cols)]
        for name, p in predicted.items():
            out[name][r] = np.nanmean(lds_per_example(p[np.ix_(rows, cols)], t))
    return out


def interval(values: np.ndarray, point: float) -> dict[str, float]:
    low, high = np.nanquantile(values, [0.025, 0.975])
    return {
        "mean": point,
        "low": float(min(low, point)),
        "high": float(max(high, point)),
        "sd": float(np.nanstd(values)),
    }


def measure(study: dict[str, Any], n: int, seed: int) -> dict[str, Any] | None:
    found = {k: p for k, p in study["encoders"].items() if study["stages"][k].is_file() and p.is_dir()}
    if not study["labels"].is_dir() or not study["base"].is_dir() or not found:
        return None
    store = LabelStore.open(study["labels"])
    split = store.splits()[-1]  # the held-out split the encoders were chosen on
    examples = dict(store.examples())
    targets = split.targets()
    predicted = {}
    for name, path in {"base": study["base"], **found}.items():
        enc = AirRepEncoder.load(str(path), device="cpu")
        predicted[name] = predict_split_scores(enc, split, examples)
    points = {k: float(np.nanmean(lds_per_example(p, targets))) for k, p in predicted.items()}
    draws = resampled_lds(predicted, targets, n, seed)
    encoders = {}
    for k in found:
        stage = json.loads(study["stages"][k].read_text())
        encoders[k] = {
            "lds": interval(draws[k], points[k]),
            "minus_base": interval(draws[k] - draws["base"], points[k] - points["base"]),
            "steps": stage.get("steps"),
            "best_step": stage.get("best_step"),
            "stop_reason": stage.get("stop_reason"),
            "recorded_best_lds": stage.get("best_lds"),
            "encoder_fingerprint": stage.get("encoder_fingerprint"),
            "trained_on_labels": stage.get("labels_fingerprint"),
        }
    return {
        "study": study["study"],
        "labels": "/".join(study["labels"].parts[-4:]),  # e.g. size_sweep/converged/S0/labels
        "labels_corpus_fingerprint": store.manifest.get("corpus_fingerprint"),
        "labels_model_fingerprint": store.manifest.get("model_fingerprint"),
        "held_out_split": int(split.split),
        "subsets": int(targets.shape[0]),
        "dev_examples": int(targets.shape[1]),
        "base": interval(draws["base"], points["base"]),
        "encoders": encoders,
    }  # fmt: skip


def report(results: list[dict[str, Any]], cfg: dict[str, Any]) -> str:
    x = lambda s, sign=False: (  # noqa: E731
        f"{100 * s['mean']:{'+' if sign else ''}.1f} [{100 * s['low']:{'+' if sign else ''}.1f}, "
        f"{100 * s['high']:{'+' if sign else ''}.1f}]"
    )
    lines = [
        "# Held-out LDS: how much one measurement moves by chance",
        "",
        "Each encoder's LDS on the held-out label split it was chosen on (x100), with a 95% interval from "
        f"{cfg['resamples']:,} resamples of that split's subsets and dev examples (seed {cfg['seed']}), and "
        "the kept encoder minus the base encoder on the same resamples. Written by "
        "`benchmarks/heldout_noise.py`.",
        "",
        "| study | held-out split | encoder | steps (stop, kept step) | held-out LDS | minus base |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        split = f"{r['subsets']} subsets x {r['dev_examples']} dev"
        lines.append(f"| {r['study']} | {split} | base (untrained) | | {x(r['base'])} | |")
        for k, e in r["encoders"].items():
            steps = f"{e['steps']} ({e['stop_reason']}, step {e['best_step']})"
            lines.append(
                f"| {r['study']} | {split} | {k} | {steps} | {x(e['lds'])} | {x(e['minus_base'], True)} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", type=Path, default=ROOT / "benchmarks/results/size_sweep/converged")
    ap.add_argument("--reproduction", type=Path, default=ROOT / "benchmarks/results/reproduction/converged")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    results = [
        r for s in studies(args.sweep, args.reproduction) if (r := measure(s, args.resamples, args.seed))
    ]
    if not results:
        print("no study with its encoders on disk was found", file=sys.stderr)
        return 1
    cfg = {"resamples": args.resamples, "seed": args.seed, "seconds": round(time.perf_counter() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "heldout_noise.json").write_text(
        json.dumps({"config": cfg, "studies": results}, indent=2) + "\n"
    )
    (args.out / "README.md").write_text(report(results, cfg))
    print(report(results, cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
