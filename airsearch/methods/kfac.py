"""Kronecker-factored curvature of Linear layers: K-FAC and EK-FAC factors (methods.md §0a).

For a ``torch.nn.Linear`` with weight ``W`` (out x in) the per-example gradient of the response NLL
``L(z)`` is ``G(z) = sum_t d_t a_t^T`` over token positions t, with ``a_t`` the layer's input
(a trailing 1 appended when the bias is in the parameter set) and ``d_t = dL/d(output_t)``. The
Fisher / Gauss-Newton block of the layer, ``F = E_z[vec G vec G^T]``, is approximated by

- **K-FAC** (Martens & Grosse 2015; Grosse et al. 2023, Eq. 19-20): ``F ~ S (x) A`` with
  ``A = sum_tokens a a^T / n_tokens`` and ``S = sum_tokens d d^T / n_examples`` (tokens treated as
  independent, so ``A (x) S`` matches ``E_z[sum_t a_t a_t^T (x) d_t d_t^T]``). With the
  eigendecompositions ``A = Q_A diag(l_A) Q_A^T`` and ``S = Q_S diag(l_S) Q_S^T`` its eigenvalues are
  ``l_S[o] l_A[i]`` in the eigenbasis ``Q_S (x) Q_A``.
- **EK-FAC** (George et al. 2018, Eq. 12; Grosse et al. 2023, Eq. 21): the same eigenbasis, with the
  eigenvalues replaced by the second moments of the per-example gradients in it,
  ``Lambda[o, i] = E_z[(Q_S^T G(z) Q_A)[o, i]^2]`` (a second pass over the fitting sample).

Fisher kinds: ``empirical`` uses the example's own response tokens as targets; ``sampled`` draws
the targets of the response positions from the model's own predictive distribution (seeded), which
makes ``F`` the expected Fisher, i.e. the Gauss-Newton matrix of the softmax cross-entropy.

Covered parameters: weights (and biases) of ``torch.nn.Linear`` modules, which includes the
attention and MLP projections of HF causal LMs and the ``lora_A`` / ``lora_B`` layers of peft LoRA
adapters (K-FAC on the LoRA B factor is LoGra's factored K-FAC: the input factor lives in the
adapter's rank-r space). Anything else (embeddings, norms, GPT-2's ``Conv1D``, a Linear applied more
than once per forward) is refused by name. The statistics ``a`` and ``d`` come from
:func:`airsearch.methods.linear_layers.layer_activations`: one batched forward/backward per batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.methods.gradients import GradientModel, length_sorted_batches, right_trim
from airsearch.methods.linear_layers import LayerReuseError, LinearBlock, layer_activations, linear_blocks
from airsearch.methods.names import FisherKind
from airsearch.progress import progress

FactorKind = Literal["kfac", "ekfac"]
DAMPING_RULE = "0.1 x mean eigenvalue of the module"
DAMPING_FRACTION = 0.1


@dataclass
class KroneckerFactors:
    """Eigendecomposed factors of every covered module (``tensors`` keys: ``"<module>|<part>"``).

    Parts: ``qa``/``la`` (eigenvectors / eigenvalues of A), ``qs``/``ls`` (of S) and, for EK-FAC,
    ``lambda`` (the corrected eigenvalues, ``[out, cols]``).
    """

    kind: FactorKind
    fisher: FisherKind
    blocks: list[LinearBlock]
    tensors: dict[str, torch.Tensor]
    n_examples: int
    n_tokens: int

    def get(self, block: LinearBlock, part: str) -> torch.Tensor:
        return self.tensors[f"{block.module}|{part}"]

    def eigenvalues(self, block: LinearBlock) -> torch.Tensor:
        """``[out, cols]`` eigenvalues of the module's curvature block in the ``Q_S (x) Q_A`` basis."""
        if self.kind == "ekfac":
            return self.get(block, "lambda")
        return torch.outer(self.get(block, "ls"), self.get(block, "la"))


# ------------------------------------------------------------------------------------------- fitting
def _sample_targets(logits: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Labels with every scored response token replaced by a draw from the model's prediction."""
    probs = torch.softmax(logits[:, :-1].detach().float(), dim=-1)
    drawn = torch.multinomial(probs.reshape(-1, probs.shape[-1]).cpu(), 1, generator=gen).view(
        probs.shape[:2]
    )
    out = labels.clone()
    scored = labels[:, 1:] != -100
    out[:, 1:][scored] = drawn.to(labels.device)[scored]
    return out


def layer_statistics(
    gm: GradientModel,
    lm: Any,
    examples: Sequence[Example],
    blocks: Sequence[LinearBlock],
    *,
    fisher: FisherKind = "empirical",
    seed: int = 0,
    batch_size: int = 8,
    max_length: int | None = None,
    desc: str = "K-FAC statistics",
    show_progress: bool = True,
) -> Iterator[tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]]:
    """Per batch: ``{module: (a [b, t, cols], d [b, t, out])}`` and the ``[b, t]`` token mask.

    ``a`` is zero on padding; ``d`` is the gradient of ``sum_z L(z)`` (each example's own mean
    response NLL) with respect to the module's output, so row b is example b's own ``dL/d output``.
    """
    from airsearch.lm import encode_examples, tokenize_example

    max_length = max_length or lm.max_length
    lengths = [len(tokenize_example(lm.tokenizer, ex, max_length)[0]) for ex in examples]
    batches = length_sorted_batches(len(examples), lengths, batch_size)
    gen = torch.Generator().manual_seed(seed)
    targets = (lambda logits, labels: _sample_targets(logits, labels, gen)) if fisher == "sampled" else None
    for idx in progress(batches, desc=desc, unit="batch", quiet=None if show_progress else True):
        enc = encode_examples(lm, [examples[i] for i in idx], max_length)
        ids, labels = right_trim(enc)
        try:
            acts = layer_activations(
                gm, ids.to(gm.device), labels.to(gm.device), enc["attention_mask"].sum(1), blocks, targets
            )
        except LayerReuseError as e:
            raise InputError(str(e), field="params") from None
        yield acts.stats, acts.mask


def fit_factors(
    gm: GradientModel,
    lm: Any,
    examples: Sequence[Example],
    kind: FactorKind = "ekfac",
    *,
    fisher: FisherKind = "empirical",
    seed: int = 0,
    batch_size: int = 8,
    max_length: int | None = None,
    dtype: torch.dtype = torch.float32,
    show_progress: bool = True,
) -> KroneckerFactors:
    """Fit K-FAC (one pass) or EK-FAC (two passes) factors on ``examples`` (the fitting sample)."""
    if kind not in ("kfac", "ekfac"):
        raise InputError(f"unknown factor kind {kind!r}; use kfac or ekfac", field="precondition")
    if fisher not in ("empirical", "sampled"):
        raise InputError(f"unknown Fisher {fisher!r}; use empirical or sampled", field="fisher")
    if not examples:
        raise InputError("the fitting sample is empty", field="factors_samples")
    blocks = linear_blocks(gm)
    kw = {
        "fisher": fisher,
        "batch_size": batch_size,
        "max_length": max_length,
        "show_progress": show_progress,
    }
    cov_a = {b.module: torch.zeros(b.cols, b.cols, dtype=torch.float64) for b in blocks}
    cov_s = {b.module: torch.zeros(b.out_features, b.out_features, dtype=torch.float64) for b in blocks}
    n_tokens = 0
    for stats, mask in layer_statistics(
        gm, lm, examples, blocks, seed=seed, desc=f"{kind} covariances", **kw
    ):
        n_tokens += int(mask.sum())
        for name, (a, d) in stats.items():
            a2, d2 = a.reshape(-1, a.shape[-1]), d.reshape(-1, d.shape[-1])
            cov_a[name] += (a2.T @ a2).double().cpu()
            cov_s[name] += (d2.T @ d2).double().cpu()
    tensors: dict[str, torch.Tensor] = {}
    for block in blocks:
        la, qa = torch.linalg.eigh(cov_a[block.module] / max(n_tokens, 1))
        ls, qs = torch.linalg.eigh(cov_s[block.module] / len(examples))
        for part, value in (("la", la.clamp(min=0)), ("qa", qa), ("ls", ls.clamp(min=0)), ("qs", qs)):
            tensors[f"{block.module}|{part}"] = value.to(dtype).contiguous()
    if kind == "ekfac":
        lam = {b.module: torch.zeros(b.out_features, b.cols, dtype=torch.float64) for b in blocks}
        for stats, _ in layer_statistics(
            gm, lm, examples, blocks, seed=seed + 1, desc="ekfac eigenvalues", **kw
        ):
            for block in blocks:
                a, d = stats[block.module]
                qa = tensors[f"{block.module}|qa"].to(a.device, torch.float32)
                qs = tensors[f"{block.module}|qs"].to(a.device, torch.float32)
                rotated = torch.einsum("bto,btc->boc", d @ qs, a @ qa)  # Q_S^T G(z) Q_A per example
                lam[block.module] += rotated.double().square().sum(0).cpu()
        for block in blocks:
            tensors[f"{block.module}|lambda"] = (lam[block.module] / len(examples)).to(dtype).contiguous()
    return KroneckerFactors(kind, fisher, blocks, tensors, len(examples), n_tokens)
