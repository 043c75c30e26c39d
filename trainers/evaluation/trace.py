"""``eval trace``: planted-ground-truth tracing (DDA §5 entity swaps, HAIF PII-E).

1. Build the benchmark (:mod:`airsearch.trainers.evaluation.planted`,
   :mod:`airsearch.trainers.evaluation.pii`) and record its gold: the injected rows of each swap type,
   or each held-out question's biography.
2. Fine-tune the target LM on the planted training set, keeping one checkpoint per epoch (TracIn,
   DDA's denoising) beside the base model (DDA's debiasing). ``pii`` trains at least ``epochs``
   epochs and then until the LM answers ``pii_target`` of the held-out questions (at most
   ``pii_max_epochs``), keeping the last ``epochs`` checkpoints; the share answered after every
   epoch is recorded.
3. Collect the queries that show the planted behaviour
   (:mod:`airsearch.trainers.evaluation.trace_scoring`):
   - ``entity-swap``: held-out articles whose greedy generation names the swapped-in entity, or,
     failing that, where the fine-tuned LM gives the swapped summary a lower loss than the clean one;
   - ``pii``: only the held-out questions the LM answers correctly (greedy decoding reproduces the
     answer), as HAIF does; none answered means nothing is traced, and the result says so.
4. Score every method: ``entity-swap`` by AUC and R@k per swap type against that type's injected
   rows, pooled as the mean over types and the mean over queries; ``pii`` by top-1 tracing accuracy
   among the biographies. Rows are named by what ran (``build_methods``' labels, with the number of
   checkpoints the gradients were taken on).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any

from airsearch.trainers.evaluation.common import Cost, EvalConfig, EvalResult, Timer
from airsearch.trainers.evaluation.methods import Method
from airsearch.trainers.evaluation.pii import answered_correctly, make_pii_benchmark
from airsearch.trainers.evaluation.planted import entity_swap_benchmark
from airsearch.trainers.evaluation.report import bar_plot, fmt, markdown_table
from airsearch.trainers.evaluation.run import EvalTask, run_eval
from airsearch.trainers.evaluation.trace_scoring import (
    SwapTypeScore,
    TraceScore,
    pii_queries,
    score_pii,
    score_swaps,
    swap_queries,
)

from airsearch.atomic import write_json_atomic
from airsearch.config import require
from airsearch.data.corpus import Corpus
from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.lm.model import TargetLM
from airsearch.results import omitted_when_none

__all__ = ["EvalTraceConfig", "EvalTraceResult", "SwapTypeScore", "TraceScore", "eval_trace"]

BENCHMARKS = ("entity-swap", "pii")
TRACE_METHODS = ("airrep", "base", "bm25", "random")
TRAINING_RECORD = "training.json"


@dataclasses.dataclass(kw_only=True)
class EvalTraceConfig(EvalConfig):
    """``eval trace``: ``--gold`` is a gold record (``trace_<benchmark>_gold.json``) from an earlier run."""

    benchmark: str = field(
        default="entity-swap", metadata={"help": "entity-swap (DDA §5) or pii (HAIF PII-E)."}
    )
    n_synthetic: int = field(
        default=400, metadata={"help": "Rows of the synthetic news corpus (entity-swap)."}
    )
    swap_p: float = field(
        default=0.5, metadata={"help": "Entity-swap: probability that a row's entity is swapped (DDA: 0.5)."}
    )
    queries_per_type: int = field(
        default=6, metadata={"help": "Entity-swap: held-out query articles per swap type."}
    )
    n_people: int = field(default=40, metadata={"help": "Synthetic people (pii)."})
    bios_per_person: int = field(
        default=4, metadata={"help": "PII: biographies per person (seeded orders and phrasings)."}
    )
    epochs: int = field(
        default=3,
        metadata={
            "help": "Fine-tuning epochs on the planted corpus, one checkpoint each (pii: the least "
            "number of epochs and the last checkpoints kept)."
        },
    )
    pii_target: float = field(
        default=0.2,
        metadata={"help": "PII: train until the LM answers this share of the held-out questions."},
    )
    pii_max_epochs: int = field(default=60, metadata={"help": "PII: at most this many epochs."})
    pii_lr: float = field(default=2e-3, metadata={"help": "PII: fine-tuning learning rate."})
    lr: float = field(default=1e-3, metadata={"help": "Entity-swap: fine-tuning learning rate."})
    batch_size: int = field(default=8, metadata={"help": "Fine-tuning batch size."})
    max_length: int = field(default=256, metadata={"help": "Tokens per example."})
    k: int = field(
        default=10,
        metadata={
            "help": "R@k: share of positives among the top k (at most the type's positives).",
            "flag": ("-k", "--k"),
        },
    )
    max_new_tokens: int = field(default=24, metadata={"help": "Greedy generation length."})

    def validate(self) -> None:
        super().validate()
        require(self.benchmark in BENCHMARKS, "benchmark", f"must be one of {BENCHMARKS}")
        for name in (
            "n_synthetic",
            "n_people",
            "bios_per_person",
            "epochs",
            "batch_size",
            "k",
            "max_new_tokens",
        ):
            require(getattr(self, name) >= 1, name, "must be at least 1")
        require(self.queries_per_type >= 1, "queries_per_type", "must be at least 1")
        require(0.0 < self.swap_p <= 1.0, "swap_p", "must be in (0, 1]")
        require(0.0 < self.pii_target <= 1.0, "pii_target", "must be in (0, 1]")
        require(self.lr > 0 and self.pii_lr > 0, "lr", "learning rates must be positive")
        require(self.pii_max_epochs >= self.epochs, "pii_max_epochs", "must be at least epochs")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalTraceResult(EvalResult[TraceScore]):
    """What :func:`eval_trace` returns (``--json``) and writes to ``trace_<benchmark>.json``."""

    benchmark: str
    queries: dict[str, Any]  # how the queries were collected (counts, mode, the target's training)
    n_train: int
    n_candidates: int
    n_injected: int | None = omitted_when_none()  # entity-swap
    positives_per_type: dict[str, int] | None = omitted_when_none()  # entity-swap


def _finetune_with_checkpoints(
    cfg: EvalTraceConfig,
    base: TargetLM,
    train: list[Example],
    out: Path,
    *,
    max_epochs: int,
    lr: float,
    until: Callable[[TargetLM], float] | None = None,
    target: float = 1.0,
) -> tuple[list[TargetLM], dict[str, Any]]:
    """Fine-tune ``base`` on ``train`` for ``cfg.epochs`` epochs, then, with ``until``, on until
    ``until(lm) >= target`` or ``max_epochs``; keep the last ``cfg.epochs`` epoch checkpoints.

    Returns the checkpoints (oldest first) and a record: the epochs trained, the checkpoints' epochs
    and ``until`` after every epoch. The checkpoints (``checkpoint-<epoch>``, each LM's ``source``) and
    the record are saved in ``out`` and reused by a run with the same settings.
    """
    from airsearch.data.corpus import fingerprint_examples
    from airsearch.lm import load_lm, save_lm
    from airsearch.lm.finetune import FinetuneConfig, finetune

    ft = FinetuneConfig(
        epochs=max_epochs, lr=lr, batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed
    )
    settings = {
        "finetune": ft.to_dict(),
        "keep": cfg.epochs,
        "target": target if until else None,
        "lm": base.fingerprint,
        "train": fingerprint_examples(train),
    }
    if (out / TRAINING_RECORD).is_file():
        record = json.loads((out / TRAINING_RECORD).read_text())
        dirs = [out / f"checkpoint-{e}" for e in record.get("checkpoint_epochs", [])]
        if record.get("settings") == settings and dirs and all((d / "config.json").exists() for d in dirs):
            kw = {"device": cfg.device, "max_length": cfg.max_length}
            return [load_lm(d, **kw) for d in dirs], record
    cks: list[tuple[int, TargetLM]] = []
    curve: list[dict[str, float]] = []

    def keep(epoch: int, lm_now: TargetLM) -> bool:
        ck = lm_now.clone()
        ck.invalidate_fingerprint()
        cks.append((epoch, ck))
        save_lm(ck, out / f"checkpoint-{epoch}")
        ck.source = str(out / f"checkpoint-{epoch}")  # methods that reload the LM find this one
        while len(cks) > cfg.epochs:
            old, _ = cks.pop(0)
            shutil.rmtree(out / f"checkpoint-{old}", ignore_errors=True)
        if until is None:
            return False
        value = float(until(ck))
        curve.append({"epoch": epoch, "value": value})
        return epoch >= cfg.epochs and value >= target

    finetune(base, train, ft, on_epoch_end=keep, show_progress=False)
    record = {
        "settings": settings,
        "epochs_trained": cks[-1][0],
        "checkpoint_epochs": [e for e, _ in cks],
        "curve": curve,
    }
    write_json_atomic(out / TRAINING_RECORD, record)
    return [ck for _, ck in cks], record


def eval_trace(
    cfg: EvalTraceConfig, *, corpus: Corpus | None = None, lm: TargetLM | None = None
) -> EvalTraceResult:
    """Run one planted benchmark end to end; writes ``trace_<benchmark>.json``/``.md``/``.png``."""
    from airsearch.data.corpus import load_corpus
    from airsearch.lm import load_lm

    if corpus is None and cfg.corpus:
        corpus = load_corpus(list(cfg.corpus), **cfg.read_options())
    if lm is None:
        if not cfg.lm:
            raise InputError("a target LM folder is needed", field="lm")
        lm = load_lm(cfg.lm, device=cfg.device, max_length=cfg.max_length)
    out = Path(cfg.out) if cfg.out else None
    name = cfg.benchmark.replace("-", "_")
    with tempfile.TemporaryDirectory(prefix="airsearch-trace-") as tmp:
        # the checkpoints are always saved: a method may reload the final one from its folder
        return run_eval(
            cfg, _TraceTask(cfg, corpus, lm, name, out / f"trace_{name}_lm" if out else Path(tmp))
        )


class _TraceTask(EvalTask[TraceScore, EvalTraceResult]):
    """``eval trace`` for :func:`run_eval`: the planted benchmark and its gold, the fine-tune with
    checkpoints (:meth:`start`), then each method's tracing figures on the queries that show the plant."""

    def __init__(
        self, cfg: EvalTraceConfig, corpus: Corpus | None, lm: TargetLM, name: str, lm_dir: Path
    ) -> None:
        from airsearch.data.corpus import fingerprint_examples

        self.cfg, self.lm, self.lm_dir, self.name = cfg, lm, lm_dir, f"trace_{name}"
        self.swap = cfg.benchmark == "entity-swap"
        if self.swap:
            self.bench = entity_swap_benchmark(
                corpus.examples if corpus is not None else None,
                n_synthetic=cfg.n_synthetic,
                p=cfg.swap_p,
                seed=cfg.seed,
                n_queries_per_type=cfg.queries_per_type,
            )
            if not self.bench.queries:
                raise InputError(
                    "the corpus has entity rows but no held-out queries; leave the corpus out "
                    "to use the synthetic news corpus",
                    field="corpus",
                )
            self.planted = self.train = self.bench.examples
            positives = {t: self.bench.positives(t) for t in self.bench.swap_types}
            gold_ids: Any = {
                t: [e.id for e, p in zip(self.planted, v, strict=True) if p] for t, v in positives.items()
            }
        else:
            self.pii = make_pii_benchmark(cfg.n_people, bios_per_person=cfg.bios_per_person, seed=cfg.seed)
            self.planted, self.train = self.pii.train, self.pii.biographies  # methods rank the biographies
            gold_ids = self.pii.target
        self.record = {
            "benchmark": cfg.benchmark,
            "source_corpus": corpus.fingerprint if corpus is not None else "synthetic",
            "planted_corpus": fingerprint_examples(self.planted),
            "seed": cfg.seed,
            "gold": gold_ids,
        }
        self.gold = (self.record, ("source_corpus", "planted_corpus"), f"{cfg.benchmark} plant")

    def start(self) -> dict[str, TraceScore]:
        """Fine-tune the target with checkpoints, then collect the queries that show the plant."""
        cfg = self.cfg
        with Timer() as t_ft:
            if self.swap:
                self.cks, training = _finetune_with_checkpoints(
                    cfg, self.lm, self.planted, self.lm_dir, max_epochs=cfg.epochs, lr=cfg.lr
                )
            else:

                def share(m: TargetLM) -> float:
                    return float(answered_correctly(m, self.pii.heldout, max_length=cfg.max_length).mean())

                self.cks, training = _finetune_with_checkpoints(
                    cfg, self.lm, self.planted, self.lm_dir, max_epochs=cfg.pii_max_epochs, lr=cfg.pii_lr,
                    until=share, target=cfg.pii_target,
                )  # fmt: skip
        final = self.cks[-1]
        if self.swap:
            self.queries, self.qinfo = swap_queries(final, self.bench.queries, cfg.max_new_tokens)
        else:
            self.queries, self.qinfo = pii_queries(
                final, self.pii.heldout, cfg.max_length, cfg.max_new_tokens
            )
        self.qinfo["finetune_seconds"] = t_ft.seconds
        self.qinfo["training"] = {k: v for k, v in training.items() if k != "settings"}
        self.n_queries = len(self.queries)
        return {}

    def method_options(self) -> dict[str, Any]:
        kw = {"checkpoints": self.cks, "base_lm": self.lm, "batch_size": self.cfg.batch_size}
        return {"lm": self.cks[-1], **kw}

    def unscored(self) -> TraceScore | None:
        return None if self.queries else TraceScore(note="no query showed the planted behaviour")

    def answers(self, method: Method) -> TraceScore:
        bs = self.cfg.block_size
        if self.swap:
            return score_swaps(method, self.queries, self.bench, self.cfg.k, block_size=bs)
        return score_pii(method, self.queries, self.train, self.pii.target, block_size=bs)

    def score(self, method: Method, answers: TraceScore, cost: Cost) -> TraceScore:
        settings = method.describe().get("settings")
        return dataclasses.replace(answers, settings=settings, fingerprint=method.fingerprint(), cost=cost)

    def report(self, results: dict[str, TraceScore], **common: Any) -> EvalTraceResult:
        fps = {k: self.record[k] for k in ("source_corpus", "planted_corpus")} | {"lm": self.lm.fingerprint}
        return EvalTraceResult(
            command="eval trace",
            benchmark=self.cfg.benchmark,
            fingerprints=fps,
            queries={k: v for k, v in self.qinfo.items() if k != "generations"},
            n_train=len(self.planted),
            n_candidates=len(self.train),
            n_injected=len(self.bench.injected) if self.swap else None,
            positives_per_type=self.bench.n_positives() if self.swap else None,
            table=_table(self.cfg, results, self.qinfo),
            **common,
        )

    def plots(self, out: Path, results: dict[str, TraceScore]) -> dict[str, Path]:
        scored = {n: r for n, r in results.items() if r.note is None}
        series = (
            {
                "AUC (types)": [r.auc for r in scored.values()],
                "R@k (types)": [r.r_at_k for r in scored.values()],
            }
            if self.swap
            else {"top-1": [r.top1 for r in scored.values()]}
        )
        title = f"tracing: {self.cfg.benchmark}"
        return {"plot": bar_plot(out / f"{self.name}.png", list(scored), series, title=title, ylabel="score")}


def _table(cfg: EvalTraceConfig, results: dict[str, TraceScore], qinfo: dict[str, Any]) -> str:
    def pct(x: float | None) -> str:
        return fmt(float("nan") if x is None else x, 1, 100)

    training = qinfo.get("training", {})
    if cfg.benchmark == "pii":
        rows = [[m, pct(r.top1), r.n_queries or 0] for m, r in results.items()]
        note = (
            f"The target answers {qinfo['n_correct']} of {qinfo['n_heldout']} held-out questions "
            f"({100 * qinfo['answer_accuracy']:.1f}%) after {training.get('epochs_trained')} epochs; "
            "only those are traced.\n\n"
        )
        return note + markdown_table(["method", "top-1 tracing accuracy (%)", "queries"], rows)
    types = sorted({t for r in results.values() for t in (r.per_type or {})})
    rows = [
        [m, pct(r.auc), pct(r.r_at_k), pct(r.query_auc), pct(r.query_r_at_k), r.n_queries or 0]
        for m, r in results.items()
    ]
    head = ["method", "AUC (%)", "R@k (%)", "AUC per query (%)", "R@k per query (%)", "queries"]
    shown = qinfo.get("shown_per_type", {})
    note = (
        f"Means over the {len(types)} swap types with queries ({sum(shown.values())} queries); "
        f"k = min({cfg.k}, the type's injected rows).\n\n"
    )
    k_of = {t: s.k for r in results.values() for t, s in (r.per_type or {}).items()}
    per_type = [
        [m]
        + [
            f"{pct(r.per_type[t].auc)} / {pct(r.per_type[t].r_at_k)}"
            if r.per_type and t in r.per_type
            else "–"
            for t in types
        ]
        for m, r in results.items()
    ]
    type_head = ["AUC / R@k (%)"] + [f"{t} (k={k_of[t]})" for t in types]
    return note + markdown_table(head, rows) + "\nPer swap type:\n\n" + markdown_table(type_head, per_type)
