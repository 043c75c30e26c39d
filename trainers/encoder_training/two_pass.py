"""One training step's gradient with the AirRep memory trick (methods.md §1, Eq. 9 + Eq. 7).

A step scores K subsets (up to ~1,000 members each) against D dev examples. Keeping the encoder's
graph for all K x members + D inputs at once does not fit, so the gradient is taken in two passes:

1. Encode the union of the subsets' members and the dev examples **without** grad, compute every
   group score ``s[k, d]`` (Eq. 7) and the loss (Eq. 9), and take ``dL/ds`` (cheap: [K, D]).
2. For each subset k on its own, recompute ``s_k`` from the (leaf) member and dev embeddings and
   back-propagate ``(dL/ds_k * s_k).sum()``; the other subsets' scores stay detached. This
   accumulates ``dL/d(member embedding)`` and ``dL/d(dev embedding)`` exactly.
3. Re-encode members and dev examples in chunks **with** grad and back-propagate
   ``(dL/de * e).sum()`` into the encoder, accumulating parameter gradients chunk by chunk.

By the chain rule the accumulated parameter gradient equals that of the naive single pass
(:func:`single_pass_backward`, kept as the reference); peak memory is one chunk's activations.
Members shared by several subsets are encoded once per pass.

``forward`` replaces :meth:`AirRepEncoder.forward_ids` (e.g. :class:`.frozen.FrozenPrefix`, the same
function with a cached frozen lower part).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from airsearch.trainers.encoder_training.distributed import Group
from airsearch.trainers.encoder_training.loss import pairwise_rank_loss

from airsearch.encoder import AirRepEncoder, EncoderInput
from airsearch.errors import InputError
from airsearch.scoring import group_score

Forward = Callable[[Sequence[EncoderInput]], torch.Tensor]


def encode_no_grad(
    encoder: AirRepEncoder, inputs: Sequence[EncoderInput], batch_size: int, forward: Forward | None = None
) -> torch.Tensor:
    """Embeddings ``[n, dim]`` in chunks of ``batch_size`` (the same chunking as :func:`backprop_embeddings`)."""
    forward = forward or encoder.forward_ids
    with torch.no_grad():
        parts = [forward(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, encoder.dim, device=encoder.model.device)


def backprop_embeddings(
    encoder: AirRepEncoder,
    inputs: Sequence[EncoderInput],
    grads: torch.Tensor,
    batch_size: int,
    forward: Forward | None = None,
) -> None:
    """Re-encode ``inputs`` chunk by chunk with grad and accumulate ``d/dθ sum(grads * e(inputs))``."""
    forward = forward or encoder.forward_ids
    for i in range(0, len(inputs), batch_size):
        g = grads[i : i + batch_size]
        if not bool(g.any()):
            continue
        emb = forward(inputs[i : i + batch_size])
        (emb * g.to(emb.dtype)).sum().backward()


def _index_members(
    member_inputs: Sequence[Sequence[EncoderInput]],
) -> tuple[list[EncoderInput], list[torch.Tensor]]:
    """The union of member inputs (first-seen order) and each subset's rows in it."""
    position: dict[EncoderInput, int] = {}
    rows = []
    for subset in member_inputs:
        idx = [position.setdefault(t, len(position)) for t in subset]
        rows.append(torch.tensor(idx, dtype=torch.long))
    return list(position), rows


def two_pass_backward(
    encoder: AirRepEncoder,
    member_inputs: Sequence[Sequence[EncoderInput]],
    dev_inputs: Sequence[EncoderInput],
    targets: torch.Tensor,
    *,
    batch_size: int = 64,
    forward: Forward | None = None,
    group: Group | None = None,
) -> float:
    """Accumulate the Eq. 9 gradient of one step into the encoder's ``.grad``; returns the loss.

    With a ``group`` of several processes, this process encodes and back-propagates only its block of
    the rows (:mod:`.distributed`); the caller sums the parameter gradients across the group.

    ``member_inputs[k]`` are subset k's member inputs (:meth:`AirRepEncoder.input_ids`), ``targets`` is ``[K, D]`` (Eq. 8, clipped).
    The caller zeroes grads before and steps the optimiser after.
    """
    if len(member_inputs) != targets.shape[0] or len(dev_inputs) != targets.shape[1]:
        raise InputError(
            f"targets {tuple(targets.shape)} do not match {len(member_inputs)} subsets x {len(dev_inputs)} dev"
        )
    union, rows = _index_members(member_inputs)
    dev_inputs = list(dev_inputs)
    group = group or Group()
    mine, mine_dev = group.block(len(union)), group.block(len(dev_inputs))
    # pass 1: no-grad embeddings (each process its block, then gathered), scores, loss and dL/ds
    members = group.gather_rows(encode_no_grad(encoder, union[mine], batch_size, forward), len(union))
    dev = group.gather_rows(
        encode_no_grad(encoder, dev_inputs[mine_dev], batch_size, forward), len(dev_inputs)
    )
    with torch.no_grad():
        scores = torch.stack([group_score(dev, members[r.to(members.device)]) for r in rows])
    scores.requires_grad_(True)
    loss = pairwise_rank_loss(scores, targets.to(scores.device))
    (d_scores,) = torch.autograd.grad(loss, scores)
    # pass 2a: per subset, push dL/ds_k into the embeddings (the other subsets' scores detached)
    members_leaf = members.detach().requires_grad_(True)
    dev_leaf = dev.detach().requires_grad_(True)
    for k, r in enumerate(rows):
        if not bool(d_scores[k].any()):
            continue
        s_k = group_score(dev_leaf, members_leaf[r.to(members.device)])
        (d_scores[k] * s_k).sum().backward()
    # pass 2b: re-encode in chunks with grad and push the embedding grads into the encoder
    if members_leaf.grad is not None:
        backprop_embeddings(encoder, union[mine], members_leaf.grad[mine], batch_size, forward)
    if dev_leaf.grad is not None:
        backprop_embeddings(encoder, dev_inputs[mine_dev], dev_leaf.grad[mine_dev], batch_size, forward)
    return float(loss.detach())


def single_pass_backward(
    encoder: AirRepEncoder,
    member_inputs: Sequence[Sequence[EncoderInput]],
    dev_inputs: Sequence[EncoderInput],
    targets: torch.Tensor,
) -> float:
    """The naive step: everything encoded with grad in one graph, then ``loss.backward()`` (reference)."""
    dev = encoder.forward_ids(list(dev_inputs))
    scores = torch.stack([group_score(dev, encoder.forward_ids(list(m))) for m in member_inputs])
    loss = pairwise_rank_loss(scores, targets.to(scores.device))
    loss.backward()
    return float(loss.detach())
