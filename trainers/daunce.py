"""Daunce's K perturbed fine-tunes as independent, resumable runner jobs (methods.md §4).

Each job k: fresh LoRA adapters (B = 0, so training starts exactly at th0) on a copy of the target
LM, a seeded random subset of ratio r of the train examples, ``xi ~ U(0, 1)`` per example (seeded by
example id), a short training run on the Eq. 5 objective
(:func:`airsearch.methods.daunce.perturbed_objective`), then every train and test example's loss under
the result. The result file holds those losses, the subset and the adapter weights (small), so a
later query can be scored under the same K models (:meth:`DaunceRun.method` with ``lm``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from airsearch.trainers.runner import Job, finished_job_ids, read_result, run_jobs

from airsearch.atomic import write_json_atomic
from airsearch.config import CommandConfig, require
from airsearch.data.example import Example
from airsearch.errors import FingerprintMismatch, InputError
from airsearch.fingerprint import fingerprint_json
from airsearch.methods.daunce import (
    Daunce,
    LocalLMLosses,
    RecordedLosses,
    example_xi,
    perturbed_objective,
    subset_indices,
)

ADAPTER_PREFIX = "adapter."
MANIFEST = "daunce_manifest.json"
MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")


@dataclass
class DaunceConfig(CommandConfig):
    """Daunce white-box settings (paper LLM defaults: K 100, LoRA r 64 / alpha 16 / dropout 0.05 on the
    MLP projections, AdamW lr 3e-4, batch 64, 30 steps; smaller K, r and batch here for CPU)."""

    models: int = field(default=16, metadata={"help": "K, the number of perturbed models."})
    ratio: float = field(default=0.5, metadata={"help": "Share of the train examples each model sees."})
    rho: float = field(default=1.0, metadata={"help": "Perturbation strength rho of Eq. 5."})
    steps: int = field(default=30, metadata={"help": "Optimiser steps per perturbed model."})
    lr: float = field(default=3e-4, metadata={"help": "AdamW learning rate."})
    batch_size: int = field(default=16, metadata={"help": "Examples per step."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
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
        require(self.lora_r >= 1, "lora_r", "must be at least 1")


def train_perturbed(
    lm: Any, subset: Sequence[Example], xi: np.ndarray, cfg: DaunceConfig, model_index: int
) -> Any:
    """One perturbed model: LoRA from th0 trained ``cfg.steps`` steps on Eq. 5; returns a TargetLM."""
    from peft import LoraConfig, get_peft_model

    from airsearch.lm import encode_examples

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed * 100_003 + model_index)
        out = lm.clone()
        out._fingerprint = None
        for m in out.model.modules():  # base-model dropout off; the LoRA dropout below stays on
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        targets = [t for t in cfg.lora_targets if any(n.endswith(t) for n, _ in out.model.named_modules())]
        lcfg = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=targets or list(cfg.lora_targets),
            bias="none",
        )
        model = out.model = get_peft_model(out.model, lcfg)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + model_index)
        order: list[int] = []
        model.train()
        for _ in range(cfg.steps):
            if len(order) < min(cfg.batch_size, len(subset)):
                order += torch.randperm(len(subset), generator=gen).tolist()
            idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
            enc = encode_examples(out, [subset[i] for i in idx], cfg.max_length)
            enc = {k: v.to(out.device) for k, v in enc.items()}
            with torch.no_grad(), model.disable_adapter():
                base_logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            xi_b = torch.tensor(xi[idx], device=out.device)
            loss = perturbed_objective(logits, base_logits, enc["labels"], xi_b, cfg.rho)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        model.eval()
    return out


_LM_CACHE: dict[str, Any] = {}


def run_daunce_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Worker: train perturbed model k, record the loss of every train and test example under it."""
    from airsearch.lm import example_losses, load_lm

    t0 = time.perf_counter()
    cfg = DaunceConfig.from_dict(payload["config"])
    k = payload["model_index"]
    base = _LM_CACHE.get(payload["model"])
    if base is None:
        base = _LM_CACHE[payload["model"]] = load_lm(payload["model"], max_length=cfg.max_length)
    train: list[Example] = payload["train"]
    idx = subset_indices(len(train), cfg.ratio, cfg.seed, k)
    subset = [train[i] for i in idx]
    xi = example_xi(cfg.seed, k, [ex.id for ex in subset])
    tuned = train_perturbed(base, subset, xi, cfg, k)
    evals = train + list(payload["test"])
    losses = example_losses(tuned, evals, max_length=cfg.max_length, show_progress=False)
    result: dict[str, Any] = {
        "ids": np.array([ex.id for ex in evals]),
        "losses": losses,
        "subset": np.array([ex.id for ex in subset]),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    for name, p in tuned.model.named_parameters():
        if "lora_" in name:
            result[ADAPTER_PREFIX + name] = p.detach().cpu().numpy()
    return result


@dataclass
class DaunceRun:
    """The recorded losses of a finished run: ``losses[k, e]`` for every example id in ``ids``."""

    out_dir: Path
    ids: list[str]
    n_train: int
    losses: np.ndarray  # [K, n_train + n_test]
    config: DaunceConfig
    model: str

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

    def method(self, kind: str = "corr", lm: Any | None = None) -> Daunce:
        """A :class:`Daunce` method over the recorded losses; with ``lm`` (the base model) examples that
        were not in the run (new queries) are scored live under the K saved adapters."""
        providers = []
        for k in range(self.losses.shape[0]):
            fallback = _AdapterLosses(lm, self, k) if lm is not None else None
            providers.append(RecordedLosses(dict(zip(self.ids, self.losses[k], strict=True)), fallback))
        return Daunce(
            providers,
            kind=kind,  # type: ignore[arg-type]
            fingerprint=fingerprint_json(json.loads((self.out_dir / MANIFEST).read_text())),
            extra={"models": self.losses.shape[0]},
        )


@dataclass
class _AdapterLosses:
    lm: Any
    run: DaunceRun
    k: int
    _provider: LocalLMLosses | None = None

    def losses(self, examples: Sequence[Example]) -> np.ndarray:
        if self._provider is None:
            from peft import LoraConfig, get_peft_model

            cfg = self.run.config
            tuned = self.lm.clone()
            lcfg = LoraConfig(
                r=cfg.lora_r,
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


def job_id(k: int) -> str:
    return f"daunce-{k:05d}"


def run_daunce(
    model: str,
    train: Sequence[Example],
    test: Sequence[Example],
    cfg: DaunceConfig,
    out_dir: str | Path,
    *,
    workers: int = 1,
    ray_address: str | None = None,
    quiet: bool | None = None,
) -> DaunceRun:
    """Run (or resume) the K perturbed fine-tunes; a rerun with other inputs into ``out_dir`` is refused."""
    cfg.validate()
    out = Path(out_dir)
    src = Path(model).expanduser()
    model = str(src.resolve()) if src.exists() else model
    # K is not part of the identity: model k depends only on (seed, k), so a larger K extends a run.
    identity = {k: v for k, v in cfg.to_dict().items() if k != "models"}
    manifest = {
        "method": "daunce",
        "model": model,
        "config": identity,
        "train": fingerprint_json([[e.id, e.prompt, e.response] for e in train]),
        "test": fingerprint_json([[e.id, e.prompt, e.response] for e in test]),
        "n_train": len(train),
        "n_test": len(test),
    }
    if (out / MANIFEST).exists():
        old = json.loads((out / MANIFEST).read_text())
        if old != json.loads(json.dumps(manifest)):
            diff = sorted(k for k in manifest if old.get(k) != json.loads(json.dumps(manifest))[k])
            raise FingerprintMismatch(
                f"this folder holds a Daunce run with other {diff}; use a new output folder",
                path=out / MANIFEST,
            )
    else:
        write_json_atomic(out / MANIFEST, manifest)
    payload = {"model": model, "config": cfg.to_dict(), "train": list(train), "test": list(test)}
    jobs = [Job(job_id(k), {**payload, "model_index": k}) for k in range(cfg.models)]
    run_jobs(
        jobs,
        run_daunce_job,
        out / "jobs",
        workers=workers,
        ray_address=ray_address,
        progress_desc="daunce models",
        quiet=quiet,
    )
    return load_daunce(out, models=cfg.models)


def load_daunce(out_dir: str | Path, models: int | None = None) -> DaunceRun:
    """The finished models of a run (the first ``models`` of them, or all)."""
    out = Path(out_dir)
    if not (out / MANIFEST).is_file():
        raise InputError(f"not a Daunce run: {MANIFEST} is missing", path=out)
    manifest = json.loads((out / MANIFEST).read_text())
    done = sorted(finished_job_ids(out / "jobs"))
    ks = [int(j.split("-")[1]) for j in done if j.startswith("daunce-")]
    ks = [k for k in sorted(ks) if models is None or k < models]
    cfg = DaunceConfig.from_dict({**manifest["config"], "models": max(len(ks), 2)})
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
