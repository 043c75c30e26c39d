"""``airsearch train``: train an AirRep encoder on subset-loss labels (methods.md §1, Eq. 9)."""

from __future__ import annotations

import math
import os
from typing import Any

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option
from airsearch.trainers.encoder_training.config import TrainConfig, TrainResult


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


STOPS = {
    "plateau": "held-out LDS stopped rising (plateau)",
    "max_steps": "the --max-steps cap (LDS may still be rising: raise it, or resume with a higher cap)",
    "epochs": "the --epochs cap (LDS may still be rising)",
}


def _human(r: TrainResult) -> str:
    if r.already_complete:
        head = f"already trained: {r.out} (nothing to do; use a new --out to train again)"
    else:
        head = f"trained AirRep encoder: {r.out}" + ("  (resumed)" if r.resumed else "")
    gain = (r.best_lds - r.base_lds) if r.best_lds is not None and r.base_lds is not None else float("nan")
    lines = [
        head,
        f"  held-out LDS   base {_fmt(r.base_lds)} -> best {_fmt(r.best_lds)} at step {r.best_step}"
        + ("" if math.isnan(gain) else f"  ({gain:+.4f})"),
        *(
            [
                f"  {'on ' + r.runtime:<15}held-out LDS {_fmt(r.runtime_lds)} (the best encoder on this runtime)"
            ]
            if r.runtime_lds is not None
            else []
        ),
        f"  steps          {r.steps}, stopped: {STOPS.get(r.stop_reason, r.stop_reason)}  "
        f"({_fmt(r.seconds_per_step)} s per step, final loss {_fmt(r.final_loss)})",
        f"  splits         train {len(r.train_splits)}, held out {r.heldout_splits}",
        f"  device         {r.device or 'auto'}" + (f"  (chose {r.step_sizes})" if r.step_sizes else ""),
        f"  encoder        [{r.encoder_fingerprint}]  labels [{r.labels_fingerprint}]",
        f"  time           {r.seconds:.1f} s",
    ]
    use = f"airsearch index CORPUS --db DIR --encoder {r.out}"
    if not r.heldout_splits or math.isnan(gain):
        lines.insert(2, "  (no held-out splits: the last step is kept; set --holdout-splits to measure LDS)")
        lines.append(f"  try it with    {use}  (not measured against its base encoder)")
    elif gain <= 0:
        # an encoder that does not beat its base is never recommended
        lines.insert(2, "  warning: training did not beat the base encoder on the held-out splits")
        lines.append(
            "  do not use it: keep the base encoder; more label splits (labels generate --splits), "
            "more --epochs or labels with more signal may help"
        )
    else:
        lines.append(f"  use it with    {use}")
    return "\n".join(lines)


@click.command(
    "train", short_help="Train an AirRep encoder on a label store (Eq. 9 ranking loss, held-out LDS)."
)
@json_option
@config_options(TrainConfig)
@handle_errors
def train_cmd(config: TrainConfig, as_json: bool) -> Any:
    """Train an AirRep encoder on a label store (Eq. 9 pairwise ranking) until held-out LDS stops rising.

    Several processes or GPUs: torchrun --nproc-per-node N -m airsearch.cli.main train ... (each step's
    rows are split between the processes; the encoder is the one a single process would train).

    Held-out LDS is measured every --eval-every steps on the label splits set aside (--holdout-splits);
    the best step's encoder is kept, and training stops after --patience measurements without a gain
    of --min-delta, or at --max-steps. Rerunning the same command resumes an interrupted run from its
    last checkpoint.
    """
    from airsearch.trainers.encoder_training.trainer import train_encoder

    result = train_encoder(config)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, process 0 speaks for the group
        emit(result, as_json, _human)
