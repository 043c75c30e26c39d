"""A finished white-box Daunce run, read back: its settings, recorded losses and saved adapters.

``airsearch.trainers.daunce.run_daunce`` trains the K perturbed LoRA models (methods.md §5, Daunce Eq. 5) as
runner jobs; this module only reads what they wrote (and declares Daunce's method plug-in, white-box
from a run or black-box fine-tunes), so the method registry
(:func:`airsearch.methods.registry.load_method`) can build a :class:`~airsearch.methods.daunce.Daunce`
from a run folder. Each job's result file (:mod:`airsearch.jobfiles`) holds the loss of every train
and test example under perturbed model k and its adapter weights, so a new query can be scored under
the same K models (:meth:`DaunceRun.method` with ``lm``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from airsearch.config import CommandConfig, require
from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.fingerprint import fingerprint_json
from airsearch.jobfiles import finished_job_ids, read_result
from airsearch.lm.model import TargetLM
from airsearch.methods.base import AttributionMethod
from airsearch.methods.daunce import Daunce, LocalLMLosses, RecordedLosses, ScoreKind
from airsearch.methods.options import DaunceOptions
from airsearch.methods.plugin import MethodModels, MethodPlugin

ADAPTER_PREFIX = "adapter."
MANIFEST = "daunce_manifest.json"
MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")


@dataclass(kw_only=True)
class DaunceConfig(CommandConfig):
    """Daunce white-box settings (paper LLM defaults: K 100, LoRA r 64 / alpha 16 / dropout 0.05 on the
    MLP projections, AdamW lr 3e-4, batch 64, 30 steps; smaller K, r and batch here for CPU)."""

    models: int = field(default=16, metadata={"help": "K, the number of perturbed models."})
    ratio: float = field(default=0.5, metadata={"help": "Share of the train examples each model sees."})
    rho: float = field(default=1.0, metadata={"help": "Perturbation strength rho of Eq. 5."})
    steps: int = field(default=30, metadata={"help": "Optimiser steps per perturbed model."})
    lr: float = field(default=3e-4, metadata={"help": "AdamW learning rate."})
    batch_size: int = field(default=16, metadata={"help": "Examples per step."})
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_targets: tuple[str, ...] = field(default=MLP_TARGETS, metadata={"help": "Modules with adapters."})
    max_length: int = field(default=512, metadata={"help": "Tokens per example."})
    seed: int = field(default=0, metadata={"help": "Seed of subsets, xi, LoRA init and batch order."})

    def validate(self) -> None:
        require(self.models >= 2, "models", "Daunce needs at least 2 perturbed models")
        require(0 < self.ratio <= 1, "ratio", "must be in (0, 1]")
        require(self.rho >= 0, "rho", "must be >= 0")
        require(self.steps >= 1, "steps", "must be at least 1")
        require(self.lr > 0, "lr", "must be positive")
        require(self.batch_size >= 1, "batch_size", "must be at least 1")
        require(self.lora_rank >= 1, "lora_rank", "must be at least 1")


def job_id(k: int) -> str:
    return f"daunce-{k:05d}"


@dataclass
class DaunceRun:
    """The recorded losses of a finished run: ``losses[k, e]`` for every example id in ``ids``."""

    out_dir: Path
    ids: list[str]
    n_train: int
    losses: np.ndarray  # [K, n_train + n_test]
    config: DaunceConfig
    lm: str

    @property
    def train_losses(self) -> np.ndarray:
        return self.losses[:, : self.n_train]

    @property
    def test_losses(self) -> np.ndarray:
        return self.losses[:, self.n_train :]

    def adapters(self, k: int) -> dict[str, torch.Tensor]:
        res = read_result(self.out_dir / "jobs", job_id(k))
        return {
            n[len(ADAPTER_PREFIX) :]: torch.from_numpy(v)
            for n, v in res.items()
            if n.startswith(ADAPTER_PREFIX)
        }

    def method(self, kind: ScoreKind = "corr", lm: TargetLM | None = None) -> Daunce:
        """A :class:`Daunce` method over the recorded losses (Eq. 6); with ``lm`` (the base model)
        examples that were not in the run (new queries) are scored live under the K saved adapters."""
        providers = []
        for k in range(self.losses.shape[0]):
            fallback = AdapterLosses(lm, self, k) if lm is not None else None
            providers.append(RecordedLosses(dict(zip(self.ids, self.losses[k], strict=True)), fallback))
        return Daunce(
            providers,
            kind=kind,
            model_fingerprint=fingerprint_json(json.loads((self.out_dir / MANIFEST).read_text())),
            extra={"models": self.losses.shape[0]},
        )


@dataclass
class AdapterLosses:
    """Losses under perturbed model k of a run: the base LM with that job's saved LoRA adapters."""

    lm: TargetLM
    run: DaunceRun
    k: int
    _provider: LocalLMLosses | None = None

    def losses(self, examples: Sequence[Example]) -> np.ndarray:
        if self._provider is None:
            from peft import LoraConfig, get_peft_model

            cfg = self.run.config
            tuned = self.lm.clone()
            lcfg = LoraConfig(
                r=cfg.lora_rank,
                lora_alpha=cfg.lora_alpha,
                lora_dropout=0.0,
                target_modules=list(cfg.lora_targets),
                bias="none",
            )
            tuned.model = get_peft_model(tuned.model, lcfg)
            tuned.model.load_state_dict(self.run.adapters(self.k), strict=False)
            tuned.model.eval()
            self._provider = LocalLMLosses(tuned)
        return self._provider.losses(examples)


def load_daunce(out_dir: str | Path, models: int | None = None) -> DaunceRun:
    """The finished models of a run (the first ``models`` of them, or all)."""
    out = Path(out_dir)
    if not (out / MANIFEST).is_file():
        raise InputError(f"not a Daunce run: {MANIFEST} is missing", path=out)
    manifest = json.loads((out / MANIFEST).read_text())
    done = sorted(finished_job_ids(out / "jobs"))
    ks = [int(j.split("-")[1]) for j in done if j.startswith("daunce-")]
    ks = [k for k in sorted(ks) if models is None or k < models]
    cfg = DaunceConfig.from_dict({**manifest["config"], "models": max(len(ks), 2)}, path=out / MANIFEST)
    rows, ids = [], None
    for k in ks:
        res = read_result(out / "jobs", job_id(k))
        ids = [str(i) for i in res["ids"]] if ids is None else ids
        rows.append(res["losses"])
    return DaunceRun(
        out,
        ids or [],
        int(manifest["n_train"]),
        np.stack(rows) if rows else np.zeros((0, 0)),
        cfg,
        manifest["model"],
    )


def build_daunce(options: DaunceOptions, models: MethodModels) -> AttributionMethod:
    """Daunce from the finished white-box run ``daunce_run`` (with an LM, queries outside the run are
    scored under its saved adapters), else ``daunce_models`` black-box fine-tunes of the LM fitted on
    the training rows (Daunce Table 2)."""
    if options.daunce_run:
        lm = models.target(options) if (models.lm is not None or options.lm) else None
        return load_daunce(options.daunce_run).method(options.daunce_kind, lm=lm)
    if models.train is None:
        raise InputError(
            "daunce needs a finished run (a folder made by airsearch.trainers.daunce.run_daunce)",
            field="daunce_run",
        )
    from airsearch.lm.finetune import FinetuneConfig
    from airsearch.methods.daunce import LocalFinetuneFactory, blackbox_providers

    target = models.target(options)
    ft = FinetuneConfig(
        epochs=options.daunce_epochs,
        lr=options.daunce_lr,
        batch_size=options.batch_size,
        max_length=options.max_length or target.max_length,  # the LM's own token budget, as every method
        seed=options.seed,
    )
    providers = blackbox_providers(
        LocalFinetuneFactory(target, ft),
        models.train,
        options.daunce_models,
        options.daunce_ratio,
        options.seed,
    )
    extra = {
        "mode": "black-box",
        "ratio": options.daunce_ratio,
        "epochs": options.daunce_epochs,
        "lr": options.daunce_lr,
        "batch_size": options.batch_size,
    }
    return Daunce(providers, kind=options.daunce_kind, model_fingerprint=target.fingerprint, extra=extra)


PLUGINS = (
    MethodPlugin(
        name="daunce",
        options=DaunceOptions,
        build=build_daunce,
        summary="Daunce: Pearson correlation (or covariance) of K perturbed models' loss profiles",
    ),
)
