"""The example loss L(z, th): mean negative log-likelihood over the response tokens only.

One masked per-token NLL function (methods.md §0) serves every method: per-token values for HAIF's
token gradients, the per-example mean for labels (Eq. 8), DDA and Daunce, and the sum when wanted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.lm.model import IGNORE_INDEX, TargetLM, encode_examples
from airsearch.progress import progress

Reduction = Literal["none", "mean", "sum"]


def masked_token_nll(
    logits: torch.Tensor, labels: torch.Tensor, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Causal NLL of each scored token: position t's logits predict ``labels[t + 1]``.

    ``logits`` [b, t, V], ``labels`` [b, t] with ``-100`` on prompt and padding positions.

    - ``"none"``: per-token NLL [b, t-1], zero where the target is masked;
    - ``"sum"``: per-example sum over scored tokens [b];
    - ``"mean"``: per-example mean over scored tokens [b] (L(z, th) in methods.md); an example
      with no scored token gets 0.

    Computed in float32 whatever the logits' dtype. A pure function of its inputs, differentiable in
    ``logits``.
    """
    if reduction not in ("none", "mean", "sum"):
        raise InputError(f"reduction must be 'none', 'mean' or 'sum', not {reduction!r}")
    if logits.shape[:2] != labels.shape:
        raise InputError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree")
    shift_logits = logits[:, :-1, :].float()
    targets = labels[:, 1:].to(shift_logits.device)
    nll = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(targets.shape)
    mask = targets != IGNORE_INDEX
    nll = nll * mask  # cross_entropy already gives 0 at ignored positions; keep it explicit
    if reduction == "none":
        return nll
    total = nll.sum(dim=1)
    if reduction == "sum":
        return total
    return total / mask.sum(dim=1).clamp(min=1)


def batch_loss(lm: TargetLM, batch: dict[str, torch.Tensor], reduction: Reduction = "mean") -> torch.Tensor:
    """Forward one encoded batch (:func:`encode_examples`) and return :func:`masked_token_nll`."""
    device = lm.device
    out = lm.model(
        input_ids=batch["input_ids"].to(device),
        attention_mask=batch["attention_mask"].to(device),
        use_cache=False,
    )
    return masked_token_nll(out.logits, batch["labels"].to(device), reduction)


@torch.no_grad()
def example_losses(
    lm: TargetLM,
    examples: Sequence[Example],
    *,
    batch_size: int = 16,
    max_length: int | None = None,
    show_progress: bool = True,
) -> np.ndarray:
    """L(z, th) for every example: the mean response-token NLL, as float64 [n].

    Examples are grouped by length into right-padded batches (padding does not change a loss); the
    model is run in eval mode without gradients and its previous mode is restored.
    """
    n = len(examples)
    out = np.zeros(n, dtype=np.float64)
    if n == 0:
        return out
    max_length = max_length or lm.max_length
    # Sort by a cheap length proxy to keep padding small; results go back to input order.
    order = sorted(range(n), key=lambda i: len(examples[i].prompt) + len(examples[i].response))
    was_training = lm.model.training
    lm.model.eval()
    try:
        starts = range(0, n, batch_size)
        for s in progress(
            starts,
            desc="example losses",
            total=len(starts),
            unit="batch",
            quiet=None if show_progress else True,
        ):
            idx = order[s : s + batch_size]
            batch = encode_examples(lm, [examples[i] for i in idx], max_length)
            out[idx] = batch_loss(lm, batch, "mean").double().cpu().numpy()
    finally:
        lm.model.train(was_training)
    return out
