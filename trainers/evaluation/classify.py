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

from airsearch.trainers.evaluation.common import Cost, EvalConfig, EvalResult, corpus_from, queries_from
from airsearch.trainers.evaluation.methods import Method, topk
from airsearch.trainers.evaluation.metrics import LabelAccuracy, top_k_label_accuracy
from airsearch.trainers.evaluation.report import bar_plot, fmt, markdown_table
from airsearch.trainers.evaluation.run import EvalTask, run_eval
from airsearch.trainers.evaluation.specs import needs_lm

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
    task = _ClassifyTask(cfg, corpus_from(cfg, corpus), queries_from(cfg.queries, queries), lm)
    return run_eval(cfg, task)


class _ClassifyTask(EvalTask[ClassifyScore, EvalClassifyResult]):
    """``eval classify`` for :func:`run_eval`: the labels of each method's top-k training rows."""

    name = "classify"

    def __init__(
        self, cfg: EvalClassifyConfig, corpus: Corpus, queries: list[Example], lm: TargetLM | None
    ) -> None:
        from airsearch.data.corpus import fingerprint_examples

        self.cfg, self.train, self.queries, self.lm = cfg, list(corpus.examples), queries, lm
        self.n_queries = len(queries)
        self.train_labels = labels_of(self.train, cfg.label_field, what="corpus")
        self.query_labels = labels_of(queries, cfg.label_field, what="query")
        self.record = {
            "corpus": corpus.fingerprint,
            "queries": fingerprint_examples(queries),
            "label_field": cfg.label_field,
        }
        self.gold = (self.record, ("corpus", "queries", "label_field"), "classification labels")

    def method_options(self) -> dict[str, Any]:
        if self.lm is None and self.cfg.lm and any(needs_lm(m) for m in self.cfg.methods):
            from airsearch.lm import load_lm

            self.lm = load_lm(self.cfg.lm, device=self.cfg.device)
        return {"lm": self.lm}

    def answers(self, method: Method) -> Any:
        return topk(method, self.queries, self.cfg.k, block_size=self.cfg.block_size)[1]

    def score(self, method: Method, answers: Any, cost: Cost) -> ClassifyScore:
        ranked = [[self.train_labels[i] for i in row] for row in answers]
        acc = top_k_label_accuracy(ranked, self.query_labels, self.cfg.k)
        fields = {f.name: getattr(acc, f.name) for f in dataclasses.fields(acc)}
        return ClassifyScore(**fields, fingerprint=method.fingerprint(), cost=cost)

    def report(self, results: dict[str, ClassifyScore], **common: Any) -> EvalClassifyResult:
        labels, k = self.train_labels, self.cfg.k
        chance = max(labels.count(lbl) for lbl in set(labels)) / len(labels) if labels else float("nan")
        rows = [
            [m, fmt(r.top1, 1, 100), fmt(r.topk_any, 1, 100), fmt(r.topk_share, 1, 100)]
            for m, r in results.items()
        ]
        head = ["method", "top-1 acc (%)", f"top-{k} any (%)", f"top-{k} share (%)"]
        return EvalClassifyResult(
            command="eval classify",
            fingerprints=self.record,
            n_train=len(self.train),
            n_queries=self.n_queries,
            n_labels=len(set(labels)),
            majority_share=chance,
            table=markdown_table(head, rows),
            **common,
        )

    def plots(self, out: Path, results: dict[str, ClassifyScore]) -> dict[str, Path]:
        series = {
            "top-1": [r.top1 for r in results.values()],
            f"top-{self.cfg.k} any": [r.topk_any for r in results.values()],
        }
        title = f"data classification by '{self.cfg.label_field}'"
        plot = bar_plot(out / "classify.png", list(results), series, title=title, ylabel="accuracy")
        return {"plot": plot}
