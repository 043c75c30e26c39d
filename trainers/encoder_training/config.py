"""``airsearch train`` options (methods.md §1 [C] defaults) and the result it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airsearch.config import CommandConfig, require
from airsearch.results import Result, omitted_when_none
from airsearch.runtime import QUANTIZE_HELP, RUNTIME_HELP, Quantize, Runtime, check_runtime

# Fields that change how fast a run goes, not what it computes: a resume may change them.
RUNTIME_FIELDS = (
    "out",
    "labels",
    "device",
    "batch_size",
    "checkpoint_every",
    "keep_checkpoints",
    "runtime",
    "quantize",
)

# Per-step sizes when the user gives none: the paper's on a GPU (methods.md §1 [C]); on a CPU a step of
# those sizes takes minutes, so a CPU run samples fewer subsets and dev examples per step.
STEP_SIZES = {"cuda": (32, 1000), "cpu": (8, 128)}
# The stopping schedule when the user gives none: (max_steps, eval_every). The paper trains up to 2,000
# steps on GPUs; a 2-core CPU step of the CPU sizes takes seconds, so the cap is lower and LDS is
# measured more often relative to it. Training normally stops earlier, on a plateau (`patience`).
SCHEDULES = {"cuda": (2000, 50), "cpu": (1000, 25)}


@dataclass(kw_only=True)
class TrainConfig(CommandConfig):
    """Training an AirRep encoder on subset-loss labels with the Eq. 9 ranking loss."""

    labels: str | None = field(
        default=None,
        metadata={
            "help": "Label store folder (from `airsearch labels generate`); required on the command line."
        },
    )
    out: str = field(metadata={"help": "Output folder: the trained AirRep encoder and its training log."})
    base_encoder: str = field(
        default="default",
        metadata={
            "help": "Encoder to start from: 'default' (packaged all-MiniLM-L6-v2), a model folder or a hub name."
        },
    )
    max_steps: int | None = field(
        default=None,
        metadata={
            "help": "Stop after this many optimiser steps if no plateau came first (default: 2000 on a GPU, "
            "1000 on a CPU)."
        },
    )
    epochs: int | None = field(
        default=None,
        metadata={
            "help": "Also stop after this many passes over the training splits (default: no such cap)."
        },
    )
    eval_every: int | None = field(
        default=None,
        metadata={
            "help": "Measure held-out LDS every N steps (default: 50 on a GPU, 25 on a CPU; "
            "also at step 0, the base encoder, and at the last step)."
        },
    )
    patience: int = field(
        default=5,
        metadata={
            "help": "Stop when this many held-out LDS measurements in a row did not beat the best by "
            "--min-delta (a plateau); 0: never stop early."
        },
    )
    min_delta: float = field(
        default=0.002, metadata={"help": "The held-out LDS gain that counts as an improvement."}
    )
    freeze_layers: int = field(
        default=0,
        metadata={
            "help": "Freeze the embeddings and the lowest N transformer layers and compute their outputs "
            "once per row (faster steps; the saved encoder computes the same function). 0: train every "
            "layer, as in the paper."
        },
    )
    lr: float = field(default=1e-4, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    subsets_per_step: int | None = field(
        default=None,
        metadata={"help": "Subsets sampled from the split at each step (default: 32 on a GPU, 8 on a CPU)."},
    )
    dev_per_step: int | None = field(
        default=None,
        metadata={
            "help": "Dev examples sampled from the split at each step (default: 1000 on a GPU, 128 on a CPU)."
        },
    )
    holdout_splits: int = field(
        default=1,
        metadata={
            "help": "Splits (the highest split ids) never trained on, used for the held-out LDS that "
            "chooses the best step and detects the plateau."
        },
    )
    warmup_steps: int = field(default=10, metadata={"help": "Linear warm-up steps, then a constant lr."})
    grad_clip: float = field(default=1.0, metadata={"help": "Gradient-norm clip."})
    seed: int = field(default=0, metadata={"help": "Seed for sampling, order and torch."})
    batch_size: int = field(default=32, metadata={"help": "Texts per encoder forward pass."})
    device: str | None = field(
        default=None, metadata={"help": "torch device (default: cuda when available)."}
    )
    checkpoint_every: int = field(
        default=50, metadata={"help": "Save a resumable checkpoint every N steps (and after every epoch)."}
    )
    keep_checkpoints: bool = field(
        default=False, metadata={"help": "Keep checkpoints/ in the output folder after training finishes."}
    )
    runtime: Runtime = field(
        default="torch",
        metadata={"help": RUNTIME_HELP + "; the trained encoder's held-out LDS is also measured on it"},
    )
    quantize: Quantize = field(default="none", metadata={"help": QUANTIZE_HELP})

    def validate(self) -> None:
        require(bool(self.out), "out", "is required (the output folder)")
        require(self.max_steps is None or self.max_steps >= 1, "max_steps", "must be at least 1")
        require(self.epochs is None or self.epochs >= 1, "epochs", "must be at least 1")
        require(self.eval_every is None or self.eval_every >= 1, "eval_every", "must be at least 1")
        require(self.patience >= 0, "patience", "must be >= 0 (0: never stop early)")
        require(self.min_delta >= 0, "min_delta", "must be >= 0")
        require(self.freeze_layers >= 0, "freeze_layers", "must be >= 0")
        require(self.lr > 0, "lr", "must be positive")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(
            self.subsets_per_step is None or self.subsets_per_step >= 2,
            "subsets_per_step",
            "a ranking needs at least 2 subsets",
        )
        require(self.dev_per_step is None or self.dev_per_step >= 1, "dev_per_step", "must be at least 1")
        require(self.holdout_splits >= 0, "holdout_splits", "must be >= 0")
        require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        require(self.grad_clip > 0, "grad_clip", "must be positive")
        require(self.batch_size >= 1, "batch_size", "must be at least 1")
        require(self.checkpoint_every >= 1, "checkpoint_every", "must be at least 1")
        check_runtime(self.runtime, self.quantize)

    def with_step_sizes(self, device: str, holds: tuple[int, int] | None = None) -> tuple[TrainConfig, str]:
        """This config with the per-step sizes and the stopping schedule the user left out filled in for
        ``device`` (the type of the torch device the run uses), and a note of what was chosen (``""``
        when everything was given and fits). ``holds`` is ``(subsets, dev examples)`` of the largest
        training split: a step size above it, chosen or given, is capped to it (a step cannot sample
        more than its split holds), and the note says so."""
        kind = "cuda" if device.startswith("cuda") else "cpu"
        subsets, dev = STEP_SIZES[kind]
        max_steps, eval_every = SCHEDULES[kind]
        defaults = (
            ("subsets_per_step", subsets),
            ("dev_per_step", dev),
            ("max_steps", max_steps),
            ("eval_every", eval_every),
        )
        chosen = {name: value for name, value in defaults if getattr(self, name) is None}
        notes = []
        if chosen:
            what = ", ".join(f"{name} {value}" for name, value in chosen.items())
            notes.append(f"{what}: the defaults on {'a GPU' if kind == 'cuda' else 'a CPU'}")
            if kind == "cpu" and {"subsets_per_step", "dev_per_step"} & set(chosen):
                notes[0] += (
                    " (the paper's 32 subsets x 1000 dev examples are the GPU defaults; set them to use those)"
                )
        sizes = {"subsets_per_step": self.subsets_per_step, "dev_per_step": self.dev_per_step}
        sizes = {name: chosen.get(name, value) for name, value in sizes.items()}
        for (name, value), most in zip(sizes.items(), holds or (), strict=False):
            if value > most:
                sizes[name] = max(most, 2 if name == "subsets_per_step" else 1)
                notes.append(
                    f"{name} {value} capped at {sizes[name]}: the largest training split holds {most}"
                )
        if not notes:
            return self, ""
        return self.replace(**{**chosen, **sizes}), "; ".join(notes)

    def run_identity(self) -> dict[str, Any]:
        """The fields that define what a run computes (a resume must match them)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}


@dataclass(frozen=True)
class TrainResult(Result):
    """What :func:`train_encoder` returns (also stored in ``training.json``)."""

    out: str
    steps: int
    stop_reason: str  # "plateau", "max_steps" or "epochs" (the cap reached), "no_heldout" (no LDS to watch)
    base_lds: float
    best_lds: float
    best_step: int
    lds_curve: list[dict[str, float]]  # one {"step", "seconds", "lds"} per held-out measurement
    final_loss: float
    seconds: float
    seconds_per_step: float  # training steps only (held-out measurements excluded)
    train_splits: list[int]
    heldout_splits: list[int]
    labels_fingerprint: str
    encoder_fingerprint: str
    resumed: bool = False
    already_complete: bool = False
    device: str | None = None  # where the run trained
    step_sizes: str = ""  # the per-step sizes chosen for the device when the user gave none
    runtime: str = "torch"  # the encoder runtime the run measured the trained encoder on too
    runtime_lds: float | None = omitted_when_none()  # held-out LDS of the best encoder on that runtime
    processes: int = 1  # processes that shared every step (torchrun; see distributed.py)
