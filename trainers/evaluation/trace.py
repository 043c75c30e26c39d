"""``eval trace``: planted-ground-truth tracing (DDA §5 entity swaps, HAIF PII-E).

1. Build the benchmark (:mod:`airsearch.trainers.evaluation.planted`) and record its gold (the injected ids).
2. Fine-tune the target LM on the planted training set, keeping one checkpoint per epoch (TracIn,
   DDA's denoising) beside the base model (DDA's debiasing).
3. Collect the queries that show the planted behaviour:
   - ``entity-swap``: held-out articles about a source entity whose greedy generation contains the
     swapped-in entity, or, failing that, where the fine-tuned LM gives the swapped summary a lower
     loss than the clean one (the query's response is then the swapped summary);
   - ``pii``: held-out questions answered correctly by greedy generation (HAIF); if none are
     (a tiny LM), all held-out questions with their true answers, reported as such.
4. Score every method: ``entity-swap`` by AUC (injected rows positive) and R@k (precision among the
   top k) per swap type, the training rows scored by their summed score over that type's queries;
   ``pii`` by top-1 tracing accuracy among the biographies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from pathlib import Path
from typing import Any

import numpy as np
from airsearch.trainers.evaluation.common import (
    Cost,
    EvalConfig,
    EvalResult,
    Timer,
    build_methods,
    check_or_write_gold,
    cost_entry,
)
from airsearch.trainers.evaluation.lmtools import greedy_generate
from airsearch.trainers.evaluation.methods import summed_scores, topk
from airsearch.trainers.evaluation.metrics import precision_at_k, roc_auc
from airsearch.trainers.evaluation.planted import DEFAULT_SWAPS, entity_swap_benchmark, make_pii_benchmark
from airsearch.trainers.evaluation.report import bar_plot, fmt, markdown_table

from airsearch.config import require
from airsearch.data.corpus import Corpus
from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.lm.model import TargetLM
from airsearch.results import Result, omitted_when_none

BENCHMARKS = ("entity-swap", "pii")
TRACE_METHODS = ("airrep", "base", "bm25", "random")


@dataclasses.dataclass(kw_only=True)
class EvalTraceConfig(EvalConfig):
    """``eval trace``: ``--gold`` is a gold record (``trace_<benchmark>_gold.json``) from an earlier run."""

    benchmark: str = field(
        default="entity-swap", metadata={"help": "entity-swap (DDA §5) or pii (HAIF PII-E)."}
    )
    n_synthetic: int = field(
        default=400, metadata={"help": "Rows of the synthetic news corpus (entity-swap)."}
    )
    n_people: int = field(default=40, metadata={"help": "Synthetic people (pii)."})
    epochs: int = field(default=3, metadata={"help": "Fine-tuning epochs on the planted corpus."})
    lr: float = field(default=1e-3, metadata={"help": "Fine-tuning learning rate."})
    batch_size: int = field(default=8, metadata={"help": "Fine-tuning batch size."})
    max_length: int = field(default=256, metadata={"help": "Tokens per example."})
    k: int = field(default=50, metadata={"help": "R@k: precision among the top k (DDA uses 500)."})
    max_new_tokens: int = field(default=24, metadata={"help": "Greedy generation length."})

    def validate(self) -> None:
        super().validate()
        require(self.benchmark in BENCHMARKS, "benchmark", f"must be one of {BENCHMARKS}")
        for name in ("n_synthetic", "n_people", "epochs", "batch_size", "k", "max_new_tokens"):
            require(getattr(self, name) >= 1, name, "must be at least 1")


@dataclasses.dataclass(frozen=True)
class SwapTypeScore(Result):
    """Entity-swap tracing of one swap type: AUC and R@k of the injected rows."""

    auc: float
    r_at_k: float
    n_queries: int
    n_positive: int


@dataclasses.dataclass(frozen=True)
class TraceScore(Result):
    """One method's tracing scores: entity-swap AUC and R@k (mean over swap types and pooled), or PII
    top-1 accuracy; only ``note`` when no query showed the planted behaviour."""

    note: str | None = omitted_when_none()
    top1: float | None = omitted_when_none()  # pii
    auc: float | None = omitted_when_none()  # entity-swap, from here to per_type
    r_at_k: float | None = omitted_when_none()
    k: int | None = omitted_when_none()
    pooled_auc: float | None = omitted_when_none()
    pooled_r_at_k: float | None = omitted_when_none()
    per_type: dict[str, SwapTypeScore] | None = omitted_when_none()
    n_queries: int | None = omitted_when_none()
    fingerprint: str | None = omitted_when_none()
    cost: Cost | None = omitted_when_none()


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalTraceResult(EvalResult[TraceScore]):
    """What :func:`eval_trace` returns (``--json``) and writes to ``trace_<benchmark>.json``."""

    benchmark: str
    queries: dict[str, Any]  # how the queries were collected (counts, mode, fine-tuning seconds)
    n_train: int
    n_candidates: int
    n_injected: int | None = omitted_when_none()  # entity-swap


def _finetune_with_checkpoints(
    cfg: EvalTraceConfig, base: TargetLM, train: list[Example], out: Path | None
) -> list[TargetLM]:
    """Fine-tuned checkpoints th_1..th_N (one per epoch), saved under ``out`` and reused when present."""
    from airsearch.lm import load_lm, save_lm
    from airsearch.lm.finetune import FinetuneConfig, finetune

    dirs = [out / f"checkpoint-{e}" for e in range(1, cfg.epochs + 1)] if out else []
    if dirs and all((d / "config.json").exists() for d in dirs):
        return [load_lm(d, device=cfg.device, max_length=cfg.max_length) for d in dirs]
    cks: list[TargetLM] = []

    def keep(epoch: int, lm_now: TargetLM) -> None:
        ck = lm_now.clone()
        ck.invalidate_fingerprint()
        cks.append(ck)
        if out:
            save_lm(ck, out / f"checkpoint-{epoch}")

    ft = FinetuneConfig(
        epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed
    )
    finetune(base, train, ft, on_epoch_end=keep, show_progress=False)
    return cks


def _swap_queries(
    lm: TargetLM, queries: list[Example], max_new_tokens: int
) -> tuple[list[Example], dict[str, Any]]:
    from airsearch.lm import example_losses

    gens = greedy_generate(lm, queries, max_new_tokens=max_new_tokens)
    swapped = []
    for q in queries:
        src, dst = q.metadata["swap"].split("->")
        swapped.append(Example(q.id, q.prompt, q.response.replace(src, dst), q.metadata))
    loss_sw = example_losses(lm, swapped, show_progress=False)
    loss_cl = example_losses(lm, queries, show_progress=False)
    shown, n_gen, n_loss = [], 0, 0
    for q, g, s, ls, lc in zip(queries, gens, swapped, loss_sw, loss_cl, strict=True):
        dst = q.metadata["swap"].split("->")[1]
        if dst in g:
            shown.append(Example(q.id, q.prompt, g, {**q.metadata, "shown_by": "generation"}))
            n_gen += 1
        elif ls < lc:
            shown.append(dataclasses.replace(s, metadata={**s.metadata, "shown_by": "loss"}))
            n_loss += 1
    return shown, {
        "n_candidates": len(queries),
        "by_generation": n_gen,
        "by_loss": n_loss,
        "generations": dict(zip([q.id for q in queries], gens, strict=True)),
    }


def _pii_queries(
    lm: TargetLM, heldout: list[Example], max_new_tokens: int
) -> tuple[list[Example], dict[str, Any]]:
    gens = greedy_generate(lm, heldout, max_new_tokens=max_new_tokens)
    correct = [q for q, g in zip(heldout, gens, strict=True) if g.strip().startswith(q.response.strip())]
    info = {
        "n_heldout": len(heldout),
        "n_correct": len(correct),
        "answer_accuracy": len(correct) / max(1, len(heldout)),
    }
    if correct:
        return correct, {**info, "query_mode": "correctly answered (HAIF)"}
    return list(heldout), {**info, "query_mode": "all held-out, true answers (no correct answer)"}


def eval_trace(
    cfg: EvalTraceConfig, *, corpus: Corpus | None = None, lm: TargetLM | None = None
) -> EvalTraceResult:
    """Run one planted benchmark end to end; writes ``trace_<benchmark>.json``/``.md``/``.png``."""
    from airsearch.data.corpus import fingerprint_examples, load_corpus
    from airsearch.lm import load_lm

    if corpus is None and cfg.corpus:
        corpus = load_corpus(list(cfg.corpus))
    if lm is None:
        if not cfg.lm:
            raise InputError("a target LM folder is needed", field="lm")
        lm = load_lm(cfg.lm, device=cfg.device, max_length=cfg.max_length)
    out = Path(cfg.out) if cfg.out else None
    name = cfg.benchmark.replace("-", "_")
    if cfg.benchmark == "entity-swap":
        bench = entity_swap_benchmark(
            corpus.examples if corpus is not None else None, n_synthetic=cfg.n_synthetic, seed=cfg.seed
        )
        if not bench.queries:
            raise InputError(
                "the corpus has entity rows but no held-out queries; leave the corpus out "
                "to use the synthetic news corpus",
                field="corpus",
            )
        train, candidates = bench.examples, bench.examples
        gold_ids: Any = sorted(bench.injected)
    else:
        pii = make_pii_benchmark(cfg.n_people, seed=cfg.seed)
        train, candidates = pii.train, pii.biographies
        gold_ids = pii.target
    record = {
        "benchmark": cfg.benchmark,
        "source_corpus": corpus.fingerprint if corpus is not None else "synthetic",
        "planted_corpus": fingerprint_examples(train),
        "seed": cfg.seed,
        "gold": gold_ids,
    }
    gold = Path(cfg.gold) if cfg.gold else (out / f"trace_{name}_gold.json" if out else None)
    if gold:
        check_or_write_gold(
            gold, record, keys=("source_corpus", "planted_corpus"), what=f"{cfg.benchmark} plant"
        )

    with Timer() as t_ft:
        cks = _finetune_with_checkpoints(cfg, lm, train, out / f"trace_{name}_lm" if out else None)
    final = cks[-1]
    if cfg.benchmark == "entity-swap":
        queries, qinfo = _swap_queries(final, bench.queries, cfg.max_new_tokens)
    else:
        queries, qinfo = _pii_queries(final, pii.heldout, cfg.max_new_tokens)
    qinfo["finetune_seconds"] = t_ft.seconds

    results: dict[str, TraceScore] = {}
    for label, method in build_methods(
        cfg,
        lm=final,
        checkpoints=cks,
        base_lm=lm,
        batch_size=cfg.batch_size,
        workdir=out / "work" if out else None,
    ):
        if not queries:
            results[label] = TraceScore(note="no query showed the planted behaviour")
            continue
        method.prepare(candidates)
        with Timer() as t:
            if cfg.benchmark == "entity-swap":
                score = _swap_metrics(method, queries, bench, cfg.k)
            else:
                _, idx = topk(method, queries, 1, block_size=cfg.block_size)
                hits = [
                    candidates[int(i[0])].id == pii.target[q.id] for q, i in zip(queries, idx, strict=True)
                ]
                score = TraceScore(top1=float(np.mean(hits)), n_queries=len(queries))
        results[label] = dataclasses.replace(
            score, fingerprint=method.fingerprint(), cost=cost_entry(method, t.seconds, len(queries))
        )

    result = EvalTraceResult(
        command="eval trace",
        benchmark=cfg.benchmark,
        config=cfg.to_dict(),
        fingerprints={k: record[k] for k in ("source_corpus", "planted_corpus")} | {"lm": lm.fingerprint},
        queries={k: v for k, v in qinfo.items() if k != "generations"},
        n_train=len(train),
        n_candidates=len(candidates),
        n_injected=len(bench.injected) if cfg.benchmark == "entity-swap" else None,
        methods=results,
        table=_table(cfg, results),
    )

    def plots(d: Path) -> dict[str, Path]:
        scored = {n: r for n, r in results.items() if r.note is None}
        series = (
            {"AUC": [r.auc for r in scored.values()], f"R@{cfg.k}": [r.r_at_k for r in scored.values()]}
            if cfg.benchmark == "entity-swap"
            else {"top-1": [r.top1 for r in scored.values()]}
        )
        title = f"tracing: {cfg.benchmark}"
        return {"plot": bar_plot(d / f"trace_{name}.png", list(scored), series, title=title, ylabel="score")}

    return result.written(out, f"trace_{name}", plots)


def _swap_metrics(method: Any, queries: list[Example], bench: Any, k: int) -> TraceScore:
    types = [f"{s}->{d}" for s, d in DEFAULT_SWAPS]
    groups = {t: [i for i, q in enumerate(queries) if q.metadata["swap"] == t] for t in types}
    groups = {t: g for t, g in groups.items() if g}
    scores = summed_scores(method, queries, list(groups.values()) + [list(range(len(queries)))])
    per_type = {}
    for j, t in enumerate(groups):
        pos = bench.positives(t)
        per_type[t] = SwapTypeScore(
            auc=roc_auc(scores[:, j], pos),
            r_at_k=precision_at_k(scores[:, j], pos, k),
            n_queries=len(groups[t]),
            n_positive=int(pos.sum()),
        )
    pooled_pos = bench.positives()
    aucs = [v.auc for v in per_type.values()]
    raks = [v.r_at_k for v in per_type.values()]
    return TraceScore(
        auc=float(np.nanmean(aucs)) if aucs else float("nan"),
        r_at_k=float(np.nanmean(raks)) if raks else float("nan"),
        k=k,
        pooled_auc=roc_auc(scores[:, -1], pooled_pos),
        pooled_r_at_k=precision_at_k(scores[:, -1], pooled_pos, k),
        per_type=per_type,
        n_queries=len(queries),
    )


def _mean(values: list[float]) -> float:
    v = np.asarray(values, dtype=float)
    return float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else float("nan")


def _table(cfg: EvalTraceConfig, results: dict[str, TraceScore]) -> str:
    def pct(x: float | None) -> str:
        return fmt(float("nan") if x is None else x, 1, 100)

    if cfg.benchmark == "entity-swap":
        rows = [
            [m, pct(r.auc), pct(r.r_at_k), pct(r.pooled_auc), r.n_queries or 0] for m, r in results.items()
        ]
        return markdown_table(["method", "AUC (%)", f"R@{cfg.k} (%)", "pooled AUC (%)", "queries"], rows)
    rows = [[m, pct(r.top1), r.n_queries or 0] for m, r in results.items()]
    return markdown_table(["method", "top-1 tracing accuracy (%)", "queries"], rows)
