"""The whole AirRep loop on this CPU: tiny target LM -> subset labels -> encoder training -> held-out LDS.

    python benchmarks/airrep_loop.py                       # default scale, seeds 0 1 2
    python benchmarks/airrep_loop.py --scale small         # smoke run (a few minutes)
    python benchmarks/airrep_loop.py --out DIR --seeds 0 1 2 3 --workers 2

Data: the bundled Natural Instructions sample (20 NI tasks, 150 rows each). The tasks are split in two
halves: tasks B pre-train the tiny LM (so the label tasks A are new to it, as fine-tuning data is to a
real LM), tasks A carry the subset-retraining labels (methods.md §1, Eq. 8).

Stages (run by ``benchmarks/stages.py``: each writes ``stages/<name>.json`` in the work folder and is
skipped when it exists; the components resume on their own inside a stage):

1. ``lm``: :func:`airsearch.lm.build_tiny_lm` on tasks B.
2. ``labels``: :func:`airsearch.trainers.labels.generate_labels` on tasks A (splits x subsets fine-tune jobs).
3. ``noise``: a few subsets of split 0 re-fine-tuned with another seed: label noise vs label spread.
4. ``train-<seed>``: :func:`airsearch.trainers.encoder_training.train_encoder` from the packaged
   all-MiniLM-L6-v2, per seed. The label splits are used three ways: *train* splits, one *validation*
   split (the trainer's per-epoch held-out LDS, which picks the best epoch) and *test* splits that the
   trainer never sees.
5. ``eval``: LDS (equations.md §6) of the base encoder and of every trained encoder on the test splits,
   per dev example, mean ± std over seeds and a bootstrap interval over dev examples.

Heavy artefacts go to ``benchmarks/work/airrep_loop/<scale>/`` (ignored by git); the results JSON,
``README.md`` table and training curves go to ``--out`` (default ``benchmarks/results/airrep_loop``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from airsearch import sample_corpus_path, write_json_atomic, write_text_atomic

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # benchmarks/stages.py, also when this file is loaded by path
    sys.path.insert(0, str(HERE))
from bench_options import RESULTS, bench_parser  # noqa: E402
from stages import Scale, Stages, short_base_encoder  # noqa: E402


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoopScale(Scale):
    """:class:`stages.Scale` plus the loop's own sizes: held-out test splits, the encoder's steps (Eq. 9
    samples ``subsets_per_step`` subsets x ``dev_per_step`` dev examples), the noise and bootstrap runs."""

    max_seq_length: int
    test_splits: int
    subsets_per_step: int
    dev_per_step: int
    enc_batch: int = 32
    noise_subsets: int = 8
    bootstrap: int = 2000


SCALES: dict[str, LoopScale] = {
    # the code path at a size that runs in seconds (tests/test_benchmarks_smoke.py); no finding
    "micro": LoopScale(
        lm_steps=4, splits=3, test_splits=1, dev=4, pool=12, subset=4, subsets=4, ft_epochs=1,
        ft_lr=1e-3, enc_epochs=1, subsets_per_step=2, dev_per_step=4, max_seq_length=32, enc_lr=1e-4,
        noise_subsets=2, bootstrap=20,
    ),
    "small": LoopScale(
        lm_steps=150, splits=4, test_splits=1, dev=16, pool=60, subset=8, subsets=12, ft_epochs=2,
        ft_lr=1e-3, enc_epochs=1, subsets_per_step=8, dev_per_step=16, max_seq_length=96, enc_lr=1e-4,
    ),
    "default": LoopScale(
        lm_steps=300, splits=7, test_splits=2, dev=40, pool=120, subset=12, subsets=20, ft_epochs=2,
        ft_lr=1e-3, enc_epochs=2, subsets_per_step=8, dev_per_step=32, max_seq_length=128, enc_lr=2e-5,
    ),
}  # fmt: skip
ENCODER_KEYS = ("enc_epochs", "subsets_per_step", "dev_per_step", "max_seq_length", "enc_lr")


class Loop:
    def __init__(self, args: argparse.Namespace):
        self.scale = args.scale
        self.p = SCALES[args.scale]
        self.seeds: list[int] = args.seeds
        self.workers: int = args.workers
        self.out = Path(args.out)
        self.work = Path(args.work or HERE / "work" / "airrep_loop" / args.scale)
        self.stages = Stages(self.work / "stages")

    # ------------------------------------------------------------------ data
    def tasks(self) -> tuple[list[str], list[str]]:
        """(tasks A for labels, tasks B for LM pre-training): alternate tasks in sorted order."""
        from airsearch import load_corpus

        names = sorted({e.metadata["task"] for e in load_corpus(sample_corpus_path()).examples})
        return names[0::2], names[1::2]

    def corpus_file(self, which: str) -> Path:
        from airsearch import load_corpus, write_rows

        path = self.work / "data" / f"tasks_{which}.jsonl"
        if not path.exists():
            keep = set(self.tasks()[0 if which == "A" else 1])
            rows = load_corpus(sample_corpus_path()).examples
            write_rows(path, [e for e in rows if e.metadata["task"] in keep])
        return path

    # ------------------------------------------------------------------ stages
    def build_lm(self) -> dict[str, Any]:
        from airsearch import TinyLMConfig, build_tiny_lm, load_corpus

        rows = load_corpus(self.corpus_file("B")).examples
        cfg = TinyLMConfig(steps=self.p.lm_steps)
        path = build_tiny_lm(rows, self.work / "lm", cfg)
        info = json.loads((path / "airsearch_lm.json").read_text())
        keep = ("num_parameters", "vocab_size", "stream_tokens", "loss_first", "loss_last", "train_seconds")
        return {"lm": str(path), "tasks_B": self.tasks()[1], **{k: info[k] for k in keep}}

    def label_config(self) -> Any:
        return self.p.label_config(
            self.corpus_file("A"), self.work / "lm", self.work / "labels", workers=self.workers
        )

    def labels(self) -> dict[str, Any]:
        from airsearch import generate_labels

        cfg = self.label_config()
        summary = generate_labels(cfg).to_dict()
        jobs = summary["completed_jobs"]
        return {
            "tasks_A": self.tasks()[0],
            "config": cfg.identity(),
            "summary": summary,
            "job_size": {
                "train_examples": cfg.subset_size,
                "epochs": cfg.epochs,
                "dev_examples": cfg.dev_size,
            },
            "jobs_per_hour": round(jobs / summary["seconds"] * 3600, 1) if jobs else None,
        }

    def noise(self) -> dict[str, Any]:
        """Re-fine-tune the first subsets of split 0 with another seed; compare with the stored losses.

        ``spread``: std across subsets of a dev example's loss (the label signal); ``noise``: std of the
        same subset's loss across the two fine-tune seeds (the difference / sqrt 2). ``seed_spearman``:
        per dev example, Spearman across those subsets between the two seeds' losses (a ceiling on LDS).
        """
        from airsearch import (
            LabelStore,
            lds_per_example,
            load_corpus,
            run_subset_job,
            sample_splits,
            subset_jobs,
        )

        cfg = self.label_config()
        corpus = load_corpus(cfg.corpus)
        store = LabelStore.open(cfg.out)
        split0 = next(s for s in store.splits() if s.split == 0)
        plans = sample_splits([e.id for e in corpus.examples], **{**cfg.sampling(), "splits": 1})
        k = min(self.p.noise_subsets, len(plans[0].subsets))
        jobs = subset_jobs(cfg, plans, corpus.by_id(), str(Path(cfg.lm).resolve()))[:k]
        again = []
        for job in jobs:
            job.payload["finetune"]["seed"] += 1
            again.append(run_subset_job(job.payload)["losses"])
        a = np.asarray(split0.losses[:k], dtype=np.float64)
        b = np.asarray(again, dtype=np.float64)
        spread = a.std(axis=0, ddof=1)
        noise = np.abs(a - b).mean(axis=0) * np.sqrt(np.pi) / 2  # E|a-b| = 2 sigma / sqrt(pi)
        return {
            "subsets": k,
            "spread_mean": float(spread.mean()),
            "noise_mean": float(noise.mean()),
            "signal_to_noise": float(spread.mean() / max(noise.mean(), 1e-12)),
            "seed_spearman": float(np.nanmean(lds_per_example(-b, -a))),
            "spread_all_subsets_mean": float(np.asarray(split0.losses).std(axis=0, ddof=1).mean()),
        }

    def split_roles(self) -> tuple[list[Any], Any, list[Any]]:
        """(train splits, validation split, test splits) of the label store, by split id."""
        from airsearch import LabelStore

        splits = sorted(LabelStore.open(self.work / "labels").splits(), key=lambda s: s.split)
        t = self.p.test_splits
        return splits[: -t - 1], splits[-t - 1], splits[-t:]

    def base_encoder(self) -> str:
        return short_base_encoder(self.work, self.p.max_seq_length)

    def encoder_tag(self) -> str:
        """Short id of the encoder-training parameters (trained encoders of other settings are kept)."""
        from airsearch import fingerprint_json

        return fingerprint_json({k: getattr(self.p, k) for k in ENCODER_KEYS})[:8]

    def encoder_dir(self, seed: int) -> Path:
        return self.work / f"encoder_{self.encoder_tag()}_seed{seed}"

    def train(self, seed: int) -> dict[str, Any]:
        from airsearch import LabelStore, TrainConfig, train_encoder

        train, val, _ = self.split_roles()
        p = self.p
        cfg = TrainConfig(
            out=str(self.encoder_dir(seed)),
            base_encoder=self.base_encoder(),
            epochs=p.enc_epochs,
            lr=p.enc_lr,
            subsets_per_step=p.subsets_per_step,
            dev_per_step=p.dev_per_step,
            holdout_splits=1,
            warmup_steps=min(10, len(train)),
            batch_size=p.enc_batch,
            seed=seed,
            device="cpu",
        )
        examples = LabelStore.open(self.work / "labels").examples()
        result = train_encoder(cfg, splits=[*train, val], examples=examples).to_dict()
        self.out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(cfg.out) / "training_curve.png", self.out / f"training_curve_seed{seed}.png")
        return {"config": cfg.run_identity(), "result": result}

    def evaluate(self) -> dict[str, Any]:
        from airsearch import AirRepEncoder, LabelStore, lds_per_example, predict_split_scores

        _, _, test = self.split_roles()
        examples = LabelStore.open(self.work / "labels").examples()

        def per_example(path: str) -> np.ndarray:
            enc = AirRepEncoder.load(path, device="cpu")
            enc.model.eval()
            return np.concatenate(
                [
                    lds_per_example(predict_split_scores(enc, s, examples, batch_size=32), s.targets())
                    for s in test
                ]
            )

        base = per_example(self.base_encoder())
        trained = np.stack([per_example(str(self.encoder_dir(s))) for s in self.seeds])
        ok = np.isfinite(base) & np.isfinite(trained).all(axis=0)
        base, trained = base[ok], trained[:, ok]
        rng = np.random.default_rng(0)
        idx = rng.integers(0, len(base), size=(self.p.bootstrap, len(base)))
        mean_trained = trained.mean(axis=0)

        def ci(values: np.ndarray) -> list[float]:
            return [float(x) for x in np.percentile(values[idx].mean(axis=1), [2.5, 97.5])]

        seed_lds = trained.mean(axis=1)
        return {
            "test_splits": [s.split for s in test],
            "dev_examples": int(len(base)),
            "base": {"lds": float(base.mean()), "ci95": ci(base)},
            "trained": {
                "per_seed": {str(s): float(v) for s, v in zip(self.seeds, seed_lds, strict=True)},
                "mean": float(seed_lds.mean()),
                "std": float(seed_lds.std(ddof=1)) if len(seed_lds) > 1 else 0.0,
                "ci95_seed_mean": ci(mean_trained),
            },
            "gain": {"mean": float((mean_trained - base).mean()), "ci95": ci(mean_trained - base)},
        }

    def reference(self) -> dict[str, Any]:
        """Context for the numbers: label throughput from the stored per-job seconds (all runs of the
        stage, resumed ones included) and the test-split LDS of an oracle that knows the NI task of every
        example and scores a subset by its count of dev-task members (not a method; a ceiling hint)."""
        from airsearch import LabelStore, lds

        store = LabelStore.open(self.work / "labels")
        secs = [float(store.read_job(j)["seconds"]) for j in store.done_job_ids()]
        ex = store.examples()
        _, _, test = self.split_roles()

        def task(i: str) -> str:
            return ex[i].metadata["task"]

        oracle = {}
        for s in test:
            count = [[sum(task(m) == task(d) for m in mem) for d in s.dev_ids] for mem in s.members]
            oracle[str(s.split)] = lds(np.asarray(count, dtype=float), s.targets())
        return {
            "label_jobs": len(secs),
            "label_job_seconds_mean": float(np.mean(secs)),
            "label_jobs_per_hour_in_job_time": round(3600 / float(np.mean(secs)), 1),
            "oracle_same_task_count_lds": oracle,
            "oracle_same_task_count_lds_mean": float(np.mean(list(oracle.values()))),
        }

    # ------------------------------------------------------------------ driver and report
    def run(self) -> dict[str, Any]:
        stage = self.stages.run
        stages = {"lm": stage("lm", self.build_lm), "labels": stage("labels", self.labels)}
        stages["noise"] = stage("noise", self.noise)
        base_path = self.base_encoder()
        for seed in self.seeds:
            stages[f"train-{seed}"] = stage(
                f"train-{self.encoder_tag()}-{seed}", lambda seed=seed: self.train(seed)
            )
        name = f"eval-{self.encoder_tag()}-" + "-".join(map(str, self.seeds))
        stages["eval"] = stage(name, self.evaluate)
        stages["reference"] = stage("reference", self.reference)
        train, val, test = self.split_roles()
        results = {
            "command": "python benchmarks/airrep_loop.py " + " ".join(sys.argv[1:]),
            "scale": self.scale,
            "params": self.p.to_dict(),
            "seeds": self.seeds,
            "base_encoder": f"packaged all-MiniLM-L6-v2 (max_seq_length {self.p.max_seq_length}): {base_path}",
            "split_roles": {
                "train": [s.split for s in train],
                "validation": val.split,
                "test": [s.split for s in test],
            },
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
            "stage_seconds": {k: v["stage_seconds"] for k, v in stages.items()},
            "stages": stages,
        }
        self.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.out / f"results_{self.scale}.json", results)
        write_text_atomic(self.out / f"README_{self.scale}.md", report(results))
        return results


def report(r: dict[str, Any]) -> str:
    ref = r["stages"]["reference"]
    ev, lab, nz = r["stages"]["eval"], r["stages"]["labels"], r["stages"]["noise"]
    f = lambda x: f"{x:.3f}"  # noqa: E731
    ci = lambda c: f"[{c[0]:.3f}, {c[1]:.3f}]"  # noqa: E731
    tr = ev["trained"]
    lines = [
        f"# AirRep loop on CPU ({r['scale']} scale)",
        "",
        f"Command: `{r['command'].strip()}`. Split roles: {r['split_roles']}; "
        f"{ev['dev_examples']} test dev examples; seeds {r['seeds']}.",
        "",
        "| encoder | held-out LDS (test splits) | 95% bootstrap CI (dev examples) |",
        "|---|---|---|",
        f"| base (untrained all-MiniLM-L6-v2) | {f(ev['base']['lds'])} | {ci(ev['base']['ci95'])} |",
        f"| AirRep trained (mean ± std over {len(r['seeds'])} seeds) | {f(tr['mean'])} ± {f(tr['std'])} "
        f"| {ci(tr['ci95_seed_mean'])} |",
        f"| gain (trained − base, paired) | {f(ev['gain']['mean'])} | {ci(ev['gain']['ci95'])} |",
        "",
        "Per seed: " + ", ".join(f"seed {s}: {f(v)}" for s, v in tr["per_seed"].items()) + ".",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.0f} |" for k, v in r["stage_seconds"].items()],
        "",
        f"Label generation: {lab['summary']['completed_jobs']} jobs, {lab['jobs_per_hour']} jobs/hour "
        f"(job = fine-tune on {lab['job_size']['train_examples']} examples x {lab['job_size']['epochs']} "
        f"epochs + loss on {lab['job_size']['dev_examples']} dev examples; backend {lab['summary']['backend']}).",
        "",
        f"Label noise ({nz['subsets']} subsets of split 0 re-fine-tuned with another seed): loss spread "
        f"across subsets {nz['spread_mean']:.4f}, across seeds {nz['noise_mean']:.4f} "
        f"(signal/noise {nz['signal_to_noise']:.1f}); seed-vs-seed Spearman {nz['seed_spearman']:.3f}.",
        "",
        f"All {ref['label_jobs']} label jobs: {ref['label_job_seconds_mean']:.1f} s each on average "
        f"({ref['label_jobs_per_hour_in_job_time']} jobs/hour of job time, resumed runs included). "
        f"Reference: an oracle scoring a subset by its count of same-NI-task members reaches LDS "
        f"{ref['oracle_same_task_count_lds_mean']:.3f} on the test splits.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, out=RESULTS / "airrep_loop", work=None, scales=sorted(SCALES), scale="default")
    ap.set_defaults(work=None)  # default: benchmarks/work/airrep_loop/SCALE
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workers", type=int, default=1, help="processes for the label jobs")
    args = ap.parse_args(argv)
    res = Loop(args).run()
    print(report(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
