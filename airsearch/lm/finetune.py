"""Fine-tuning the target LM on a set of examples: full fine-tuning or LoRA (peft).

Used for AirRep's subset labels (methods.md §1, Eq. 8: fine-tune on each subset, record dev losses),
DDA's checkpoints (methods.md §3, one per epoch via ``on_epoch_end``) and LDS ground truth
(equations.md §6).

The training objective is the mean over a batch of L(z, th), each example's mean response-token NLL
(:func:`airsearch.lm.loss.masked_token_nll`), so every example weighs the same whatever its length.

Determinism: a seeded ``torch.Generator`` shuffles, the LoRA initialisation and dropout draw from a
seeded RNG inside ``torch.random.fork_rng`` (the caller's global RNG state is left untouched), so
the same seed on the same machine gives the same weights.

LoRA: the returned :class:`TargetLM` keeps the ``peft.PeftModel`` (adapters not merged) unless
``merge_lora`` is set, so gradient methods can take per-example gradients on the adapters;
:func:`airsearch.lm.loss.example_losses` works on it unchanged and :func:`airsearch.lm.save_lm`
saves it merged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from airsearch.config import CommandConfig, require
from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.lm.loss import batch_loss
from airsearch.lm.model import TargetLM, encode_examples
from airsearch.progress import progress

# Attention and MLP projections of Llama-style models (Llama, Mistral, Qwen2, SmolLM2).
LLAMA_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(kw_only=True)
class FinetuneConfig(CommandConfig):
    """How to fine-tune the target LM (AirRep's labels: 2 epochs, lr 2e-5, batch 16)."""

    epochs: int = field(default=2, metadata={"help": "Passes over the training examples."})
    lr: float = field(default=2e-5, metadata={"help": "AdamW learning rate."})
    batch_size: int = field(default=16, metadata={"help": "Examples per optimiser step."})
    max_length: int = field(default=512, metadata={"help": "Tokens per example (prompt cut from the left)."})
    seed: int = field(default=0, metadata={"help": "Seed for shuffling, LoRA init and dropout."})
    lora_rank: int = field(default=0, metadata={"help": "LoRA rank; 0 = full fine-tuning."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (scale = alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA path."})
    lora_targets: tuple[str, ...] = field(
        default=LLAMA_LORA_TARGETS, metadata={"help": "Module names that get LoRA adapters."}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps, then a constant lr."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient-norm clip; 0 = none."})
    max_steps: int = field(default=0, metadata={"help": "Stop after this many steps; 0 = run all epochs."})
    merge_lora: bool = field(
        default=False, metadata={"help": "Merge LoRA adapters into the weights after training."}
    )

    def validate(self) -> None:
        require(self.epochs >= 1, "epochs", "must be at least 1")
        require(self.lr > 0 and math.isfinite(self.lr), "lr", "must be a positive number")
        require(self.batch_size >= 1, "batch_size", "must be at least 1")
        require(self.max_length >= 2, "max_length", "must be at least 2")
        require(self.lora_rank >= 0, "lora_rank", "must be 0 (full fine-tuning) or a positive rank")
        require(self.lora_alpha > 0, "lora_alpha", "must be positive")
        require(0.0 <= self.lora_dropout < 1.0, "lora_dropout", "must be in [0, 1)")
        require(self.lora_rank == 0 or len(self.lora_targets) > 0, "lora_targets", "name at least one module")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        require(self.max_grad_norm >= 0, "max_grad_norm", "must be >= 0")
        require(self.max_steps >= 0, "max_steps", "must be >= 0")


def _disable_dropout(model: torch.nn.Module) -> None:
    """Dropout off in the base model (attention dropout is a float attribute in HF attention modules)."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(getattr(m, "attention_dropout", None), float):
            m.attention_dropout = 0.0


def _wrap_lora(model: torch.nn.Module, cfg: FinetuneConfig) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in cfg.lora_targets if t in present]
    if not targets:
        raise InputError(
            f"none of the LoRA target modules {list(cfg.lora_targets)} exist in this model; "
            f"module names include {sorted(present)[:20]}",
            field="lora_targets",
        )
    lcfg = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lcfg)


def finetune(
    lm: TargetLM,
    examples: Sequence[Example],
    cfg: FinetuneConfig,
    *,
    on_epoch_end: Callable[[int, TargetLM], bool | None] | None = None,
    show_progress: bool = True,
    in_place: bool = False,
) -> TargetLM:
    """Fine-tune a copy of ``lm`` on ``examples``; ``lm`` itself is not changed.

    ``on_epoch_end(epoch, lm_now)`` is called after each epoch (1-based) with a TargetLM that shares
    the weights being trained (in eval mode during the call): save or ``clone()`` it to keep it.
    If it returns ``True``, training stops after that epoch (e.g. once the model does what is needed).
    A model that is already a peft model keeps training its existing adapters. With ``in_place`` (full
    fine-tuning) ``lm`` itself is trained and returned, no copy made: for a caller that resets one
    working model's weights between many fine-tunes (batched label jobs).
    """
    if in_place and (cfg.lora_rank > 0 or lm.is_peft):
        raise InputError("in_place fine-tuning is for full fine-tuning of a plain model", field="lora_rank")
    if not examples:
        raise InputError("no training examples to fine-tune on")
    devices = [lm.device.index or 0] if lm.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.seed)
        out = lm if in_place else lm.clone()
        out._fingerprint = None
        model = out.model
        if not out.is_peft:
            _disable_dropout(model)  # before wrapping, so a LoRA dropout added below stays on
        if out.is_peft:
            params = [p for p in model.parameters() if p.requires_grad]
        elif cfg.lora_rank > 0:
            model = out.model = _wrap_lora(model, cfg)
            params = [p for p in model.parameters() if p.requires_grad]
        else:
            for p in model.parameters():
                p.requires_grad_(True)
            params = list(model.parameters())
        _train(out, params, examples, cfg, on_epoch_end, show_progress)
        if cfg.merge_lora and out.is_peft:
            out.model = out.model.merge_and_unload()
    out.model.eval()
    out._fingerprint = None
    return out


def _train(
    lm: TargetLM,
    params: list[torch.nn.Parameter],
    examples: Sequence[Example],
    cfg: FinetuneConfig,
    on_epoch_end: Callable[[int, TargetLM], bool | None] | None,
    show_progress: bool,
) -> None:
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)
    warm = cfg.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(examples)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    model = lm.model
    step = 0
    bar = progress(desc="fine-tune", total=total, unit="step", quiet=None if show_progress else True)
    try:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            order = torch.randperm(n, generator=gen).tolist()
            for s in range(0, n, cfg.batch_size):
                batch = encode_examples(
                    lm, [examples[i] for i in order[s : s + cfg.batch_size]], cfg.max_length
                )
                loss = batch_loss(lm, batch, "mean").mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                sched.step()
                step += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss.item():.4f}")
                if cfg.max_steps and step >= cfg.max_steps:
                    break
            stop = False
            if on_epoch_end is not None:
                model.eval()
                stop = bool(on_epoch_end(epoch, dataclasses.replace(lm, _fingerprint=None)))
            if stop or (cfg.max_steps and step >= cfg.max_steps):
                break
    finally:
        bar.close()
        for p in model.parameters():
            p.grad = None
