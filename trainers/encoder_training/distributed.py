"""Encoder training across processes or GPUs with ``torch.distributed`` (``torchrun``; gloo on CPUs,
NCCL on GPUs).

One step's work is split, not duplicated, and the result is the single-process step exactly (up to
float rounding). In the two-pass step (:mod:`.two_pass`) each process encodes its own block of the
step's distinct member rows and dev rows without grad; the blocks are all-gathered, so every process
holds every embedding and computes the same Eq. 7 scores, Eq. 9 loss and embedding gradients; each
process then back-propagates only its own block into the encoder, and the parameter gradients are
summed across processes (an all-reduce) before the shared clip and AdamW step. Every process
therefore holds the same weights after every step.

Why not ``DistributedDataParallel``: the two-pass step calls ``backward`` once per chunk, and the
number of chunks differs between processes (a chunk whose embedding gradient is zero is skipped);
DDP's per-backward all-reduce would then mismatch. One explicit all-reduce per step is the same
reduction, once.

Process 0 measures held-out LDS, keeps the best encoder and writes checkpoints; the stop decision is
broadcast, so every process stops at the same step.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Group:
    """This process's place in the training group (``world == 1``: a single process)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def block(self, n: int) -> slice:
        """This process's contiguous block of ``n`` rows (blocks in rank order cover ``0..n``)."""
        bounds = np.linspace(0, n, self.world + 1).round().astype(int)
        return slice(int(bounds[self.rank]), int(bounds[self.rank + 1]))

    def gather_rows(self, part: torch.Tensor, n: int) -> torch.Tensor:
        """The ``[n, ...]`` tensor whose blocks (:meth:`block`) the processes computed, on every process."""
        if not self.active:
            return part
        bounds = np.linspace(0, n, self.world + 1).round().astype(int)
        width = int(np.diff(bounds).max())
        padded = part.new_zeros((width, *part.shape[1:]))
        padded[: len(part)] = part
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        torch.distributed.all_gather(parts, padded.contiguous())
        return torch.cat([p[: bounds[r + 1] - bounds[r]] for r, p in enumerate(parts)])

    def sum_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sum every parameter's gradient across processes (a missing gradient counts as zero)."""
        if not self.active:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)

    def broadcast(self, value: object) -> object:
        """Process 0's ``value``, on every process."""
        if not self.active:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()


def join_group() -> Group:
    """The group ``torchrun`` started this process in (``WORLD_SIZE`` > 1), joined on first call; a
    single-process :class:`Group` otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group()
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return Group(
        rank=torch.distributed.get_rank(), world=torch.distributed.get_world_size(), local_rank=local
    )
