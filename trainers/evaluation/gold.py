"""``eval gold``: the gold labels of ``eval lds``, under one of two protocols (docs/evaluation.md).

- ``paper`` (the AirRep paper's, scaled to a CPU): a seeded sample of ``warmup_size`` rows of the
  corpus is set aside and the target LM is fine-tuned on it (the *warm-up* model); gradient methods
  take their gradients on the warm-up model. The gold subsets are drawn from the other rows, and every
  gold fine-tune starts from the target LM itself (the base model th0), on subsets of at least 64
  examples for the paper's sizes (AirRep §5: 1,000 examples, 2 epochs).
- ``local``: every gold fine-tune starts from the model the gradients are taken on (the target LM),
  on small subsets: close to what TracIn's linearisation assumes, so it favours gradient methods.

Either way the labels are subset retraining (AirRep Eq. 8) by :func:`generate_labels`, into
``OUT/labels``, with each fine-tune's movement recorded (:mod:`airsearch.trainers.labels.movement`).
``OUT/gold.json`` records the protocol, the one ``max_length`` that every stage uses (labels, gold,
gradients, evaluation), where gold fine-tunes start and where gradients are taken (path and weights
fingerprint), the warm-up and how far the fine-tunes moved. :func:`open_gold` reads a gold folder, or
a bare label store as the ``local`` protocol.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

import numpy as np
from airsearch.trainers.labels.config import EXECUTION_FIELDS, LabelConfig
from airsearch.trainers.labels.generate import LabelSummary, generate_labels
from airsearch.trainers.labels.movement import Movement, movement_summary, parameter_distance
from airsearch.trainers.labels.store import LabelStore

from airsearch.atomic import write_json_atomic
from airsearch.config import require
from airsearch.data.corpus import Corpus, fingerprint_examples
from airsearch.data.example import Example
from airsearch.errors import FingerprintMismatch, InputError
from airsearch.lm.model import TargetLM
from airsearch.methods.registry import PRECONDITION_FIELDS
from airsearch.results import Result

GOLD_PROTOCOLS = ("paper", "local")
GOLD_RECORD = "gold.json"
GOLD_FORMAT = "airsearch-gold"
PAPER_MIN_SUBSET = 64  # the smallest gold subset this project calls paper-sized on a CPU


@dataclasses.dataclass(kw_only=True)
class GoldConfig(LabelConfig):
    """``eval gold``: subset-retraining gold labels (:class:`LabelConfig`'s sizes) under a protocol."""

    gold_protocol: str = field(
        default="paper",
        metadata={
            "help": "paper: gradients on a warm-up model, gold fine-tunes from the base model; local: "
            "gold fine-tunes from the model the gradients are taken on."
        },
    )
    warmup_size: int = field(
        default=400, metadata={"help": "paper: corpus rows set aside to fine-tune the warm-up model."}
    )
    warmup_epochs: int = field(default=2, metadata={"help": "paper: warm-up fine-tuning epochs."})
    warmup_lr: float = field(default=1e-3, metadata={"help": "paper: warm-up learning rate."})

    def validate(self) -> None:
        super().validate()
        require(self.gold_protocol in GOLD_PROTOCOLS, "gold_protocol", f"must be one of {GOLD_PROTOCOLS}")
        require(self.teacher == "retrain", "teacher", "gold labels come from subset retraining")
        require(self.warmup_size >= 1, "warmup_size", "must be at least 1")
        require(self.warmup_epochs >= 1, "warmup_epochs", "must be at least 1")
        require(self.warmup_lr > 0, "warmup_lr", "must be > 0")

    def label_config(self, out: Path) -> LabelConfig:
        """The label generator's config: this one's label fields, movement recorded, into ``out``."""
        names = {f.name for f in dataclasses.fields(LabelConfig)}
        return LabelConfig(
            **{**{k: v for k, v in self.to_dict().items() if k in names}, "out": str(out), "movement": True}
        )


@dataclasses.dataclass(frozen=True)
class GoldSummary(Result):
    """What :func:`make_gold` did (``--json``); ``record`` is ``gold.json``."""

    out: str
    protocol: str
    labels: LabelSummary
    record: dict[str, Any]


@dataclasses.dataclass
class Gold:
    """An opened gold: its label store and what ``eval lds`` must match (from ``gold.json``)."""

    root: Path
    store: LabelStore
    protocol: str
    max_length: int
    start_fingerprint: str | None  # the model gold fine-tunes start from
    gradient_fingerprint: str | None  # the model gradient methods must use
    gradient_lm: str | None  # its folder, when recorded
    start_lm: str | None
    corpus_fingerprints: tuple[str, ...]  # corpora ``eval lds`` accepts (the full one, the gold part)
    record: dict[str, Any] | None

    def check_corpus(self, corpus_fp: str) -> None:
        """Refuse a corpus the gold was not generated from."""
        if self.corpus_fingerprints and corpus_fp not in self.corpus_fingerprints:
            raise FingerprintMismatch(
                f"gold/corpus fingerprint mismatch: the gold labels were generated on corpus "
                f"{self.corpus_fingerprints[0]}, but the corpus given has fingerprint {corpus_fp}. Pass "
                "the corpus the gold was generated from.",
                path=self.root,
            )

    def check_max_length(
        self, requested: int | None, lm: TargetLM | None, stores: Sequence[LabelStore] = ()
    ) -> None:
        """One recorded ``max_length`` follows the LM through labels, gold, gradients and evaluation:
        refuse a requested value, an LM or an encoder's training labels that use another one. Labels
        made on another target LM (an encoder transferred across targets) keep their own LM's budget."""
        if requested is not None and requested != self.max_length:
            raise InputError(
                f"max_length {requested} differs from the gold's {self.max_length}: the gold fine-tunes "
                "and losses saw that many tokens, so gradients and evaluation must too",
                field="max_length",
            )
        if lm is not None and lm.max_length != self.max_length:
            raise InputError(
                f"the target LM was loaded with max_length {lm.max_length}, the gold with "
                f"{self.max_length}; load it with the gold's",
                field="max_length",
            )
        gold_model = self.store.manifest.get("model_fingerprint")
        for store in stores:
            if gold_model and store.manifest.get("model_fingerprint", gold_model) != gold_model:
                continue  # another LM's labels: their budget followed that LM, not this gold's
            used = int(store.config.get("max_length") or LabelConfig.max_length)
            if used != self.max_length:
                raise InputError(
                    f"the encoder's training labels used max_length {used}, the gold {self.max_length}; "
                    "generate both with one",
                    path=store.root,
                )

    def check_disjoint(self, training: LabelStore) -> None:
        """Refuse an encoder's training labels that share an example (id or text) with the gold."""
        gold_examples, training_examples = self.store.examples(), training.examples()
        shared = set(gold_examples) & set(training_examples)
        gold_text = {_text_key(e): i for i, e in gold_examples.items()}
        shared |= {gold_text[_text_key(e)] for e in training_examples.values() if _text_key(e) in gold_text}
        if shared:
            raise InputError(
                f"the encoder's training labels share {len(shared)} example(s) with the gold evaluation "
                f"data (e.g. {sorted(shared)[:3]}); LDS must be measured on data disjoint from AirRep's "
                "training data",
                path=training.root,
            )


def _text_key(e: Example) -> tuple[str, str]:
    return (e.prompt.strip(), e.response.strip())


def open_gold(path: str | Path) -> Gold:
    """A gold folder made by :func:`make_gold`, or a bare label store (read as the ``local`` protocol)."""
    root = Path(path)
    rec_path = root / GOLD_RECORD
    if not rec_path.is_file():
        store = LabelStore.open(root)
        fp = store.manifest.get("model_fingerprint")
        lm = store.config.get("lm")
        return Gold(
            root, store, "local", int(store.config.get("max_length") or LabelConfig.max_length),
            fp, fp, lm, lm, tuple(filter(None, [store.manifest.get("corpus_fingerprint")])), None,
        )  # fmt: skip
    try:
        rec = json.loads(rec_path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"cannot parse the gold record: {e}", path=rec_path) from None
    if rec.get("format") != GOLD_FORMAT or rec.get("status") != "complete":
        raise InputError("not a finished gold (rerun eval gold into this folder)", path=rec_path)
    store = LabelStore.open(root / rec["labels"])
    grad = rec["gradient_lm"]
    grad_path = grad["path"] if Path(grad["path"]).is_absolute() else str(root / grad["path"])
    corpora = (rec["corpus_fingerprint"], store.manifest.get("corpus_fingerprint"))
    return Gold(
        root, store, rec["protocol"], int(rec["max_length"]), rec["start_lm"]["fingerprint"],
        grad["fingerprint"], grad_path, rec["start_lm"]["path"], tuple(filter(None, corpora)), rec,
    )  # fmt: skip


# LabelConfig's gradient-teacher options: a gold always retrains, so they are not part of its identity
# (a gold recorded before they existed still resumes)
TEACHER_ONLY = frozenset({*PRECONDITION_FIELDS, "teacher_params"})


def _identity(cfg: GoldConfig) -> dict[str, Any]:
    return {k: v for k, v in cfg.to_dict().items() if k not in EXECUTION_FIELDS | TEACHER_ONLY}


def warmup_split(examples: list[Example], size: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(warm-up sample, the rest): ``size`` rows drawn by a seeded permutation of the ids (sorted, so
    it depends on the content, not the row order, like label sampling); both keep corpus order."""
    ids = sorted(e.id for e in examples)
    chosen = {ids[i] for i in np.random.default_rng([seed, 0x3A9]).permutation(len(ids))[:size]}
    return [e for e in examples if e.id in chosen], [e for e in examples if e.id not in chosen]


def _mean_loss(lm: TargetLM, rows: list[Example], cfg: GoldConfig) -> float:
    from airsearch.lm import example_losses

    losses = example_losses(
        lm, rows, batch_size=cfg.eval_batch_size, max_length=cfg.max_length, show_progress=False
    )
    return float(np.mean(losses))


def _warm_up(
    cfg: GoldConfig, base: TargetLM, warm: list[Example], held_out: list[Example], out: Path
) -> dict:
    """Fine-tune the warm-up model (reused when ``out`` exists) and measure how far it moved."""
    from airsearch.lm import load_lm, save_lm
    from airsearch.lm.finetune import FinetuneConfig, finetune

    t0 = time.perf_counter()
    ft = FinetuneConfig(
        epochs=cfg.warmup_epochs, lr=cfg.warmup_lr, batch_size=cfg.batch_size, max_length=cfg.max_length,
        seed=cfg.seed, lora_rank=cfg.lora_rank, lora_alpha=cfg.lora_alpha, merge_lora=True,
    )  # fmt: skip
    if (out / "config.json").is_file():
        tuned = load_lm(out, max_length=cfg.max_length, device=base.device)
    else:
        tuned = finetune(base, warm, ft, show_progress=False)
        save_lm(tuned, out)
    distance, norm = parameter_distance(base, tuned)
    probe = held_out[:200]
    return {
        "n": len(warm),
        "ids_fingerprint": fingerprint_examples(warm),
        "steps": math.ceil(len(warm) / cfg.batch_size) * cfg.warmup_epochs,
        "param_distance": distance,
        "relative_distance": distance / max(norm, 1e-12),
        "loss_before": _mean_loss(base, warm, cfg),
        "loss_after": _mean_loss(tuned, warm, cfg),
        "held_out_loss_before": _mean_loss(base, probe, cfg),
        "held_out_loss_after": _mean_loss(tuned, probe, cfg),
        "fingerprint": tuned.fingerprint,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def make_gold(cfg: GoldConfig, *, corpus: Corpus | None = None, quiet: bool | None = None) -> GoldSummary:
    """Make (or resume) the gold of ``eval lds`` in ``cfg.out`` under ``cfg.gold_protocol`` (module
    docstring); a rerun with other settings, corpus or model is refused."""
    from airsearch.lm import load_lm

    if corpus is None:
        if not cfg.corpus:
            raise InputError("no corpus given", field="corpus")
        from airsearch.data.corpus import load_corpus

        corpus = load_corpus(list(cfg.corpus), **cfg.read_options())
    out = Path(cfg.out)
    rec_path = out / GOLD_RECORD
    base = load_lm(cfg.lm, max_length=cfg.max_length)
    record: dict[str, Any] = {
        "format": GOLD_FORMAT,
        "format_version": 1,
        "status": "running",
        "protocol": cfg.gold_protocol,
        "config": _identity(cfg),
        "max_length": cfg.max_length,
        "corpus_fingerprint": corpus.fingerprint,
        "labels": "labels",
        "start_lm": {"path": base.source, "fingerprint": base.fingerprint},
    }
    if rec_path.is_file():
        old = json.loads(rec_path.read_text())
        keys = ("protocol", "config", "max_length", "corpus_fingerprint")
        diff = [k for k in keys if old.get(k) != record[k]]
        if diff or old.get("start_lm", {}).get("fingerprint") != base.fingerprint:
            raise FingerprintMismatch(
                f"this folder holds a gold made with other {diff or ['base model']}; use a new output folder",
                path=rec_path,
            )
    else:
        write_json_atomic(rec_path, record)
    t0 = time.perf_counter()
    examples = list(corpus.examples)
    warmup = None
    gradient = {"path": base.source, "fingerprint": base.fingerprint}
    if cfg.gold_protocol == "paper":
        needed = cfg.warmup_size + cfg.dev_size + cfg.pool_size
        if needed > len(examples):
            raise InputError(
                f"warmup_size + dev_size + pool_size = {needed} exceeds the corpus size {len(examples)}",
                field="warmup_size",
            )
        warm, rest = warmup_split(examples, cfg.warmup_size, cfg.seed)
        warmup = _warm_up(cfg, base, warm, rest, out / "warmup_lm")
        gradient = {"path": "warmup_lm", "fingerprint": warmup["fingerprint"]}
        examples = rest
    gold_corpus = Corpus(examples, fingerprint_examples(examples))
    labels = generate_labels(cfg.label_config(out / "labels"), corpus=gold_corpus, quiet=quiet)
    movement: Movement = movement_summary(
        LabelStore.open(out / "labels"), base, batch_size=cfg.eval_batch_size
    )
    steps = math.ceil(cfg.subset_size / cfg.batch_size) * cfg.epochs
    record.update(
        status="complete",
        gold_corpus_fingerprint=gold_corpus.fingerprint,
        gradient_lm=gradient,
        warmup=warmup,
        steps_per_finetune=steps,
        meets_paper_sizes=cfg.gold_protocol == "paper" and cfg.subset_size >= PAPER_MIN_SUBSET,
        movement=movement.to_dict(),
        seconds=round(time.perf_counter() - t0, 2),
    )
    write_json_atomic(rec_path, record)
    return GoldSummary(out=str(out), protocol=cfg.gold_protocol, labels=labels, record=record)
