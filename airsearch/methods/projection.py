"""Seeded random (Johnson-Lindenstrauss) projection of gradient vectors, block by block (methods.md §0).

``P`` is a ``p x k`` matrix with i.i.d. entries ``+-1/sqrt(k)`` (Rademacher) or ``N(0, 1/k)``
(Gaussian), or a sparse JL / CountSketch matrix (``"sparse"``, the default: each input coordinate goes
to one random output coordinate with a random sign), so ``E[(x P) . (y P)] = x . y``. The sparse
kind costs O(p) per vector instead of O(p k), which matters because regenerating a dense P for every
batch of gradients costs more than the gradients themselves on small models. It is never held in memory: rows are produced in
fixed blocks of :data:`BLOCK_ROWS`, each from its own generator seeded by ``(seed, block index)``,
so the same ``(seed, k, kind)`` always gives the same P whatever the chunking of the inputs, and
``x P`` is accumulated block by block. Memory is ``BLOCK_ROWS x k`` floats at a time.

The sparse kind's hashing arrays for a whole ``[offset, offset + p)`` span are kept in a small cache
(:func:`sparse_sketch`, up to :data:`SKETCH_CACHE_COORDS` coordinates in all), because a query
projects one gradient at a time and regenerating ``p / BLOCK_ROWS`` generators per call cost more than
the gradient itself on small LMs. Cached or not, the arrays are the same.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import torch

from airsearch.errors import InputError

BLOCK_ROWS = 4096
ProjectionKind = Literal["sparse", "rademacher", "gaussian"]
_BITS = torch.arange(8, dtype=torch.uint8)
SKETCH_CACHE_COORDS = 13_000_000  # cached (bucket, sign) pairs in all: 13M x 12 bytes = 156 MB at most
_SKETCH_LOCK = threading.Lock()  # the server projects from several threads
_SKETCHES: OrderedDict[tuple[int, int, int, int], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()


@dataclass(frozen=True)
class Projector:
    """``x -> x P`` for ``x`` of shape ``[n, p]``; ``dim=None`` is the identity (exact vectors)."""

    dim: int | None = 4096
    seed: int = 0
    kind: ProjectionKind = "sparse"
    normalize: bool = False

    def describe(self) -> dict[str, Any]:
        return {"dim": self.dim, "seed": self.seed, "kind": self.kind, "normalize": self.normalize}

    def output_dim(self, p: int) -> int:
        return p if self.dim is None else self.dim

    def block(self, index: int, rows: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Rows ``index*BLOCK_ROWS ...`` of P (``rows`` of them), as float32 ``[rows, k]``."""
        k = int(self.dim)  # type: ignore[arg-type]
        gen = self._generator(index)
        if self.kind == "sparse":
            buckets, signs = self._sketch(index, rows)
            out = torch.zeros(rows, k)
            out[torch.arange(rows), buckets] = signs
        elif self.kind == "gaussian":
            out = torch.randn((rows, k), generator=gen) / k**0.5
        elif self.kind == "rademacher":
            nbytes = (k + 7) // 8
            raw = torch.randint(0, 256, (rows, nbytes), generator=gen, dtype=torch.uint8)
            bits = ((raw.unsqueeze(-1) >> _BITS) & 1).reshape(rows, nbytes * 8)[:, :k]
            out = bits.to(torch.float32).mul_(2.0 / k**0.5).sub_(1.0 / k**0.5)
        else:
            raise InputError(f"unknown projection kind {self.kind!r}")
        return out.to(device)

    def _generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + index)

    def _sketch(self, index: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """CountSketch block: output bucket and sign of each of ``rows`` input coordinates."""
        gen = self._generator(index)
        buckets = torch.randint(0, int(self.dim), (BLOCK_ROWS,), generator=gen)[:rows]  # type: ignore[arg-type]
        signs = torch.randint(0, 2, (BLOCK_ROWS,), generator=gen, dtype=torch.int8)[:rows].float() * 2 - 1
        return buckets, signs

    def project(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``x P[offset : offset + p]`` for ``x`` ``[n, p]``; ``offset`` must be a block boundary.

        ``offset`` lets a caller project a long vector in column pieces and add the results.
        """
        if self.dim is None:
            out = x.float()
        else:
            if offset % BLOCK_ROWS:
                raise ValueError(f"offset {offset} is not a multiple of {BLOCK_ROWS}")
            x = x.float()
            out = torch.zeros(x.shape[0], self.dim, device=x.device)
            if self.kind == "sparse":  # O(p) hashing arrays, one scatter-add
                buckets, signs = sparse_sketch(self, offset, x.shape[1])
                out.index_add_(1, buckets.to(x.device), x * signs.to(x.device))
            else:
                for start in range(0, x.shape[1], BLOCK_ROWS):
                    piece = x[:, start : start + BLOCK_ROWS]
                    out.addmm_(piece, self.block((offset + start) // BLOCK_ROWS, piece.shape[1], x.device))
        return unit_normalize(out) if self.normalize else out

    __call__ = project


def sparse_sketch(projector: Projector, offset: int, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CountSketch buckets (int64, the index type ``index_add_`` is fast with) and signs (float32, +-1;
    converting them per call cost 6x the scatter itself) of input coordinates ``offset ... offset + p``
    of ``projector``'s sparse P (``offset`` a block boundary), from a bounded cache: the most recently
    used spans are kept while their coordinates total at most :data:`SKETCH_CACHE_COORDS`."""
    key = (projector.seed, int(projector.dim), offset, p)  # type: ignore[arg-type]
    with _SKETCH_LOCK:
        hit = _SKETCHES.get(key)
        if hit is not None:
            _SKETCHES.move_to_end(key)
            return hit
    parts = [
        projector._sketch((offset + start) // BLOCK_ROWS, min(BLOCK_ROWS, p - start))
        for start in range(0, p, BLOCK_ROWS)
    ]
    made = (torch.cat([b for b, _ in parts]).to(torch.int64), torch.cat([s for _, s in parts]).float())
    if p <= SKETCH_CACHE_COORDS:
        with _SKETCH_LOCK:
            _SKETCHES[key] = made
            while sum(b.numel() for b, _ in _SKETCHES.values()) > SKETCH_CACHE_COORDS:
                _SKETCHES.popitem(last=False)
    return made


def unit_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows scaled to unit L2 norm (a zero row stays zero)."""
    return x / x.norm(dim=-1, keepdim=True).clamp(min=eps)
