"""AirRep's training objective, Eq. 9: a weighted pairwise ranking (RankNet) loss over subsets.

For one dev example z and two subsets j, k of the same split with labels ``y_j > y_k`` (Eq. 8, clipped
to [-10, 10]), the term is ``BCEWithLogits(s_j - s_k, 1)`` weighted by ``w = clip(|y_j - y_k|, 0, 10)``,
where ``s`` is the Eq. 7 group score. The loss is the mean of ``w * BCE`` over every such ordered
pair and every dev example, exactly as ``torch.nn.BCEWithLogitsLoss(weight=w)`` reduces it.
"""

from __future__ import annotations

import torch

from airsearch.errors import InputError

WEIGHT_CLIP = 10.0


def pairwise_rank_loss(
    scores: torch.Tensor, targets: torch.Tensor, *, weight_clip: float = WEIGHT_CLIP
) -> torch.Tensor:
    """Eq. 9 over ``scores`` and ``targets``, both ``[K subsets, D dev examples]``; a scalar.

    Ties (``y_j == y_k``) form no pair. With no pair at all the loss is a zero that still depends on
    ``scores`` (so ``backward`` works and gives zero gradients).
    """
    if scores.shape != targets.shape or scores.dim() != 2:
        raise InputError(
            f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must both be [K, D]"
        )
    y = targets.to(scores.dtype)
    diff = scores.unsqueeze(1) - scores.unsqueeze(0)  # [K, K, D]: s_j - s_k
    gap = y.unsqueeze(1) - y.unsqueeze(0)  # y_j - y_k
    pairs = gap > 0
    if not bool(pairs.any()):
        return scores.sum() * 0.0
    w = gap[pairs].clamp(0.0, weight_clip)
    # BCEWithLogits(x, 1) = log(1 + exp(-x)) = softplus(-x)
    return (w * torch.nn.functional.softplus(-diff[pairs])).mean()
