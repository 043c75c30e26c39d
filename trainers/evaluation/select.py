"""``eval select``: data selection (AirRep §6, App. G).

Each method ranks all training examples for every dev (test) example; a training example's score is
its best rank over the dev set, and the N best are selected, by the product's own selection code
(:mod:`airsearch.indexers.select`, the tie rule of ``airsearch select``). The target LM is fine-tuned
on each method's N examples and on N random ones (seeded), and compared by the mean dev loss and,
where the reference answers are short, by the unigram F1 of greedy generations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

import numpy as np
from airsearch.indexers.select import best_rank_selection
from airsearch.trainers.evaluation.common import Cost, EvalConfig, EvalResult, corpus_from, queries_from
from airsearch.trainers.evaluation.lmtools import greedy_generate, unigram_f1
from airsearch.trainers.evaluation.methods import Method
from airsearch.trainers.evaluation.report import bar_plot, fmt, markdown_table
from airsearch.trainers.evaluation.run import EvalTask, run_eval

from airsearch.config import require
from airsearch.data.corpus import Corpus
from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.lm.model import TargetLM
from airsearch.results import Result, omitted_when_none


@dataclasses.dataclass(kw_only=True)
class EvalSelectConfig(EvalConfig):
    """``eval select``: ``--gold`` is a gold record (``select_gold.json``) from an earlier run."""

    queries: list[str] = field(default_factory=list, metadata={"help": "Dev (test) file(s) with references."})
    n_select: int = field(default=100, metadata={"help": "Examples selected per method (N)."})
    epochs: int = field(default=2, metadata={"help": "Fine-tuning epochs on the selection."})
    lr: float = field(default=1e-3, metadata={"help": "Fine-tuning learning rate."})
    batch_size: int = field(default=8, metadata={"help": "Fine-tuning batch size."})
    max_length: int = field(default=256, metadata={"help": "Tokens per example."})
    f1_max_words: int = field(
        default=10, metadata={"help": "Report unigram F1 when mean answers have <= this many words."}
    )
    max_new_tokens: int = field(default=24, metadata={"help": "Greedy generation length for F1."})

    def validate(self) -> None:
        super().validate()
        for name in ("n_select", "epochs", "batch_size", "max_length", "max_new_tokens"):
            require(getattr(self, name) >= 1, name, "must be at least 1")


@dataclasses.dataclass(frozen=True)
class SelectionScore(Result):
    """Dev loss (and unigram F1) after fine-tuning on one selection; a method's entry also names the
    examples it selected."""

    dev_loss: float
    f1: float | None = omitted_when_none()
    selected_ids: list[str] | None = omitted_when_none()
    fingerprint: str | None = omitted_when_none()
    cost: Cost | None = omitted_when_none()


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalSelectResult(EvalResult[SelectionScore]):
    """What :func:`eval_select` returns (``--json``) and writes to ``select.json``."""

    n_train: int
    n_dev: int
    f1_reported: bool


def select_by_best_rank(method: Method, dev: list[Example], n: int, block_size: int = 4096) -> list[int]:
    """AirRep App. G with ``method``'s scores: the training rows (corpus positions) that
    :func:`airsearch.indexers.select.best_rank_selection`, the product's selection, picks.

    The same code as ``airsearch select``, so the same tie rule (competition ranks, then the higher
    score at the best rank, then corpus order); for ``airrep``/``base`` the scores come from the same
    exact search too (:meth:`Method.topk` of an encoder method), so these are the rows ``airsearch select`` writes
    from an index of the corpus built with the same encoder.
    """

    def top_lists(k: int) -> tuple[np.ndarray, np.ndarray]:
        return method.topk(dev, k, block_size=block_size)

    # a top-n list per dev example usually certifies all n rows in one pass (one scoring of the dev set)
    sel = best_rank_selection(top_lists, len(dev), method.n_train, n, initial_k=n)
    return [int(i) for i in sel.row_ids]


def _downstream(
    cfg: EvalSelectConfig, lm: TargetLM, chosen: list[Example], dev: list[Example], f1: bool
) -> SelectionScore:
    from airsearch.lm import example_losses
    from airsearch.lm.finetune import FinetuneConfig, finetune

    ft = FinetuneConfig(
        epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed
    )
    tuned = finetune(lm, chosen, ft, show_progress=False)
    dev_loss = float(np.mean(example_losses(tuned, dev, show_progress=False)))
    if not f1:
        return SelectionScore(dev_loss=dev_loss)
    gens = greedy_generate(tuned, dev, max_new_tokens=cfg.max_new_tokens)
    f1_mean = float(np.mean([unigram_f1(g, d.response) for g, d in zip(gens, dev, strict=True)]))
    return SelectionScore(dev_loss=dev_loss, f1=f1_mean)


def eval_select(
    cfg: EvalSelectConfig,
    *,
    corpus: Corpus | None = None,
    queries: Corpus | Sequence[Example] | None = None,
    lm: TargetLM | None = None,
) -> EvalSelectResult:
    """Selection quality per method vs random; writes ``select.json``/``.md``/``.png`` to ``cfg.out``.

    ``corpus`` / ``queries`` / ``lm`` already in memory replace reading ``cfg.corpus`` / ``cfg.queries``
    / ``cfg.lm``."""
    from airsearch.lm import load_lm

    corpus = corpus_from(cfg, corpus)
    queries_list = queries_from(cfg.queries, queries, what="a dev file with reference responses")
    dev = [e for e in queries_list if e.response]
    if not dev:
        raise InputError("the dev examples need reference responses", field="queries")
    if lm is None:
        if not cfg.lm:
            raise InputError("a target LM folder is needed", field="lm")
        lm = load_lm(cfg.lm, device=cfg.device, max_length=cfg.max_length)
    return run_eval(cfg, _SelectTask(cfg, corpus, dev, lm))


class _SelectTask(EvalTask[SelectionScore, EvalSelectResult]):
    """``eval select`` for :func:`run_eval`: fine-tune on each method's best-rank selection; the base
    LM and a random selection come first."""

    name = "select"

    def __init__(self, cfg: EvalSelectConfig, corpus: Corpus, dev: list[Example], lm: TargetLM) -> None:
        from airsearch.data.corpus import fingerprint_examples

        self.cfg, self.train, self.dev, self.lm = cfg, list(corpus.examples), dev, lm
        self.n_queries = len(dev)
        if cfg.n_select > len(self.train):
            raise InputError(f"cannot select {cfg.n_select} of {len(self.train)} examples", field="n_select")
        self.record = {"corpus": corpus.fingerprint, "dev": fingerprint_examples(dev), "lm": lm.fingerprint}
        self.gold = (self.record, ("corpus", "dev", "lm"), "selection dev set")
        self.f1 = float(np.mean([len(d.response.split()) for d in dev])) <= cfg.f1_max_words

    def start(self) -> dict[str, SelectionScore]:
        from airsearch.lm import example_losses

        base_loss = float(np.mean(example_losses(self.lm, self.dev, show_progress=False)))
        rng = np.random.default_rng(self.cfg.seed)
        rand_idx = sorted(rng.choice(len(self.train), size=self.cfg.n_select, replace=False).tolist())
        return {
            "base LM (no fine-tuning)": SelectionScore(dev_loss=base_loss),
            f"random {self.cfg.n_select}": self.downstream(rand_idx),
        }

    def downstream(self, rows: list[int]) -> SelectionScore:
        return _downstream(self.cfg, self.lm, [self.train[i] for i in rows], self.dev, self.f1)

    def method_options(self) -> dict[str, Any]:
        return {"lm": self.lm}

    def row_name(self, label: str, method: Method) -> str | None:
        return None if label == "random" else label  # the random selection is already a row

    def answers(self, method: Method) -> Any:
        return select_by_best_rank(method, self.dev, self.cfg.n_select, self.cfg.block_size)

    def score(self, method: Method, answers: Any, cost: Cost) -> SelectionScore:
        ids = [self.train[i].id for i in answers]
        fp = method.fingerprint()
        return dataclasses.replace(self.downstream(answers), selected_ids=ids, fingerprint=fp, cost=cost)

    def report(self, results: dict[str, SelectionScore], **common: Any) -> EvalSelectResult:
        f1 = self.f1
        headers = ["selection", "dev loss"] + (["unigram F1 (%)"] if f1 else [])
        rows = [
            [m, fmt(r.dev_loss, 3)] + ([fmt(float("nan") if r.f1 is None else r.f1, 1, 100)] if f1 else [])
            for m, r in results.items()
        ]
        return EvalSelectResult(
            command="eval select",
            fingerprints=self.record,
            n_train=len(self.train),
            n_dev=len(self.dev),
            f1_reported=f1,
            table=markdown_table(headers, rows),
            **common,
        )

    def plots(self, out: Path, results: dict[str, SelectionScore]) -> dict[str, Path]:
        series = {"dev loss": [r.dev_loss for r in results.values()]}
        title = f"fine-tuning on {self.cfg.n_select} selected examples"
        plot = bar_plot(out / "select.png", list(results), series, title=title, ylabel="mean dev loss")
        return {"plot": plot}
