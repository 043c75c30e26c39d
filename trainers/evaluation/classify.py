"""``eval classify``: data classification (AirRep §7), the identical-class test for LM fine-tuning.

For every query, the method's top-1 (and top-k) attributed training examples are compared with the
query's label (``--label-field``, e.g. the task): the share of queries whose top-1 example has the
same label is the accuracy (AirRep Table 2: FLAN, AirRep 86.4, LoGra 85.4, GTE-small 50.6).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

from airsearch.trainers.evaluation.common import (
    Cost,
    EvalConfig,
    EvalResult,
    Timer,
    build_methods,
    check_or_write_gold,
    corpus_from,
    cost_entry,
    queries_from,
)
from airsearch.trainers.evaluation.methods import BUILTIN_METHODS, topk
from airsearch.trainers.evaluation.metrics import LabelAccuracy, top_k_label_accuracy
from airsearch.trainers.evaluation.report import bar_plot, fmt, markdown_table

from airsearch.config import require
from airsearch.data.corpus import Corpus
from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.lm.model import TargetLM


@dataclasses.dataclass(kw_only=True)
class EvalClassifyConfig(EvalConfig):
    """``eval classify``: ``--gold`` is a gold record (``classify_gold.json``) from an earlier run."""

    queries: list[str] = field(default_factory=list, metadata={"help": "Query file(s) with labels."})
    label_field: str = field(default="task", metadata={"help": "Metadata field holding each row's label."})
    k: int = field(
        default=5, metadata={"help": "Also report top-k accuracy for this k.", "flag": ("-k", "--k")}
    )

    def validate(self) -> None:
        super().validate()
        require(self.k >= 1, "k", "must be at least 1")


@dataclasses.dataclass(frozen=True)
class ClassifyScore(LabelAccuracy):
    """One method's label accuracy, its fingerprint and cost."""

    fingerprint: str | None
    cost: Cost


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalClassifyResult(EvalResult[ClassifyScore]):
    """What :func:`eval_classify` returns (``--json``) and writes to ``classify.json``."""

    n_train: int
    n_queries: int
    n_labels: int
    majority_share: float  # the accuracy of always answering the most common label


def labels_of(examples: list[Example], field_name: str, *, what: str) -> list[Any]:
    """Each example's label (metadata ``field_name``); refused when a ``what`` row has none."""
    missing = [e.id for e in examples if field_name not in e.metadata]
    if missing:
        raise InputError(
            f"{len(missing)} {what} row(s) have no '{field_name}' field (e.g. {missing[:3]})",
            field="label_field",
        )
    return [e.metadata[field_name] for e in examples]


def eval_classify(
    cfg: EvalClassifyConfig,
    *,
    corpus: Corpus | None = None,
    queries: Corpus | Sequence[Example] | None = None,
    lm: TargetLM | None = None,
) -> EvalClassifyResult:
    """Top-1/top-k label accuracy per method; writes ``classify.json``/``.md``/``.png`` to ``cfg.out``.

    ``corpus`` / ``queries`` / ``lm`` already in memory replace reading ``cfg.corpus`` / ``cfg.queries``
    / ``cfg.lm``."""
    from airsearch.data.corpus import fingerprint_examples

    corpus = corpus_from(cfg, corpus)
    query_list = queries_from(cfg.queries, queries)
    train = list(corpus.examples)
    train_labels = labels_of(train, cfg.label_field, what="corpus")
    query_labels = labels_of(query_list, cfg.label_field, what="query")
    out = Path(cfg.out) if cfg.out else None
    record = {
        "corpus": corpus.fingerprint,
        "queries": fingerprint_examples(query_list),
        "label_field": cfg.label_field,
    }
    gold = Path(cfg.gold) if cfg.gold else (out / "classify_gold.json" if out else None)
    if gold:
        check_or_write_gold(
            gold, record, keys=("corpus", "queries", "label_field"), what="classification labels"
        )
    if lm is None and cfg.lm and any(m.split(":")[0] not in BUILTIN_METHODS for m in cfg.methods):
        from airsearch.lm import load_lm

        lm = load_lm(cfg.lm, device=cfg.device)

    results: dict[str, ClassifyScore] = {}
    for label, method in build_methods(cfg, lm=lm, workdir=out / "work" if out else None):
        method.prepare(train)
        with Timer() as t:
            _, idx = topk(method, query_list, cfg.k, block_size=cfg.block_size)
        ranked = [[train_labels[i] for i in row] for row in idx]
        acc = top_k_label_accuracy(ranked, query_labels, cfg.k)
        results[label] = ClassifyScore(
            **{f.name: getattr(acc, f.name) for f in dataclasses.fields(acc)},
            fingerprint=method.fingerprint(),
            cost=cost_entry(method, t.seconds, len(query_list)),
        )
    n_labels = len(set(train_labels))
    chance = (
        max(train_labels.count(lbl) for lbl in set(train_labels)) / len(train_labels)
        if train_labels
        else float("nan")
    )
    rows = [
        [m, fmt(r.top1, 1, 100), fmt(r.topk_any, 1, 100), fmt(r.topk_share, 1, 100)]
        for m, r in results.items()
    ]
    table = markdown_table(
        ["method", "top-1 acc (%)", f"top-{cfg.k} any (%)", f"top-{cfg.k} share (%)"], rows
    )
    result = EvalClassifyResult(
        command="eval classify",
        config=cfg.to_dict(),
        fingerprints=record,
        n_train=len(train),
        n_queries=len(query_list),
        n_labels=n_labels,
        majority_share=chance,
        methods=results,
        table=table,
    )

    def plots(d: Path) -> dict[str, Path]:
        series = {
            "top-1": [r.top1 for r in results.values()],
            f"top-{cfg.k} any": [r.topk_any for r in results.values()],
        }
        title = f"data classification by '{cfg.label_field}'"
        return {"plot": bar_plot(d / "classify.png", list(results), series, title=title, ylabel="accuracy")}

    return result.written(out, "classify", plots)
