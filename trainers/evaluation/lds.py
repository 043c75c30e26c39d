"""``eval lds``: the linear datamodeling score against gold subset-retraining labels (methods.md §6).

For every gold split, each method's group score of every subset (Eq. 7 attention pooling for
embedding methods, a sum for additive ones) is rank-correlated, per dev example, with the gold
labels ``-normalised loss`` over the subsets (AirRep §5). The mean over dev examples is reported
with a percentile-bootstrap 95% interval, plus the per-query distribution.

The gold is the :class:`~airsearch.trainers.labels.LabelStore` at ``cfg.gold``; :func:`eval_lds` opens
it, and the label stores the AirRep encoders under test were trained on (``cfg.encoder_labels``, else
what each encoder's info records), itself.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
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
    build_methods,
    cost_entry,
)
from airsearch.trainers.evaluation.methods import BUILTIN_METHODS, group_scores
from airsearch.trainers.evaluation.metrics import BootstrapCI, bootstrap_mean_ci
from airsearch.trainers.evaluation.report import bar_plot, distribution_plot, fmt, markdown_table
from airsearch.trainers.labels.store import LabelStore

from airsearch.config import require
from airsearch.data.corpus import Corpus
from airsearch.data.example import Example
from airsearch.errors import FingerprintMismatch, InputError
from airsearch.lm.model import TargetLM
from airsearch.metrics import lds_per_example
from airsearch.results import Result


@dataclasses.dataclass(kw_only=True)
class EvalLdsConfig(EvalConfig):
    """``eval lds``: ``--gold`` is a label store made by subset retraining on the evaluation corpus."""

    gold: str = field(
        metadata={"help": "Gold label store, made by subset retraining on the evaluation corpus."}
    )
    encoder_labels: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Label store(s) the encoder was trained on (default: read from the encoder's info)."
        },
    )
    bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples for the 95% interval."})
    max_splits: int = field(default=0, metadata={"help": "Use only the first N gold splits (0 = all)."})

    def validate(self) -> None:
        super().validate()
        require(self.bootstrap >= 10, "bootstrap", "must be at least 10")
        require(self.max_splits >= 0, "max_splits", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class LdsScore(Result):
    """One method's LDS: the mean over dev examples with its bootstrap interval, and each example's."""

    lds: BootstrapCI
    aggregation: str  # how subset scores were pooled: attention (Eq. 7) or sum
    fingerprint: str | None
    cost: Cost
    per_query: list[float]


@dataclasses.dataclass(frozen=True)
class GoldSplits(Result):
    """The gold splits used: their ids, subsets per split and the training examples they draw on."""

    splits: list[int]
    n_subsets: list[int]
    n_train: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalLdsResult(EvalResult[LdsScore]):
    """What :func:`eval_lds` returns (``--json``) and writes to ``lds.json``."""

    gold: GoldSplits


def encoder_training_store(encoder_dir: str | Path) -> str | None:
    """The label store an AirRep encoder was trained on, as its ``airsearch_encoder.json`` records."""
    info = Path(encoder_dir) / "airsearch_encoder.json"
    if not info.is_file():
        return None
    training = json.loads(info.read_text()).get("training") or {}
    cfg = ((training.get("labels") or {}).get("manifest") or {}).get("config") or {}
    return cfg.get("out") or None


def _text_key(e: Example) -> tuple[str, str]:
    return (e.prompt.strip(), e.response.strip())


def check_disjoint(
    gold_examples: dict[str, Example],
    training_examples: dict[str, Example],
    *,
    path: str | Path | None = None,
) -> None:
    """Refuse when the encoder's training labels share an example (id or text) with the gold."""
    shared = set(gold_examples) & set(training_examples)
    gold_text = {_text_key(e): i for i, e in gold_examples.items()}
    shared |= {gold_text[_text_key(e)] for e in training_examples.values() if _text_key(e) in gold_text}
    if shared:
        raise InputError(
            f"the encoder's training labels share {len(shared)} example(s) with the gold evaluation data "
            f"(e.g. {sorted(shared)[:3]}); LDS must be measured on data disjoint from AirRep's training data",
            path=path,
        )


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


def check_gold_corpus(manifest: dict[str, Any], corpus_fp: str, *, path: str | Path | None = None) -> None:
    gold_fp = manifest.get("corpus_fingerprint")
    if gold_fp and gold_fp != corpus_fp:
        raise FingerprintMismatch(
            f"gold/corpus fingerprint mismatch: the gold labels were generated on corpus {gold_fp}, but the "
            f"corpus given has fingerprint {corpus_fp}. Pass the corpus the gold was generated from.",
            path=path,
        )


def eval_lds(
    cfg: EvalLdsConfig, *, corpus: Corpus | None = None, lm: TargetLM | None = None
) -> EvalLdsResult:
    """LDS of every method against the gold label store ``cfg.gold``; writes ``lds.json``/``lds.md``/PNGs
    to ``cfg.out``.

    ``corpus`` defaults to reading ``cfg.corpus``; the label stores of the AirRep encoders under test
    (:func:`encoder_stores`) must be disjoint from the gold. ``lm`` is the target LM already loaded
    (else ``cfg.lm`` is loaded when a gradient method needs it).
    """
    if corpus is None:
        if not cfg.corpus:
            raise InputError("the evaluation corpus the gold was generated on is needed", field="corpus")
        from airsearch.data.corpus import load_corpus

        corpus = load_corpus(list(cfg.corpus))
    gold_store = LabelStore.open(cfg.gold)
    manifest = dict(gold_store.manifest)
    gold_path = gold_store.root
    check_gold_corpus(manifest, corpus.fingerprint, path=gold_path)
    if manifest.get("teacher", "retrain") != "retrain":
        raise InputError(
            f"gold labels must come from subset retraining, not {manifest.get('teacher')!r}", path=gold_path
        )
    gold_examples = gold_store.examples()
    for store in encoder_stores(cfg):
        check_disjoint(gold_examples, store.examples(), path=store.root)
    splits = gold_store.splits()
    if cfg.max_splits:
        splits = splits[: cfg.max_splits]
    if not splits:
        raise InputError("the gold store has no finished split", path=gold_path)
    by_id = {e.id: e for e in corpus.examples}
    train_ids = sorted({i for s in splits for m in s.members for i in m})
    missing = [i for i in train_ids if i not in by_id]
    if missing:
        raise InputError(
            f"{len(missing)} subset member(s) are not in the corpus (e.g. {missing[:3]})", path=gold_path
        )
    row = {i: r for r, i in enumerate(train_ids)}
    train = [by_id[i] for i in train_ids]

    if lm is None and cfg.lm and any(m.split(":")[0] not in BUILTIN_METHODS for m in cfg.methods):
        from airsearch.lm import load_lm

        lm = load_lm(cfg.lm, device=cfg.device)
    if lm is not None and manifest.get("model_fingerprint"):
        from airsearch.fingerprint import check_match

        check_match(
            "model",
            manifest["model_fingerprint"],
            lm.fingerprint,
            path=gold_path,
            hint="Gradient methods must use the target LM the gold labels were generated with.",
        )

    out = Path(cfg.out) if cfg.out else None
    results: dict[str, LdsScore] = {}
    for label, method in build_methods(cfg, lm=lm, workdir=out / "work" if out else None):
        method.prepare(train)
        agg = aggregation_for(cfg, method)
        per: list[np.ndarray] = []
        n_queries = 0
        with Timer() as t:
            for s in splits:
                dev = [gold_examples[i] for i in s.dev_ids]
                members = [[row[i] for i in m] for m in s.members]
                pred = group_scores(method, dev, members, agg, block_size=cfg.block_size)
                per.append(lds_per_example(pred, s.targets()))
                n_queries += len(dev)
        values = np.concatenate(per)
        results[label] = LdsScore(
            lds=bootstrap_mean_ci(values, n_resamples=cfg.bootstrap, seed=cfg.seed),
            aggregation=agg,
            fingerprint=method.fingerprint(),
            cost=cost_entry(method, t.seconds, n_queries),
            per_query=values.tolist(),
        )

    rows = [
        [
            m,
            fmt(r.lds.mean, 2, 100),
            f"[{fmt(r.lds.low, 2, 100)}, {fmt(r.lds.high, 2, 100)}]",
            r.lds.n,
            r.aggregation,
        ]
        for m, r in results.items()
    ]
    result = EvalLdsResult(
        command="eval lds",
        config=cfg.to_dict(),
        fingerprints={
            "corpus": corpus.fingerprint,
            "gold_corpus": manifest.get("corpus_fingerprint"),
            "gold_model": manifest.get("model_fingerprint"),
            "lm": lm.fingerprint if lm else None,
        },
        gold=GoldSplits(
            splits=[s.split for s in splits], n_subsets=[len(s.members) for s in splits], n_train=len(train)
        ),
        methods=results,
        table=markdown_table(["method", "LDS (x100)", "95% CI", "dev examples", "aggregation"], rows),
    )
    return result.written(out, "lds", lambda d: _plots(d, results))


def _plots(out: Path, results: dict[str, LdsScore]) -> dict[str, Path]:
    names = list(results)
    bars = bar_plot(
        out / "lds.png",
        names,
        {"LDS": [results[n].lds.mean for n in names]},
        errors={"LDS": [(results[n].lds.low, results[n].lds.high) for n in names]},
        title="LDS (mean, 95% bootstrap CI)",
        ylabel="Spearman",
    )
    per_query = {n: r.per_query for n, r in results.items()}
    dist = distribution_plot(
        out / "lds_per_query.png", per_query, title="LDS per dev example", ylabel="Spearman"
    )
    return {"bars": bars, "distribution": dist}
