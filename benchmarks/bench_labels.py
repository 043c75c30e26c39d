"""Label throughput (issue 11): retraining jobs per hour one task per subset vs batched, and teacher labels.

    python benchmarks/bench_labels.py [--lm DIR] [--repeats 2] [--batch 8] [--teacher-subsets 2000] [--out DIR]

- **Retraining** (AirRep Eq. 8, one fine-tune per subset) of the S0 target LM (hidden 128, 2 layers):
  the same jobs with ``subsets_per_job`` 1 (before: one task per subset, a copy of the LM each) and
  ``--batch`` (after: one task per ``--batch`` subsets of a split, one working copy reset between
  them), alternated ``--repeats`` times so both see the same machine load; the labels must be equal.
- **Teacher labels**: grad-cos scores every pool and dev row once and a subset's label is the sum of
  its members' scores, so thousands of subsets cost one gradient pass plus a file per subset.
- **A GPU**, extrapolated (not measured): SmolLM2-135M subset fine-tunes per GPU-hour from the FLOPs of
  one job at the gpu preset's sizes and an assumed sustained throughput, labelled as such.

Writes ``results/label_throughput.json`` and ``.md`` with the machine's load average; models and label
stores go to ``benchmarks/work/bench_labels/``.
"""

from __future__ import annotations

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

from airsearch import fmt, markdown_table, write_json_atomic, write_text_atomic  # noqa: E402

# The gpu preset's label job (reproduce.py --scale gpu): 200 rows x 2 epochs, 100 dev rows, 256 tokens.
GPU_JOB = {"params": 134.5e6, "rows": 200, "epochs": 2, "dev": 100, "tokens": 256}
ASSUMED_TFLOPS = {
    "fp32 (the project's dtype), 20 TFLOP/s sustained": 20e12,
    "bf16, 200 TFLOP/s sustained": 200e12,
}


def s0_lm(rows: list[Any], work: Path) -> str:
    """The small size sweep's S0 when it is there, else an S0 layout pre-trained for a few steps."""
    sweep = HERE / "results" / "size_sweep" / "small" / "S0" / "lm"
    if (sweep / "config.json").is_file():
        return str(sweep)
    from airsearch import TinyLMConfig, build_tiny_lm

    path = work / "lm"
    if not (path / "config.json").is_file():
        build_tiny_lm(rows, path, TinyLMConfig(steps=60, context=64, min_frequency=1), show_progress=False)
    return str(path)


def timed_labels(cfg: Any, out: Path) -> dict[str, Any]:
    from airsearch import generate_labels

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    summary = generate_labels(cfg.replace(out=str(out)), quiet=True)
    wall = time.perf_counter() - t0
    return {
        "jobs": summary.completed_jobs,
        "wall_seconds": round(wall, 2),
        "jobs_per_hour": summary.completed_jobs * 3600 / wall,
    }


def gpu_estimate() -> dict[str, Any]:
    """FLOPs of one SmolLM2 subset job (6 N per trained token, 2 N per dev token) and jobs per hour at the
    assumed throughputs: an extrapolation, not a measurement."""
    j = GPU_JOB
    flops = 6 * j["params"] * j["rows"] * j["epochs"] * j["tokens"] + 2 * j["params"] * j["dev"] * j["tokens"]
    return {
        "job": j,
        "flops_per_job": flops,
        "jobs_per_gpu_hour": {k: 3600 * v / flops for k, v in ASSUMED_TFLOPS.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, out=RESULTS, work=WORK / "bench_labels")
    ap.add_argument("--lm", default=None)
    ap.add_argument("--rows", type=int, default=300, help="first N sample rows the labels are drawn from")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--teacher-splits", type=int, default=40)
    ap.add_argument("--teacher-subsets", type=int, default=50)
    a = ap.parse_args(argv)
    from airsearch import LabelConfig, LabelStore, load_corpus, sample_corpus_path, write_rows

    work = a.work
    rows = load_corpus(sample_corpus_path()).examples[: a.rows]
    corpus = write_rows(work / "train.jsonl", rows)
    lm = a.lm or s0_lm(rows, work)
    cfg = LabelConfig(
        corpus=[str(corpus)], lm=lm, out=str(work / "x"), splits=2, dev_size=16, pool_size=60, subset_size=12,
        subsets_per_split=8, epochs=2, lr=1e-3, batch_size=8, max_length=128,
    )  # fmt: skip
    retrain: dict[str, list[dict]] = {"before (1 subset per task)": [], f"after ({a.batch} per task)": []}
    for r in range(a.repeats):
        for runs, per in zip(retrain.values(), (1, a.batch), strict=True):
            runs.append(timed_labels(cfg.replace(subsets_per_job=per), work / f"retrain_{per}_{r}"))
    same = all(
        (x.losses == y.losses).all()
        for x, y in zip(
            LabelStore.open(work / "retrain_1_0").splits(), LabelStore.open(work / f"retrain_{a.batch}_0").splits(), strict=True
        )
    )  # fmt: skip
    teacher = timed_labels(
        cfg.replace(teacher="gradcos", splits=a.teacher_splits, subsets_per_split=a.teacher_subsets),
        work / "teacher",
    )
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "nice": os.nice(0),
        },
        "lm": lm,
        "job": {
            k: cfg.to_dict()[k] for k in ("subset_size", "epochs", "batch_size", "dev_size", "max_length")
        },
        "retrain": retrain,
        "labels_equal": bool(same),
        "teacher": teacher,
        "gpu_extrapolated": gpu_estimate(),
    }
    write_json_atomic(a.out / "label_throughput.json", result)
    write_text_atomic(a.out / "label_throughput.md", report(result))
    print(report(result))
    return 0


def report(r: dict[str, Any]) -> str:
    def mean(runs: list[dict]) -> float:
        return sum(x["jobs_per_hour"] for x in runs) / len(runs)

    rows = [
        [k, len(v), fmt(mean(v), 0), ", ".join(fmt(x["jobs_per_hour"], 0) for x in v)]
        for k, v in r["retrain"].items()
    ]
    t, g, m = r["teacher"], r["gpu_extrapolated"], r["machine"]
    return "\n".join(
        [
            "# Label throughput (`benchmarks/bench_labels.py`)\n",
            f"{m['cpus']} CPU cores shared with other jobs (1-minute load average {m['load_average_1min']} at the "
            f"end, niceness {m['nice']}); target LM `{Path(r['lm']).name}` (S0 layout). One job: "
            f"{r['job']['subset_size']} rows x {r['job']['epochs']} epochs (batch {r['job']['batch_size']}), "
            f"then the loss of {r['job']['dev_size']} dev rows, {r['job']['max_length']} tokens.\n",
            "## Retraining labels, one task per subset vs batched (alternating runs)\n",
            markdown_table(["mode", "runs", "jobs / hour (mean)", "each run"], rows),
            f"Labels equal between the modes: {r['labels_equal']}.\n",
            "## Teacher labels (grad-cos, one scoring pass, a subset's label is a sum)\n",
            f"{t['jobs']} subsets in {t['wall_seconds']} s: {fmt(t['jobs_per_hour'], 0)} subsets / hour "
            "(one gradient pass over every pool and dev row, then one file per subset).\n",
            "## SmolLM2-135M on a GPU: EXTRAPOLATED, not measured\n",
            f"One job of the gpu preset ({g['job']['rows']} rows x {g['job']['epochs']} epochs + {g['job']['dev']} dev "
            f"rows at {g['job']['tokens']} tokens) is about {g['flops_per_job']:.2e} FLOPs (6N per trained token, 2N "
            "per dev token). At an assumed sustained throughput:\n",
            *(
                f"- {k}: about {v:,.0f} subset fine-tunes per GPU-hour"
                for k, v in g["jobs_per_gpu_hour"].items()
            ),
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
