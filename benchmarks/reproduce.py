"""Reproduce the papers' evaluations at CPU scale: one command, resumable stages.

    python benchmarks/reproduce.py --scale tiny      # smoke run, < 10 minutes on 2 CPU cores
    python benchmarks/reproduce.py --scale default   # the committed results (about 55 minutes on 2 CPU cores)
    python benchmarks/reproduce.py --scale gpu --lm smollm2/   # SmolLM2-135M (`airsearch lm import-gguf`)

Stages (each writes ``stages/<name>.json`` under the results folder and is skipped when present):
corpus (NI sample: training tasks / held-out evaluation tasks), lm (tiny Llama on the NI rows),
labels (subset retraining on the training tasks), teacher (the best gradient teacher's labels),
encoders (AirRep from retraining labels and from the teacher), gold (subset retraining on the held-out
tasks), lds, classify, trace-entity-swap, trace-pii, cost, and the summary ``README.md``.
Results: ``benchmarks/results/reproduction/<scale>/``. See ``docs/evaluation.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from airsearch.trainers.evaluation.report import fmt, markdown_table  # noqa: E402

from airsearch.atomic import write_json_atomic, write_text_atomic  # noqa: E402
from airsearch.data.example import Example  # noqa: E402

GRADIENT = ("tracin", "gradcos", "dda", "haif")
SCALES: dict[str, dict[str, Any]] = {
    "micro": dict(
        tasks=4,
        per_task=20,
        queries=4,
        lm_steps=30,
        splits=2,
        dev=6,
        pool=20,
        subset=6,
        subsets=4,
        ft_epochs=1,
        enc_epochs=1,
        n_synthetic=200,
        n_people=6,
        trace_epochs=1,
        gradient=("gradcos", "dda"),
    ),
    "tiny": dict(
        tasks=8,
        per_task=40,
        queries=6,
        lm_steps=300,
        splits=3,
        dev=16,
        pool=60,
        subset=15,
        subsets=8,
        ft_epochs=2,
        enc_epochs=3,
        n_synthetic=400,
        n_people=20,
        trace_epochs=3,
        gradient=GRADIENT,
        proj_dim=1024,
        daunce_models=4,  # Daunce (black-box, K fine-tunes on the training set) in every eval
    ),
    # Sized to finish within 90 minutes on 2 CPU cores (stage times sum to about 55); encoder settings from benchmarks/airrep_loop.py
    # (small subsets, max_seq_length 128, lr 2e-5, a few epochs, best epoch on a held-out split).
    "default": dict(
        tasks=20,
        per_task=100,
        queries=10,
        lm_steps=1000,
        splits=40,  # 10 splits gave no gain over the base encoder; 40 gave +9 LDS points
        dev=40,
        pool=120,
        subset=12,
        subsets=30,
        gold_splits=4,
        gold_subsets=40,
        ft_epochs=2,
        enc_epochs=2,
        enc_lr=2e-5,
        max_seq_length=128,
        n_synthetic=1500,
        n_people=80,
        trace_epochs=5,
        gradient=GRADIENT,
        proj_dim=2048,
        daunce_models=8,  # Daunce (black-box, K fine-tunes on the training set) in every eval
    ),
    "gpu": dict(
        tasks=20,
        per_task=150,
        queries=10,
        lm_steps=0,
        splits=8,
        dev=100,
        pool=1000,
        subset=200,
        subsets=32,
        ft_epochs=2,
        enc_epochs=20,
        n_synthetic=5000,
        n_people=200,
        trace_epochs=5,
        gradient=GRADIENT,
        proj_dim=4096,
        daunce_models=16,  # Daunce (black-box, K fine-tunes on the training set) in every eval
    ),
}
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


class Pipeline:
    def __init__(self, scale: str, out: Path, base_encoder: str, lm: str | None, quiet: bool) -> None:
        self.scale, self.p, self.out = scale, SCALES[scale], out
        self.base_encoder, self.lm_arg, self.quiet = base_encoder, lm, quiet
        (out / "stages").mkdir(parents=True, exist_ok=True)
        if base_encoder == "default" and "max_seq_length" in self.p:
            self.base_encoder = self.short_base_encoder(self.p["max_seq_length"])

    def short_base_encoder(self, max_seq_length: int) -> str:
        """The packaged all-MiniLM-L6-v2 as an untrained AirRep folder with a shorter max_seq_length.

        AirRep is trained from it and the ``base`` method scores with it, so both read the same tokens.
        """
        from airsearch.encoder import AirRepEncoder

        path = self.out / f"base_encoder_{max_seq_length}"
        if not (path / "airsearch_encoder.json").exists():
            AirRepEncoder.from_base(None, device="cpu", max_seq_length=max_seq_length).save(path)
        return str(path)

    def stage(self, name: str, fn: Any) -> dict[str, Any]:
        path = self.out / "stages" / f"{name}.json"
        if path.exists():
            print(f"[skip] {name} (done: {path})", file=sys.stderr)
            return json.loads(path.read_text())
        print(f"[run ] {name}", file=sys.stderr)
        t0 = time.perf_counter()
        res = fn()
        res = {**res, "stage_seconds": round(time.perf_counter() - t0, 2)}
        write_json_atomic(path, res)
        return res

    # ------------------------------------------------------------------ stages
    def corpus(self) -> dict[str, Any]:
        from airsearch.data import sample_corpus_path
        from airsearch.data.corpus import load_corpus, write_rows

        src = Path(sample_corpus_path())
        train_file = src if src.is_file() else src / "train.jsonl"
        train = load_corpus(train_file).examples
        queries = load_corpus(train_file.with_name("queries.jsonl")).examples
        tasks = sorted({e.metadata["task"] for e in train})[: self.p["tasks"]]
        half = len(tasks) // 2
        split = {"train_tasks": tasks[:half], "eval_tasks": tasks[half:]}

        def pick(rows: list[Example], ts: list[str], n: int) -> list[Example]:
            return [e for t in ts for e in [r for r in rows if r.metadata["task"] == t][:n]]

        d = self.out / "data"
        write_rows(d / "train_tasks.jsonl", pick(train, split["train_tasks"], self.p["per_task"]))
        write_rows(d / "eval_train.jsonl", pick(train, split["eval_tasks"], self.p["per_task"]))
        write_rows(d / "eval_queries.jsonl", pick(queries, split["eval_tasks"], self.p["queries"]))
        return split

    def lm(self) -> dict[str, Any]:
        if self.lm_arg:
            return {"lm": self.lm_arg}
        from airsearch.data.corpus import load_corpus
        from airsearch.lm.tiny import TinyLMConfig, build_tiny_lm

        rows = load_corpus(
            [self.out / "data" / "train_tasks.jsonl", self.out / "data" / "eval_train.jsonl"]
        ).examples
        small = self.scale == "micro"
        cfg = TinyLMConfig(
            steps=self.p["lm_steps"],
            vocab_size=600 if small else 4096,
            hidden_size=32 if small else 128,
            intermediate_size=64 if small else 256,
            heads=2 if small else 4,
            min_frequency=1,
        )
        return {"lm": str(build_tiny_lm(rows, self.out / "lm", cfg, show_progress=not self.quiet))}

    def labels(self, corpus: str, out: str, teacher: str = "retrain", gold: bool = False) -> dict[str, Any]:
        """Subset-retraining (or teacher) labels; ``gold`` uses the preset's gold split counts."""
        from airsearch.trainers.labels import LabelConfig, generate_labels

        p = self.p
        cfg = LabelConfig(
            corpus=[str(self.out / "data" / corpus)],
            lm=self.lm_path,
            out=str(self.out / out),
            splits=p.get("gold_splits", p["splits"]) if gold else p["splits"],
            dev_size=p["dev"],
            pool_size=p["pool"],
            subset_size=p["subset"],
            subsets_per_split=p.get("gold_subsets", p["subsets"]) if gold else p["subsets"],
            epochs=p["ft_epochs"],
            lr=1e-3,
            batch_size=8,
            max_length=256,
            teacher=teacher,
        )
        return generate_labels(cfg, quiet=self.quiet).to_dict()

    def best_teacher(self) -> dict[str, Any]:
        """The gradient method with the best LDS on the training labels' held-out split (training data only)."""
        from airsearch.trainers.evaluation.lds import EvalLdsConfig, eval_lds

        cfg = EvalLdsConfig(
            corpus=[str(self.out / "data" / "train_tasks.jsonl")],
            gold=str(self.out / "labels"),
            methods=tuple(self.p["gradient"]),
            lm=self.lm_path,
            bootstrap=100,
            max_splits=1,
            proj_dim=self.p.get("proj_dim", 0),
        )
        res = eval_lds(cfg)
        scores = {m: r.lds.mean for m, r in res.methods.items()}
        best = max(scores, key=lambda m: -1e9 if scores[m] != scores[m] else scores[m])
        return {
            "teacher": best,
            "lds_on_training_labels": scores,
            **self.labels("train_tasks.jsonl", "teacher_labels", best),
        }

    def encoder(self, labels: str, out: str) -> dict[str, Any]:
        from airsearch.trainers.encoder_training import TrainConfig, train_encoder

        cfg = TrainConfig(
            labels=str(self.out / labels),
            out=str(self.out / out),
            base_encoder=self.base_encoder,
            epochs=self.p["enc_epochs"],
            lr=self.p.get("enc_lr", 1e-4),
            subsets_per_step=min(8, self.p["subsets"]),
            dev_per_step=self.p["dev"],
            holdout_splits=1,
            batch_size=16,
            device="cpu",
        )
        result = train_encoder(cfg).to_dict()
        self.keep_training_curve(out)
        return result

    def keep_training_curve(self, encoder_dir: str) -> None:
        """Copy the encoder's training-curve PNG where committed results live (the encoder is not)."""
        import shutil

        curve = self.out / encoder_dir / "training_curve.png"
        if curve.is_file():
            (self.out / "eval" / "training").mkdir(parents=True, exist_ok=True)
            shutil.copy2(curve, self.out / "eval" / "training" / f"{encoder_dir}_curve.png")

    def methods(self) -> tuple[str, ...]:
        encs = tuple(
            f"airrep:{self.out / d}" for d in ("airrep_retrain", "airrep_teacher") if (self.out / d).is_dir()
        )
        daunce = ("daunce",) if self.p.get("daunce_models") else ()
        return encs + ("base", "bm25", "random") + tuple(self.p["gradient"]) + daunce

    def run(self) -> dict[str, Any]:
        from airsearch.trainers.evaluation.classify import EvalClassifyConfig, eval_classify
        from airsearch.trainers.evaluation.lds import EvalLdsConfig, eval_lds
        from airsearch.trainers.evaluation.trace import eval_trace

        self.stage("corpus", self.corpus)
        self.lm_path = self.stage("lm", self.lm)["lm"]
        self.stage("labels", lambda: self.labels("train_tasks.jsonl", "labels"))
        teacher = self.stage("teacher", self.best_teacher)
        self.stage("encoder_retrain", lambda: self.encoder("labels", "airrep_retrain"))
        self.stage("encoder_teacher", lambda: self.encoder("teacher_labels", "airrep_teacher"))
        self.stage("gold", lambda: self.labels("eval_train.jsonl", "gold", gold=True))
        d, ev = self.out / "data", self.out / "eval"
        common = dict(
            methods=self.methods(),
            base_encoder=self.base_encoder,
            lm=self.lm_path,
            proj_dim=self.p.get("proj_dim", 0),
            daunce_models=self.p.get("daunce_models", 8),
        )
        lds = self.stage(
            "lds",
            lambda: eval_lds(
                EvalLdsConfig(
                    corpus=[str(d / "eval_train.jsonl")],
                    gold=str(self.out / "gold"),
                    out=str(ev / "lds"),
                    bootstrap=1000,
                    encoder_labels=[str(self.out / "labels"), str(self.out / "teacher_labels")],
                    **common,
                ),
            ).to_dict(),
        )
        cls = self.stage(
            "classify",
            lambda: eval_classify(
                EvalClassifyConfig(
                    corpus=[str(d / "eval_train.jsonl")],
                    queries=[str(d / "eval_queries.jsonl")],
                    out=str(ev / "classify"),
                    **{**common, "methods": tuple(m for m in common["methods"] if m not in ("dda",))},
                )
            ).to_dict(),
        )
        trace = {}
        for bench in ("entity-swap", "pii"):
            trace[bench] = self.stage(
                f"trace-{bench}",
                lambda b=bench: eval_trace(self.trace_config(b, ev / "trace", common)).to_dict(),
            )
        if "dda" in common["methods"]:
            for bench in ("entity-swap", "pii"):
                trace[f"{bench}-ablation"] = self.stage(
                    f"trace-{bench}-ablation", lambda b=bench: self.dda_ablation(b, common)
                )
        summary = self.summary(teacher, lds, cls, trace)
        write_text_atomic(self.out / "README.md", summary)
        print(summary)
        return {"out": str(self.out)}

    def dda_ablation(self, bench: str, common: dict[str, Any]) -> dict[str, Any]:
        """DDA's own ablation (DDA §5): DDA without its debias term (``dda:beta=0``), on the very
        checkpoints the trace stage fine-tuned (copied, so the two runs compare like with like)."""
        import shutil

        from airsearch.trainers.evaluation.trace import eval_trace

        ev, name = self.out / "eval", f"trace_{bench.replace('-', '_')}"
        src, dst = ev / "trace" / f"{name}_lm", ev / "trace_ablation" / f"{name}_lm"
        if src.is_dir() and not dst.exists():
            shutil.copytree(src, dst)
        ablation = {**common, "methods": ("dda:beta=0",)}
        return eval_trace(self.trace_config(bench, ev / "trace_ablation", ablation)).to_dict()

    def trace_config(self, bench: str, out: Path, common: dict[str, Any]) -> Any:
        from airsearch.trainers.evaluation.trace import EvalTraceConfig

        return EvalTraceConfig(
            benchmark=bench,
            n_synthetic=self.p["n_synthetic"],
            n_people=self.p["n_people"],
            epochs=self.p["trace_epochs"],
            k=max(5, self.p["n_synthetic"] // 100),
            out=str(out),
            **common,
        )

    def summary(self, teacher: dict, lds: dict, cls: dict, trace: dict) -> str:
        stages = sorted((self.out / "stages").glob("*.json"))
        total = sum(json.loads(f.read_text()).get("stage_seconds", 0.0) for f in stages)
        lines = [
            f"# Reproduction at scale '{self.scale}'\n",
            f"Machine: {machine()}. Stage time, summed: {total / 60:.1f} min "
            "(each stage's `stage_seconds` is in `stages/`).\n",
            f"Target LM: {display_path(self.lm_path)}. Best gradient teacher (LDS on training labels): {teacher['teacher']}.\n",
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", choices=list(SCALES), default="tiny")
    ap.add_argument("--out", default=None, help="default: benchmarks/results/reproduction/<scale>")
    ap.add_argument(
        "--base-encoder", default="default", help="base encoder folder ('default' = all-MiniLM-L6-v2)"
    )
    ap.add_argument("--lm", default=None, help="target LM folder (required for --scale gpu: SmolLM2-135M)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if a.scale == "gpu" and not a.lm:
        ap.error("--scale gpu needs --lm (SmolLM2-135M imported with `airsearch lm import-gguf`)")
    out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / "reproduction" / a.scale
    Pipeline(a.scale, out, a.base_encoder, a.lm, a.quiet).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
