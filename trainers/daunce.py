"""Daunce's K perturbed fine-tunes as independent, resumable runner jobs (methods.md §5).

Each job k: fresh LoRA adapters (B = 0, so training starts exactly at th0) on a copy of the target
LM, a seeded random subset of ratio r of the train examples, ``xi ~ U(0, 1)`` per example (seeded by
example id), a short training run on the Eq. 5 objective
(:func:`airsearch.methods.daunce.perturbed_objective`), then every train and test example's loss under
the result. The result file holds those losses, the subset and the adapter weights (small), so a
later query can be scored under the same K models. Reading a finished run (:class:`DaunceRun`,
:func:`load_daunce`, :class:`DaunceConfig`) lives in the core, :mod:`airsearch.methods.daunce_run`;
this module only runs one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from airsearch.trainers.runner import Job, run_jobs, worker_lm

from airsearch.atomic import write_json_atomic
from airsearch.config import renamed_fields
from airsearch.data.example import Example
from airsearch.errors import FingerprintMismatch
from airsearch.fingerprint import fingerprint_json
from airsearch.lm.model import TargetLM
from airsearch.methods.daunce import example_xi, perturbed_objective, subset_indices
from airsearch.methods.daunce_run import (
    ADAPTER_PREFIX,
    MANIFEST,
    DaunceConfig,
    DaunceRun,
    job_id,
    load_daunce,
)

__all__ = ["DaunceConfig", "DaunceRun", "load_daunce", "run_daunce", "run_daunce_job", "train_perturbed"]


def train_perturbed(
    lm: TargetLM, subset: Sequence[Example], xi: np.ndarray, cfg: DaunceConfig, model_index: int
) -> TargetLM:
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
            r=cfg.lora_rank,
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


def run_daunce_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Worker: train perturbed model k, record the loss of every train and test example under it."""
    from airsearch.lm import example_losses

    t0 = time.perf_counter()
    cfg = DaunceConfig.from_dict(payload["config"])
    k = payload["model_index"]
    base = worker_lm(payload["model"], cfg.max_length)
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


def run_daunce(
    lm: str,
    train: Sequence[Example],
    test: Sequence[Example],
    cfg: DaunceConfig,
    out_dir: str | Path,
    *,
    workers: int = 1,
    ray_address: str | None = None,
    quiet: bool | None = None,
) -> DaunceRun:
    """Run (or resume) the K perturbed fine-tunes of the target LM folder ``lm``; a rerun with other
    inputs into ``out_dir`` is refused."""
    out = Path(out_dir)
    src = Path(lm).expanduser()
    model = str(src.resolve()) if src.exists() else lm
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
        old["config"] = renamed_fields(DaunceConfig, old.get("config", {}), path=out / MANIFEST)
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
