"""``eval lds``: the linear datamodeling score against gold subset-retraining labels (equations.md §6).

For every gold split, each method's group score of every subset (Eq. 7 attention pooling for
embedding methods, a sum for additive ones) is rank-correlated, per dev example, with the gold
labels ``-normalised loss`` over the subsets (AirRep §5). The mean over dev examples is reported
with a 95% interval from a cluster bootstrap that resamples the dev examples' tasks and gold splits,
crossed (dev examples of one task or split are not independent); the example-level interval, every
AirRep-minus-method paired difference and the per-query distribution are kept beside it.

The gold is a folder made by ``eval gold`` (:mod:`~airsearch.trainers.evaluation.gold`, either
protocol) or a bare :class:`~airsearch.trainers.labels.LabelStore` (the ``local`` protocol); its one
recorded ``max_length`` is the LM's token budget here, and an LM, config or encoder training store
with another one is refused. :func:`eval_lds` opens the gold, and the label stores the AirRep encoders
under test were trained on (``cfg.encoder_labels``, else what each encoder's info records), itself.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

import numpy as np
from airsearch.trainers.evaluation.common import (
    Cost,
    EvalConfig,
    EvalResult,
    Timer,
    aggregation_for,
    cost_entry,
)
from airsearch.trainers.evaluation.gold import Gold, open_gold
from airsearch.trainers.evaluation.methods import Method, group_scores
from airsearch.trainers.evaluation.metrics import (
    BootstrapCI,
    PairedDifference,
    bootstrap_mean_ci,
    clustered_mean_ci,
    paired_difference,
)
from airsearch.trainers.evaluation.report import bar_plot, distribution_plot, fmt, markdown_table
from airsearch.trainers.evaluation.run import EvalTask, run_eval
from airsearch.trainers.evaluation.specs import needs_lm
from airsearch.trainers.labels.store import LabelStore

from airsearch.config import require
from airsearch.data.corpus import Corpus
from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.lm.model import TargetLM
from airsearch.metrics import lds_per_example
from airsearch.results import Result


@dataclasses.dataclass(kw_only=True)
class EvalLdsConfig(EvalConfig):
    """``eval lds``: ``--gold`` is a gold folder made by ``eval gold`` (either protocol), or a label
    store made by subset retraining on the evaluation corpus (read as the ``local`` protocol)."""

    gold: str = field(
        metadata={"help": "Gold folder (eval gold) or label store, made by subset retraining on the corpus."}
    )
    encoder_labels: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Label store(s) the encoder was trained on (default: read from the encoder's info)."
        },
    )
    bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples for the 95% interval."})
    max_splits: int = field(default=0, metadata={"help": "Use only the first N gold splits (0 = all)."})
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "Tokens per example for the LM; default: the gold's (a different value is refused)."
        },
    )
    cluster_field: str = field(
        default="task",
        metadata={"help": "Metadata field of the dev examples' cluster (crossed with the gold split)."},
    )
    proxy_lm: str | None = field(
        default=None,
        metadata={
            "help": "Gradient methods take their gradients on this LM instead of the gold's gradient model "
            "(a smaller proxy of the target; rows named 'proxy:...', its fingerprint recorded, not checked)."
        },
    )

    def validate(self) -> None:
        super().validate()
        require(self.bootstrap >= 10, "bootstrap", "must be at least 10")
        require(self.max_splits >= 0, "max_splits", "must be >= 0")
        require(self.max_length is None or self.max_length >= 2, "max_length", "must be at least 2")
        require(not (self.proxy_lm and self.lm), "proxy_lm", "give either lm or proxy_lm, not both")


@dataclasses.dataclass(frozen=True)
class LdsScore(Result):
    """One method's LDS: the mean over dev examples with its cluster-bootstrap interval (``lds``, the one
    tables show) and its example-level one (``lds_examples``), and each example's value."""

    lds: BootstrapCI
    lds_examples: BootstrapCI
    aggregation: str  # how subset scores were pooled: attention (Eq. 7) or sum
    fingerprint: str | None
    cost: Cost
    per_query: list[float]


@dataclasses.dataclass(frozen=True)
class GoldSplits(Result):
    """The gold used: its protocol and token budget, the splits, subsets per split and training rows."""

    protocol: str
    max_length: int
    splits: list[int]
    n_subsets: list[int]
    n_train: int


@dataclasses.dataclass(frozen=True)
class DevClusters(Result):
    """How the dev examples are clustered for the bootstrap: the ways resampled (those with two
    clusters or more, crossed), their cluster counts, and each dev example's ``[task, split]``."""

    ways: list[str]
    n_clusters: dict[str, int]
    per_query: list[list[str]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalLdsResult(EvalResult[LdsScore]):
    """What :func:`eval_lds` returns (``--json``) and writes to ``lds.json``; ``paired`` holds every
    AirRep encoder minus every other method, paired by dev example."""

    gold: GoldSplits
    clusters: DevClusters
    paired: dict[str, PairedDifference]


def encoder_training_store(encoder_dir: str | Path) -> str | None:
    """The label store an AirRep encoder was trained on, as its ``airsearch_encoder.json`` records."""
    info = Path(encoder_dir) / "airsearch_encoder.json"
    if not info.is_file():
        return None
    training = json.loads(info.read_text()).get("training") or {}
    cfg = ((training.get("labels") or {}).get("manifest") or {}).get("config") or {}
    return cfg.get("out") or None


def encoder_stores(cfg: EvalLdsConfig) -> list[LabelStore]:
    """The label stores the AirRep encoders under test were trained on: ``cfg.encoder_labels``, else
    what each ``airrep`` encoder's info records (a recorded store that is not here is warned about)."""
    paths = list(cfg.encoder_labels)
    if not paths:
        folders = [s.partition(":")[2] or cfg.encoder for s in cfg.methods if s.split(":")[0] == "airrep"]
        for folder in filter(None, folders):
            recorded = encoder_training_store(folder)
            if recorded and Path(recorded).is_dir():
                paths.append(recorded)
            elif recorded:
                warnings.warn(
                    f"the label store {folder} was trained on ({recorded}) is not here; "
                    "give it as encoder_labels to check it is disjoint from the gold",
                    UserWarning,
                    stacklevel=3,
                )
    return [LabelStore.open(p) for p in paths]


def _models(cfg: EvalLdsConfig, gold: Gold, lm: TargetLM | None) -> tuple[TargetLM | None, TargetLM | None]:
    """The LM gradient methods use (``cfg.lm``, else the gold's record) and DDA's base model th0 (where
    the gold fine-tunes start), each checked against the gold's fingerprints."""
    from airsearch.fingerprint import check_match
    from airsearch.lm import load_lm

    specs = [m.split(":")[0] for m in cfg.methods]
    if cfg.proxy_lm:  # a stand-in for the target: nothing to check against the gold, no DDA base model
        needed = lm is None and any(needs_lm(m) for m in specs)
        return (load_lm(cfg.proxy_lm, device=cfg.device, max_length=gold.max_length) if needed else lm), None
    path = cfg.lm or gold.gradient_lm
    if lm is None and path and any(needs_lm(m) for m in specs):
        lm = load_lm(path, device=cfg.device, max_length=gold.max_length)
    if lm is None:
        return None, None
    where = "the warm-up model" if gold.protocol == "paper" else "the model the gold fine-tunes start from"
    check_match(
        "model", gold.gradient_fingerprint, lm.fingerprint, path=gold.root,
        hint=f"Under the {gold.protocol} gold protocol gradient methods use {where}.",
    )  # fmt: skip
    if "dda" not in specs:
        return lm, None
    if lm.fingerprint == gold.start_fingerprint:
        return lm, lm  # local protocol: th0 is the model itself, so DDA's debias term cancels its score
    if not gold.start_lm:
        return lm, None
    base = load_lm(gold.start_lm, device=cfg.device, max_length=gold.max_length)
    check_match("model", gold.start_fingerprint, base.fingerprint, path=gold.root, hint="DDA's base model.")
    return lm, base


def dev_clusters(gold_examples: dict[str, Example], splits: list[Any], field_name: str) -> DevClusters:
    """Each dev value's ``[cluster_field value, split]``; a way is resampled when it has 2+ clusters."""
    keys = [
        [str(gold_examples[i].metadata.get(field_name, "")), str(s.split)] for s in splits for i in s.dev_ids
    ]
    ways, counts = [], {}
    for w, name in enumerate((field_name, "split")):
        values = {k[w] for k in keys}
        counts[name] = len(values)
        if len(values) >= 2 and "" not in values:
            ways.append(name)
    return DevClusters(ways=ways, n_clusters=counts, per_query=keys)


def cluster_keys(clusters: DevClusters, field_name: str) -> np.ndarray:
    """``[n_dev, ways]`` cluster keys of the resampled ways (what :func:`clustered_mean_ci` takes)."""
    cols = [0 if w == field_name else 1 for w in clusters.ways]
    return np.asarray(clusters.per_query, dtype=object)[:, cols] if cols else np.zeros((0, 0))


def lds_values(
    method: Method,
    splits: Sequence[Any],
    gold_examples: dict[str, Example],
    row: dict[str, int],
    *,
    aggregation: str,
    block_size: int = 4096,
) -> np.ndarray:
    """Each dev example's LDS for one prepared method (AirRep §5; equations.md §6): per gold split, the
    group score of every subset (``row`` maps a train id to the method's training row) rank-correlated
    with the gold targets."""
    per: list[np.ndarray] = []
    for s in splits:
        dev = [gold_examples[i] for i in s.dev_ids]
        members = [[row[i] for i in m] for m in s.members]
        pred = group_scores(method, dev, members, aggregation, block_size=block_size)
        per.append(lds_per_example(pred, s.targets()))
    return np.concatenate(per)


def lds_score(
    method: Method, values: np.ndarray, keys: np.ndarray, cost: Cost, *, aggregation: str, n_resamples: int,
    seed: int,
) -> LdsScore:  # fmt: skip
    """One method's :class:`LdsScore` from its per-example ``values``: the mean with the cluster-bootstrap
    interval over ``keys`` (:func:`cluster_keys`) and the example-level one."""
    return LdsScore(
        lds=clustered_mean_ci(values, keys, n_resamples=n_resamples, seed=seed),
        lds_examples=bootstrap_mean_ci(values, n_resamples=n_resamples, seed=seed),
        aggregation=aggregation,
        fingerprint=method.fingerprint(),
        cost=cost,
        per_query=values.tolist(),
    )


def method_lds(
    method: Method,
    splits: Sequence[Any],
    gold_examples: dict[str, Example],
    row: dict[str, int],
    keys: np.ndarray,
    *,
    aggregation: str,
    block_size: int = 4096,
    n_resamples: int = 1000,
    seed: int = 0,
) -> LdsScore:
    """The LDS of one prepared method on the gold ``splits``: :func:`lds_values`, timed, then
    :func:`lds_score`."""
    with Timer() as t:
        values = lds_values(
            method, splits, gold_examples, row, aggregation=aggregation, block_size=block_size
        )
    cost = cost_entry(method, t.seconds, len(values))
    return lds_score(method, values, keys, cost, aggregation=aggregation, n_resamples=n_resamples, seed=seed)


def eval_lds(
    cfg: EvalLdsConfig, *, corpus: Corpus | None = None, lm: TargetLM | None = None
) -> EvalLdsResult:
    """LDS of every method against the gold ``cfg.gold``; writes ``lds.json``/``lds.md``/PNGs to ``cfg.out``.

    ``corpus`` defaults to reading ``cfg.corpus``; the label stores of the AirRep encoders under test
    (:func:`encoder_stores`) must be disjoint from the gold and use its ``max_length``. ``lm`` is the
    target LM already loaded (else ``cfg.lm``, or the gold's recorded gradient model, is loaded when a
    method needs it, with the gold's ``max_length``). Intervals resample the dev examples' tasks and
    gold splits, crossed (:func:`cluster_bootstrap_mean_ci`); JSON keeps the example-level one too.
    """
    if corpus is None:
        if not cfg.corpus:
            raise InputError("the evaluation corpus the gold was generated on is needed", field="corpus")
        from airsearch.data.corpus import load_corpus

        corpus = load_corpus(list(cfg.corpus), **cfg.read_options())
    return run_eval(cfg, _LdsTask(cfg, corpus, lm))


class _LdsTask(EvalTask[LdsScore, EvalLdsResult]):
    """``eval lds`` for :func:`run_eval`: the gold (opened and checked here, not by a gold record), the
    training rows its subsets draw on, and each method's LDS over the gold splits."""

    name = "lds"

    def __init__(self, cfg: EvalLdsConfig, corpus: Corpus, lm: TargetLM | None) -> None:
        self.cfg, self.corpus = cfg, corpus
        self.gold_labels = gold = open_gold(cfg.gold)
        self.manifest = manifest = dict(gold.store.manifest)
        gold.check_corpus(corpus.fingerprint)
        if manifest.get("teacher", "retrain") != "retrain":
            raise InputError(
                f"gold labels must come from subset retraining, not {manifest.get('teacher')!r}",
                path=gold.root,
            )
        self.gold_examples = gold.store.examples()
        stores = encoder_stores(cfg)
        for store in stores:
            gold.check_disjoint(store)
        gold.check_max_length(cfg.max_length, lm, stores)
        self.splits = splits = gold.store.splits()[: cfg.max_splits or None]
        if not splits:
            raise InputError("the gold store has no finished split", path=gold.root)
        by_id = {e.id: e for e in corpus.examples}
        train_ids = sorted({i for s in splits for m in s.members for i in m})
        missing = [i for i in train_ids if i not in by_id]
        if missing:
            raise InputError(
                f"{len(missing)} subset member(s) are not in the corpus (e.g. {missing[:3]})", path=gold.root
            )
        self.row = {i: r for r, i in enumerate(train_ids)}
        self.train = [by_id[i] for i in train_ids]
        self.n_queries = sum(len(s.dev_ids) for s in splits)
        self.lm, self.base_lm = _models(cfg, gold, lm)
        self.clusters = dev_clusters(self.gold_examples, splits, cfg.cluster_field)
        self.keys = cluster_keys(self.clusters, cfg.cluster_field)

    def method_options(self) -> dict[str, Any]:
        return {"lm": self.lm, "base_lm": self.base_lm}

    def row_name(self, label: str, method: Method) -> str | None:
        if self.cfg.proxy_lm and method.needs_lm:
            label = method.name = f"proxy:{label}"
        return label

    def answers(self, method: Method) -> np.ndarray:
        agg, bs = aggregation_for(self.cfg, method), self.cfg.block_size
        return lds_values(method, self.splits, self.gold_examples, self.row, aggregation=agg, block_size=bs)

    def score(self, method: Method, answers: np.ndarray, cost: Cost) -> LdsScore:
        agg, cfg = aggregation_for(self.cfg, method), self.cfg
        return lds_score(
            method, answers, self.keys, cost, aggregation=agg, n_resamples=cfg.bootstrap, seed=cfg.seed
        )

    def report(self, results: dict[str, LdsScore], **common: Any) -> EvalLdsResult:
        cfg, lm, clusters, manifest = self.cfg, self.lm, self.clusters, self.manifest
        pq, n = {m: r.per_query for m, r in results.items()}, cfg.bootstrap
        paired = {
            f"{a} - {b}": paired_difference(a, b, pq[a], pq[b], self.keys, n_resamples=n, seed=cfg.seed)
            for a in results
            if a.startswith("airrep")
            for b in results
            if not b.startswith("airrep")
        }
        by = " x ".join(f"{w} ({clusters.n_clusters[w]})" for w in clusters.ways) or "examples"
        ci = {m: f"[{fmt(r.lds.low, 2, 100)}, {fmt(r.lds.high, 2, 100)}]" for m, r in results.items()}
        rows = [[m, fmt(r.lds.mean, 2, 100), ci[m], r.lds.n, r.aggregation] for m, r in results.items()]
        head = ["method", "LDS (x100)", f"95% CI, resampling {by}", "dev examples", "aggregation"]
        return EvalLdsResult(
            command="eval lds",
            fingerprints={
                "corpus": self.corpus.fingerprint,
                "gold_corpus": manifest.get("corpus_fingerprint"),
                "gold_model": manifest.get("model_fingerprint"),
                "gradient_model": self.gold_labels.gradient_fingerprint,
                "lm": lm.fingerprint if lm else None,
                "proxy_lm": lm.fingerprint if lm and cfg.proxy_lm else None,
            },
            gold=GoldSplits(
                protocol=self.gold_labels.protocol,
                max_length=self.gold_labels.max_length,
                splits=[s.split for s in self.splits],
                n_subsets=[len(s.members) for s in self.splits],
                n_train=len(self.train),
            ),
            clusters=clusters,
            paired=paired,
            table=markdown_table(head, rows),
            **common,
        )

    def plots(self, out: Path, results: dict[str, LdsScore]) -> dict[str, Path]:
        return lds_plots(out, results)


def lds_plots(out: Path, results: dict[str, LdsScore]) -> dict[str, Path]:
    """``lds.png`` (mean and interval per method) and ``lds_per_query.png`` (the distributions)."""
    names = list(results)
    bars = bar_plot(
        out / "lds.png",
        names,
        {"LDS": [results[n].lds.mean for n in names]},
        errors={"LDS": [(results[n].lds.low, results[n].lds.high) for n in names]},
        title="LDS (mean, 95% cluster-bootstrap CI)",
        ylabel="Spearman",
    )
    per_query = {n: r.per_query for n, r in results.items()}
    dist = distribution_plot(
        out / "lds_per_query.png", per_query, title="LDS per dev example", ylabel="Spearman"
    )
    return {"bars": bars, "distribution": dist}
