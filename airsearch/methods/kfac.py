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
than once per forward) is refused by name. The statistics come from forward hooks (inputs) and
gradients taken with respect to the layers' outputs, one batched forward/backward per batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.func import functional_call

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.methods.gradients import GradientModel, _eval, _right_trim, length_sorted_batches
from airsearch.methods.names import FisherKind
from airsearch.progress import progress

FactorKind = Literal["kfac", "ekfac"]
DAMPING_RULE = "0.1 x mean eigenvalue of the module"
DAMPING_FRACTION = 0.1


@dataclass(frozen=True)
class LinearBlock:
    """One covered ``torch.nn.Linear``: its module name and the parameter names of its weight / bias."""

    module: str
    weight: str
    bias: str | None
    out_features: int
    in_features: int

    @property
    def cols(self) -> int:
        """Width of the gradient matrix ``[W | b]`` (input features, plus one for a bias)."""
        return self.in_features + (1 if self.bias else 0)

    def describe(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "out": self.out_features,
            "in": self.in_features,
            "bias": bool(self.bias),
        }


def linear_blocks(gm: GradientModel) -> list[LinearBlock]:
    """The Linear modules behind ``gm``'s parameters; refuses any parameter K-FAC does not cover."""
    modules = dict(gm.model.named_modules())
    found: dict[str, dict[str, str]] = {}
    unsupported: list[str] = []
    for name in gm.param_names:
        mod_name, _, attr = name.rpartition(".")
        module = modules.get(mod_name)
        if isinstance(module, torch.nn.Linear) and attr in ("weight", "bias"):
            found.setdefault(mod_name, {})[attr] = name
        else:
            unsupported.append(f"{name} ({type(module).__name__ if module is not None else 'no module'})")
    for parts in found.values():
        if "weight" not in parts:
            unsupported.append(f"{parts['bias']} (a Linear bias without its weight)")
    if unsupported:
        shown = ", ".join(unsupported[:6]) + (
            f" and {len(unsupported) - 6} more" if len(unsupported) > 6 else ""
        )
        raise InputError(
            "K-FAC / EK-FAC cover the weights and biases of torch.nn.Linear modules only (attention and "
            f"MLP projections, LoRA adapters); these parameters are not covered: {shown}. Select "
            "Linear layers with the parameter set 'linear', 'lora' or 'names:PATTERN'",
            field="params",
        )
    blocks = []
    for mod_name, parts in found.items():
        module = modules[mod_name]
        blocks.append(
            LinearBlock(mod_name, parts["weight"], parts.get("bias"), module.out_features, module.in_features)
        )
    return blocks


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
@dataclass
class _Capture:
    """Per-batch inputs and output tensors of the covered modules, recorded by forward hooks."""

    inputs: dict[str, list[torch.Tensor]]
    outputs: dict[str, list[torch.Tensor]]


def _hooks(gm: GradientModel, blocks: Sequence[LinearBlock], capture: _Capture) -> list[Any]:
    modules = dict(gm.model.named_modules())
    handles = []
    for block in blocks:

        def hook(module: Any, args: tuple, output: torch.Tensor, name: str = block.module) -> None:
            capture.inputs.setdefault(name, []).append(args[0].detach())
            capture.outputs.setdefault(name, []).append(output)

        handles.append(modules[block.module].register_forward_hook(hook))
    return handles


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
    from airsearch.lm import encode_examples, masked_token_nll, tokenize_example

    max_length = max_length or lm.max_length
    lengths = [len(tokenize_example(lm.tokenizer, ex, max_length)[0]) for ex in examples]
    batches = length_sorted_batches(len(examples), lengths, batch_size)
    gen = torch.Generator().manual_seed(seed)
    covered = {b.weight for b in blocks} | {b.bias for b in blocks if b.bias}
    for idx in progress(batches, desc=desc, unit="batch", quiet=None if show_progress else True):
        enc = encode_examples(lm, [examples[i] for i in idx], max_length)
        ids, labels = _right_trim(enc)
        ids, labels = ids.to(gm.device), labels.to(gm.device)
        mask = (torch.arange(ids.shape[1])[None, :] < enc["attention_mask"].sum(1)[:, None]).to(gm.device)
        params = {n: (p.clone().requires_grad_(True) if n in covered else p) for n, p in gm.params.items()}
        capture = _Capture({}, {})
        handles = _hooks(gm, blocks, capture)
        try:
            with _eval(gm.model), torch.enable_grad():
                kwargs = {"input_ids": ids, "use_cache": False}
                logits = functional_call(gm.model, (params, gm.frozen), (), kwargs, strict=False).logits
                targets = _sample_targets(logits, labels, gen) if fisher == "sampled" else labels
                loss = masked_token_nll(logits, targets, "mean").sum()
                outs = []
                for block in blocks:
                    if len(capture.outputs.get(block.module, [])) != 1:
                        raise InputError(
                            f"module {block.module} ran {len(capture.outputs.get(block.module, []))} times "
                            "in one forward pass; K-FAC needs each covered Linear applied exactly once",
                            field="params",
                        )
                    outs.append(capture.outputs[block.module][0])
                grads = torch.autograd.grad(loss, outs, allow_unused=True)
        finally:
            for h in handles:
                h.remove()
        stats = {}
        for block, out, d in zip(blocks, outs, grads, strict=True):
            a = capture.inputs[block.module][0].float() * mask[..., None]
            if block.bias:
                a = torch.cat([a, mask[..., None].float()], dim=-1)
            d = torch.zeros_like(out, dtype=torch.float32) if d is None else d.float() * mask[..., None]
            stats[block.module] = (a, d)
        yield stats, mask


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
