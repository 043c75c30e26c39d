"""Held-out LDS of an encoder on label splits (equations.md §6; AirRep §4).

For each held-out split, every subset's Eq. 7 group score is predicted for every dev example and
compared with the Eq. 8 targets: LDS is the mean over dev examples of the Spearman correlation across
subsets (:func:`airsearch.metrics.lds`). Each split's union of members is encoded once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from airsearch.trainers.encoder_training.two_pass import Forward, encode_no_grad

from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder, EncoderInput
from airsearch.errors import InputError
from airsearch.labels import SplitLabels
from airsearch.metrics import lds
from airsearch.progress import progress
from airsearch.scoring import group_score


def predict_split_scores(
    encoder: AirRepEncoder,
    split: SplitLabels,
    examples: Mapping[str, Example],
    *,
    batch_size: int = 64,
    forward: Forward | None = None,
) -> np.ndarray:
    """Predicted Eq. 7 scores ``[n_subsets, n_dev]`` of one split (``forward``: see :mod:`.two_pass`)."""
    union = list(dict.fromkeys(i for m in split.members for i in m))
    row = {ex_id: r for r, ex_id in enumerate(union)}
    members = _embed(encoder, inputs_of(encoder, union, examples, split.split), batch_size, forward)
    dev = _embed(encoder, inputs_of(encoder, split.dev_ids, examples, split.split), batch_size, forward)
    with torch.no_grad():
        scores = [
            group_score(dev, members[torch.tensor([row[i] for i in m], device=members.device)])
            for m in split.members
        ]
    return torch.stack(scores).double().cpu().numpy()


def _embed(
    encoder: AirRepEncoder, inputs: Sequence[EncoderInput], batch_size: int, forward: Forward | None
) -> torch.Tensor:
    """Embeddings on the encoder's runtime: torch during training, an exported one when measured on it."""
    if encoder.runtime == "torch":
        return encode_no_grad(encoder, inputs, batch_size, forward)
    return torch.from_numpy(encoder.encode_ids(inputs, batch_size=batch_size))


def heldout_lds(
    encoder: AirRepEncoder,
    splits: Sequence[SplitLabels],
    examples: Mapping[str, Example],
    *,
    batch_size: int = 64,
    forward: Forward | None = None,
) -> dict:
    """``{"lds": mean over splits, "per_split": {split: lds}}``; ``lds`` is NaN with no splits."""
    was_training = encoder.model.training
    encoder.model.eval()
    per = {}
    bar = progress(desc="held-out LDS", total=len(splits), unit="split")
    for split in splits:
        per[str(split.split)] = lds(
            predict_split_scores(encoder, split, examples, batch_size=batch_size, forward=forward),
            split.targets(),
        )
        bar.update(1)
    bar.close()
    encoder.model.train(was_training)
    values = [v for v in per.values() if np.isfinite(v)]
    return {"lds": float(np.mean(values)) if values else float("nan"), "per_split": per}


def inputs_of(
    encoder: AirRepEncoder, ids: Sequence[str], examples: Mapping[str, Example], split: int
) -> list[EncoderInput]:
    """Encoder inputs of example ids (the same :meth:`AirRepEncoder.input_ids` as indexing and
    queries); a missing id is an error naming the split."""
    try:
        return encoder.input_ids([examples[i] for i in ids])
    except KeyError as e:
        raise InputError(
            f"split {split}: example id {e.args[0]!r} is in the labels but not among the examples",
            row=e.args[0],
        ) from None


def plateau(curve: Sequence[Mapping[str, float]], patience: int, min_delta: float) -> str | None:
    """``"plateau"`` when the last ``patience`` held-out measurements all failed to beat the best earlier
    one by more than ``min_delta``, else ``None`` (``patience`` 0: never).

    The reference is the best LDS measured before those points, the base encoder's (step 0) included,
    so a run whose LDS never rises above its base stops after ``patience`` measurements too."""
    if patience <= 0 or len(curve) <= patience:
        return None
    recent, earlier = curve[-patience:], curve[:-patience]
    finite = [p["lds"] for p in earlier if math.isfinite(p["lds"])]
    reference = max(finite) if finite else -math.inf
    gained = any(math.isfinite(p["lds"]) and p["lds"] > reference + min_delta for p in recent)
    return None if gained else "plateau"
