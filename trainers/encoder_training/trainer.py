"""``train_encoder``: AirRep encoder training on subset-loss labels (methods.md §1, Eq. 7-9).

One step = one training split: ``subsets_per_step`` of its subsets and ``dev_per_step`` of its dev
examples, sampled by a generator seeded with ``(seed, epoch, step)``, so that a resumed run draws
exactly what an uninterrupted one would. Gradients come from the two-pass memory trick
(:mod:`.two_pass`); AdamW, linear warm-up then constant lr, grad-norm clip, dropout off.

Training stops on evidence: held-out LDS (on the label splits set aside, never on an evaluation gold)
is measured every ``eval_every`` steps, the best step's encoder is kept, and the run stops after
``patience`` measurements in a row without a gain of ``min_delta`` (a plateau), or at the
``max_steps`` / ``epochs`` cap. ``freeze_layers`` freezes the lower encoder and computes it once per row
(:mod:`.frozen`).

The output folder, while training: ``train_config.json``, ``training.json`` (the log),
``training_curve.png`` and ``checkpoints/{last,best}``. When training ends it is replaced atomically
by the best encoder (an AirRep folder that ``SentenceTransformer(path)`` loads) plus the log files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from airsearch.trainers.encoder_training.checkpoint import load_checkpoint, save_checkpoint
from airsearch.trainers.encoder_training.config import TrainConfig, TrainResult
from airsearch.trainers.encoder_training.curve import plot_training_curve
from airsearch.trainers.encoder_training.data import TrainingLabels, load_training_labels, manifest_summary
from airsearch.trainers.encoder_training.distributed import Group, join_group
from airsearch.trainers.encoder_training.evaluate import heldout_lds, inputs_of, plateau
from airsearch.trainers.encoder_training.frozen import FrozenPrefix
from airsearch.trainers.encoder_training.sampling import (
    disable_dropout,
    epoch_order,
    sample_step,
    seed_everything,
)
from airsearch.trainers.encoder_training.two_pass import two_pass_backward

from airsearch.atomic import atomic_path, write_json_atomic
from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder
from airsearch.errors import InputError
from airsearch.labels import SplitLabels
from airsearch.progress import announce, format_seconds, progress
from airsearch.runtime import runtime_label

CONFIG_FILE = "train_config.json"
LOG_FILE = "training.json"
CURVE_FILE = "training_curve.png"
CHECKPOINTS = "checkpoints"

StepCallback = Callable[[int, float], None]


def train_encoder(
    cfg: TrainConfig,
    *,
    splits: Sequence[SplitLabels] | None = None,
    examples: Mapping[str, Example] | None = None,
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train (or resume, or report a finished run in) ``cfg.out``; see the module docstring.

    ``splits``/``examples`` replace the label store at ``cfg.labels`` when given. ``on_step(step,
    loss)`` is called after every optimiser step (and after that step's checkpoint, if any).
    """
    labels = load_training_labels(cfg.labels, splits=splits, examples=examples)
    group = join_group()  # several processes under torchrun (distributed.py), else just this one
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if group.active and device == "cuda":
        device = f"cuda:{group.local_rank}"
    train_splits = labels.partition(cfg.holdout_splits)[0]
    holds = tuple(max(s.losses.shape[i] for s in train_splits) for i in (0, 1))
    cfg, step_sizes = cfg.with_step_sizes(device, holds)  # type: ignore[arg-type]
    out = Path(cfg.out)
    identity = {"config": cfg.run_identity(), "labels_fingerprint": labels.fingerprint}
    existing = _check_out_dir(out, identity)
    group.barrier()  # every process has read the folder before the first one writes to it
    if existing == "complete":
        return TrainResult(**{**json.loads((out / LOG_FILE).read_text())["result"], "already_complete": True})
    run = _Run(cfg, labels, out, identity, on_step, device=device, step_sizes=step_sizes, group=group)
    if step_sizes and group.is_main:
        announce(f"train on {device}: {step_sizes}")
    if group.active and group.is_main:
        announce(f"training on {group.world} processes (each encodes 1/{group.world} of every step)")
    return run.run(resume=existing == "resume")


def _check_out_dir(out: Path, identity: dict[str, Any]) -> str:
    """'fresh', 'resume' or 'complete'; refuses a folder that holds something else."""
    if out.exists() and not out.is_dir():
        raise InputError("the output path is a file", path=out)
    if not out.exists() or not any(out.iterdir()):
        return "fresh"
    if not (out / CONFIG_FILE).exists():
        raise InputError(
            "the output folder is not empty and holds no airsearch training run; "
            "choose an empty or new folder",
            path=out,
        )
    saved = json.loads((out / CONFIG_FILE).read_text())
    if saved != json.loads(json.dumps(identity)):
        diff = sorted(
            k
            for k in set(saved.get("config", {})) | set(identity["config"])
            if saved.get("config", {}).get(k) != identity["config"].get(k)
        )
        if saved.get("labels_fingerprint") != identity["labels_fingerprint"]:
            diff.append("labels (different label content)")
        raise InputError(
            f"the output folder holds a different training run (differs in: {', '.join(diff)}); "
            "use a new output folder, or the same options to resume",
            path=out,
        )
    log = out / LOG_FILE
    if log.exists() and json.loads(log.read_text()).get("complete"):
        return "complete"
    return "resume" if (out / CHECKPOINTS / "last").exists() else "fresh"


class _Run:
    def __init__(
        self,
        cfg: TrainConfig,
        labels: TrainingLabels,
        out: Path,
        identity: dict,
        on_step: StepCallback | None,
        *,
        device: str,
        step_sizes: str = "",
        group: Group | None = None,
    ):
        self.cfg, self.labels, self.out, self.identity, self.on_step = cfg, labels, out, identity, on_step
        self.device, self.step_sizes, self.group = device, step_sizes, group or Group()
        self.train, self.heldout = labels.partition(cfg.holdout_splits)
        self.steps_per_epoch = len(self.train)
        assert cfg.max_steps is not None and cfg.eval_every is not None  # filled by with_step_sizes
        self.max_steps = cfg.max_steps
        if cfg.epochs is not None:
            self.max_steps = min(self.max_steps, cfg.epochs * self.steps_per_epoch)
        self.targets = {s.split: torch.tensor(s.targets(), dtype=torch.float32) for s in self.train}
        seed_everything(cfg.seed)
        self.encoder = AirRepEncoder.load(cfg.base_encoder, device=device)
        disable_dropout(self.encoder.model)
        self.frozen = FrozenPrefix(self.encoder, cfg.freeze_layers) if cfg.freeze_layers else None
        self.forward = self.frozen.forward_ids if self.frozen else None
        self.params = [p for p in self.encoder.model.parameters() if p.requires_grad]
        params = self.params
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        warm = cfg.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warm) if warm > 0 else 1.0
        )
        self.record: dict[str, Any] = {
            "step": 0,
            "losses": [],
            "lds": [],  # one {"step", "epoch", "seconds", "lds", "per_split"} per measurement
            "best_step": None,
            "best_lds": None,
            "seconds": 0.0,
            "step_seconds": 0.0,  # time in training steps only
            "stop_reason": None,
        }

    # ------------------------------------------------------------------ main loop
    def run(self, *, resume: bool) -> TrainResult:
        self.out.mkdir(parents=True, exist_ok=True)
        self.resumed = resume
        if resume:
            self.record = load_checkpoint(
                self.out / CHECKPOINTS / "last", self.encoder.model, self.optimizer, self.scheduler
            )
            disable_dropout(self.encoder.model)
        elif self.group.is_main:
            write_json_atomic(self.out / CONFIG_FILE, self.identity)
        started, seconds_before = time.monotonic(), self.record["seconds"]
        self._elapsed = lambda: seconds_before + time.monotonic() - started
        bar = progress(
            desc="training",
            total=self.max_steps,
            unit="step",
            initial=self.record["step"],
            quiet=True if not self.group.is_main else None,
        )
        self._timing: dict[str, float] = {}
        while self.record["stop_reason"] is None:
            step = self.record["step"]
            measured = self.record["lds"][-1]["step"] if self.record["lds"] else -1
            if measured != step and (step % self.cfg.eval_every == 0 or step >= self.max_steps):
                t0 = time.monotonic()
                self._measure(step)
                self._timing.setdefault("eval", time.monotonic() - t0)
                continue
            if step >= self.max_steps:
                capped_by_epochs = self.cfg.epochs is not None and self.max_steps < (self.cfg.max_steps or 0)
                self.record["stop_reason"] = "epochs" if capped_by_epochs else "max_steps"
                break
            t0 = time.monotonic()
            loss = self._train_step(step)
            self.record["step_seconds"] += time.monotonic() - t0
            if "step" not in self._timing:
                self._timing["step"] = time.monotonic() - t0
                if self.group.is_main:
                    announce(self._plan(step + 1))
            self.record["losses"].append(loss)
            self.record["step"] = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", best=f"{self.record['best_lds'] or float('nan'):.3f}")
            if self.record["step"] % self.cfg.checkpoint_every == 0:
                self._checkpoint()
            if self.on_step is not None:
                self.on_step(self.record["step"], loss)
        bar.close()
        return self._finish()

    def _plan(self, steps_done: int) -> str:
        """The plan line after the first (warm-up) step: the work left at most, where it goes, an estimate."""
        cfg = self.cfg
        left = (self.max_steps - steps_done) * self._timing["step"]
        left += (self.max_steps - steps_done) / cfg.eval_every * self._timing.get("eval", 0.0)
        stop = (
            f"until held-out LDS stops rising ({cfg.patience} measurements without +{cfg.min_delta:g}) or "
            if cfg.patience and self.heldout
            else ""
        )
        frozen = f"; lowest {cfg.freeze_layers} layers frozen" if cfg.freeze_layers else ""
        return (
            f"plan: train {stop}{self.max_steps} steps ({self.steps_per_epoch} splits per epoch; "
            f"{cfg.subsets_per_step} subsets x {cfg.dev_per_step} dev examples per step{frozen}; held-out "
            f"LDS every {cfg.eval_every} steps) on {self.device} -> {self.out}; at most about "
            f"{format_seconds(left)} left (first step {self._timing['step']:.1f} s, held-out LDS "
            f"{self._timing.get('eval', 0.0):.1f} s)"
        )

    def _train_step(self, step: int) -> float:
        epoch, index = divmod(step, self.steps_per_epoch)
        split = self.train[epoch_order(self.steps_per_epoch, self.cfg.seed, epoch)[index]]
        rows, cols = sample_step(split, self.cfg, epoch, index)
        member_inputs = [
            inputs_of(self.encoder, split.members[r], self.labels.examples, split.split) for r in rows
        ]
        dev_inputs = inputs_of(
            self.encoder, [split.dev_ids[c] for c in cols], self.labels.examples, split.split
        )
        targets = self.targets[split.split][torch.as_tensor(rows)][:, torch.as_tensor(cols)]
        self.optimizer.zero_grad(set_to_none=True)
        loss = two_pass_backward(
            self.encoder,
            member_inputs,
            dev_inputs,
            targets,
            batch_size=self.cfg.batch_size,
            forward=self.forward,
            group=self.group,
        )
        self.group.sum_gradients(self.params)
        torch.nn.utils.clip_grad_norm_(self.encoder.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.encoder.invalidate_fingerprint()
        return loss

    def _measure(self, step: int) -> None:
        """Held-out LDS after ``step`` steps (0 = base), best-encoder update, plateau check, checkpoint
        (on process 0, which tells the others what it found)."""
        if self.group.is_main:
            self._measure_main(step)
        shared = ("lds", "best_step", "best_lds", "stop_reason")
        found = self.group.broadcast({k: self.record[k] for k in shared})
        self.record.update(found)  # type: ignore[arg-type]

    def _measure_main(self, step: int) -> None:
        result = heldout_lds(
            self.encoder,
            self.heldout,
            self.labels.examples,
            batch_size=self.cfg.batch_size,
            forward=self.forward,
        )
        point = {"step": step, "epoch": step / self.steps_per_epoch, "seconds": self._elapsed(), **result}
        self.record["lds"].append(point)
        best = self.record["best_lds"]
        score = result["lds"] if math.isfinite(result["lds"]) else -math.inf
        best_score = best if best is not None and math.isfinite(best) else -math.inf
        # step 0 is the base encoder: the output is always a trained step
        if step >= 1 and (not self.heldout or self.record["best_step"] is None or score > best_score):
            self.record["best_step"], self.record["best_lds"] = step, result["lds"]
            self._save_encoder(self.out / CHECKPOINTS / "best")
        if self.heldout:
            self.record["stop_reason"] = plateau(self.record["lds"], self.cfg.patience, self.cfg.min_delta)
        self._checkpoint()

    # ------------------------------------------------------------------ persistence
    def _checkpoint(self) -> None:
        if not self.group.is_main:
            return
        self.record["seconds"] = self._elapsed()
        save_checkpoint(
            self.out / CHECKPOINTS / "last", self.encoder.model, self.optimizer, self.scheduler, self.record
        )
        self._write_log(complete=False)

    def _curve(self) -> list[dict[str, float]]:
        return [{"step": p["step"], "seconds": p["seconds"], "lds": p["lds"]} for p in self.record["lds"]]

    def _training_info(self) -> dict[str, Any]:
        lds = self.record["lds"]
        return {
            "config": self.cfg.run_identity(),
            "labels": {
                **manifest_summary(self.labels),
                "train_splits": [s.split for s in self.train],
                "heldout_splits": [s.split for s in self.heldout],
            },
            "best_step": self.record["best_step"],
            "heldout_lds": self.record["best_lds"],
            "base_lds": lds[0]["lds"] if lds else None,
            "lds_curve": self._curve(),
            "steps": self.record["step"],
            "stop_reason": self.record["stop_reason"],
        }

    def _save_encoder(self, path: Path) -> None:
        self.encoder.info.trained = True
        self.encoder.info.training = self._training_info()
        with atomic_path(path, is_dir=True) as tmp:
            self.encoder.save(tmp)

    def _result(self) -> TrainResult:
        lds = self.record["lds"]
        info_file = self.out / CHECKPOINTS / "best" / "airsearch_encoder.json"
        fp = (
            json.loads(info_file.read_text())["fingerprint"]
            if info_file.exists()
            else self.encoder.fingerprint
        )
        steps = self.record["step"]
        return TrainResult(
            out=str(self.out),
            steps=steps,
            stop_reason=self.record["stop_reason"] or "running",
            base_lds=lds[0]["lds"],
            best_lds=self.record["best_lds"],
            best_step=self.record["best_step"],
            lds_curve=self._curve(),
            final_loss=self.record["losses"][-1] if self.record["losses"] else float("nan"),
            seconds=self._elapsed(),
            seconds_per_step=self.record["step_seconds"] / steps if steps else float("nan"),
            train_splits=[s.split for s in self.train],
            heldout_splits=[s.split for s in self.heldout],
            labels_fingerprint=self.labels.fingerprint,
            encoder_fingerprint=fp,
            resumed=getattr(self, "resumed", False),
            device=self.device,
            step_sizes=self.step_sizes,
            runtime=runtime_label(self.cfg.runtime, self.cfg.quantize),
            runtime_lds=getattr(self, "runtime_lds", None),
            processes=self.group.world,
        )

    def _write_log(self, *, complete: bool, directory: Path | None = None) -> None:
        directory = directory or self.out
        log = {
            "complete": complete,
            "result": self._result().to_dict(),
            "training": self._training_info(),
            "losses": self.record["losses"],
            "lds": self.record["lds"],
            "steps_per_epoch": self.steps_per_epoch,
            "max_steps": self.max_steps,
        }
        write_json_atomic(directory / LOG_FILE, log)
        plot_training_curve(self.record["losses"], self.record["lds"], directory / CURVE_FILE)

    def _runtime_lds(self, best: Path) -> float | None:
        """Held-out LDS of the best encoder on ``cfg.runtime`` (``None`` on torch, measured already)."""
        if self.cfg.runtime == "torch" or not self.heldout:
            return None
        enc = AirRepEncoder.load(best, device="cpu", runtime=self.cfg.runtime, quantize=self.cfg.quantize)
        return heldout_lds(enc, self.heldout, self.labels.examples, batch_size=self.cfg.batch_size)["lds"]

    def _finish(self) -> TrainResult:
        """Replace the run folder by the best encoder plus the log (atomically); process 0's result."""
        if not self.group.active:
            return self._finish_main()
        result = self._finish_main().to_dict() if self.group.is_main else None
        return TrainResult(**self.group.broadcast(result))  # type: ignore[arg-type]

    def _finish_main(self) -> TrainResult:
        self.record["seconds"] = self._elapsed()
        best = self.out / CHECKPOINTS / "best"
        # the best encoder's info gets the full history (later steps were not known when it was saved)
        info_file = best / "airsearch_encoder.json"
        info = json.loads(info_file.read_text())
        info["training"] = self._training_info()
        runtime_lds = self._runtime_lds(best)
        if runtime_lds is not None:
            info["training"]["runtime"] = {"runtime": self.cfg.runtime, "quantize": self.cfg.quantize}
            info["training"]["runtime_heldout_lds"] = runtime_lds
        write_json_atomic(info_file, info)
        self.runtime_lds = runtime_lds
        with atomic_path(self.out, is_dir=True) as tmp:
            shutil.copytree(best, tmp, dirs_exist_ok=True)
            shutil.copy2(self.out / CONFIG_FILE, tmp / CONFIG_FILE)
            if self.cfg.keep_checkpoints:
                shutil.copytree(self.out / CHECKPOINTS, tmp / CHECKPOINTS)
            self._write_log(complete=True, directory=tmp)
        return dataclasses.replace(self._result(), encoder_fingerprint=info["fingerprint"])
