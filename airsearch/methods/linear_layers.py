"""Inputs and output gradients of the ``torch.nn.Linear`` layers behind a parameter set (methods.md §0a).

For a Linear layer with weight ``W`` (out x in) the per-example gradient of the response NLL ``L(z)``
is ``G(z) = sum_t d_t a_t^T`` over token positions t, where ``a_t`` is the layer's input (a trailing
1 appended when the bias is in the parameter set, so ``G = [dL/dW | dL/db]``) and
``d_t = dL/d(output_t)``. One batched forward pass with forward hooks records every ``a``, and one
backward pass of ``sum_z L(z)`` with respect to the recorded outputs gives every ``d``: row b of
``d`` is example b's own ``dL/d output`` because the examples do not interact.

Both K-FAC / EK-FAC fitting (:mod:`airsearch.methods.kfac`) and the per-example gradients of Linear-only
parameter sets (:meth:`airsearch.methods.gradients.GradientModel.per_example_grads`) read the layers
through :func:`layer_activations`; this is the one place that hooks them.

Covered parameters: weights (and biases) of ``torch.nn.Linear`` modules, which includes the attention
and MLP projections of HF causal LMs and the ``lora_A`` / ``lora_B`` layers of peft LoRA adapters.
Anything else (embeddings, norms, GPT-2's ``Conv1D``, a Linear applied more than once per forward)
is refused by name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch.func import functional_call

from airsearch.errors import InputError

TargetsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class GradientModel(Protocol):
    """What this module reads of a :class:`airsearch.methods.gradients.GradientModel` (structural, so
    this module does not import the one that builds on it)."""

    model: Any
    param_names: list[str]
    params: dict[str, torch.Tensor]
    frozen: dict[str, torch.Tensor]

    @property
    def device(self) -> torch.device: ...


@contextlib.contextmanager
def eager_eval(model: Any, *, attention: bool = True) -> Iterator[None]:
    """Eval mode and (``attention``) eager attention (SDPA has no vmap batching rule on CPU); both
    restored after. Nothing is switched that is already so: a model walk per switch costs more than
    a query gradient's forward pass on a small LM."""
    was = model.training
    config = getattr(model, "config", None)
    attn = getattr(config, "_attn_implementation", None)
    switch = attention and attn not in (None, "eager") and hasattr(model, "set_attn_implementation")
    if was:
        model.eval()
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(attn)
        if was:
            model.train(True)


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


def _uncovered(gm: GradientModel) -> tuple[dict[str, dict[str, str]], list[str]]:
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
    return found, unsupported


def linear_blocks(gm: GradientModel) -> list[LinearBlock]:
    """The Linear modules behind ``gm``'s parameters; refuses any parameter this module does not cover."""
    found, unsupported = _uncovered(gm)
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
    modules = dict(gm.model.named_modules())
    return [
        LinearBlock(
            mod_name,
            parts["weight"],
            parts.get("bias"),
            modules[mod_name].out_features,
            modules[mod_name].in_features,
        )
        for mod_name, parts in found.items()
    ]


def linear_blocks_or_none(gm: GradientModel) -> list[LinearBlock] | None:
    """:func:`linear_blocks` when every parameter is covered and owned by one module only, else None."""
    found, unsupported = _uncovered(gm)
    if unsupported or not found:
        return None
    owners: dict[int, int] = {}
    for _, module in gm.model.named_modules(remove_duplicate=False):
        for p in module.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    named = dict(gm.model.named_parameters())
    if any(owners.get(id(named[n]), 0) != 1 for n in gm.param_names):
        return None  # a shared (tied) weight: its gradient sums over modules the hooks do not see
    return linear_blocks(gm)


class LayerReuseError(RuntimeError):
    """Internal signal, never shown to a user: a covered Linear ran more or less than once in a forward
    pass. The per-example gradient routes catch it and fall back to ``vmap``; K-FAC fitting turns it
    into an :class:`~airsearch.errors.InputError` (:func:`airsearch.methods.kfac.fit_factors`)."""


@dataclass
class LayerActivations:
    """One batch: ``{module: (a [b, t, cols], d [b, t, out])}`` in float32 and the ``[b, t]`` token mask.

    ``a`` and ``d`` are zero on padding.
    """

    stats: dict[str, tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor

    def per_example_grads(self, block: LinearBlock, out: torch.Tensor | None = None) -> torch.Tensor:
        """``[b, out, cols]``: ``G(z) = sum_t d_t a_t^T`` of every example in the batch, written into
        ``out`` when given (it may be a strided view, e.g. columns of a flattened gradient row)."""
        a, d = self.stats[block.module]
        return torch.bmm(d.transpose(1, 2), a, out=out)


@dataclass
class _Capture:
    inputs: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    outputs: dict[str, list[torch.Tensor]] = field(default_factory=dict)


def _hooks(gm: GradientModel, blocks: Sequence[LinearBlock], capture: _Capture) -> list[Any]:
    modules = dict(gm.model.named_modules())
    handles = []
    for block in blocks:

        def hook(module: Any, args: tuple, output: torch.Tensor, name: str = block.module) -> None:
            capture.inputs.setdefault(name, []).append(args[0].detach())
            capture.outputs.setdefault(name, []).append(output)

        handles.append(modules[block.module].register_forward_hook(hook))
    return handles


def layer_activations(
    gm: GradientModel,
    ids: torch.Tensor,
    labels: torch.Tensor,
    lengths: torch.Tensor,
    blocks: Sequence[LinearBlock],
    targets: TargetsFn | None = None,
) -> LayerActivations:
    """Inputs ``a`` and output gradients ``d`` of ``blocks`` for one right-padded batch.

    ``d`` is the gradient of ``sum_z L(z)`` (each example's own mean response NLL) with respect to each
    module's output. ``targets(logits, labels)`` may replace the labels before the loss (the sampled
    Fisher of K-FAC). Right padding needs no attention mask under a causal model (padding never changes
    the logits of real positions), as in :mod:`airsearch.methods.gradients`.
    """
    from airsearch.lm import masked_token_nll

    mask = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths.to(ids.device)[:, None]).to(
        gm.device
    )
    covered = {b.weight for b in blocks} | {b.bias for b in blocks if b.bias}
    params = {n: (p.detach().requires_grad_(True) if n in covered else p) for n, p in gm.params.items()}
    capture = _Capture()
    handles = _hooks(gm, blocks, capture)
    try:
        with eager_eval(gm.model), torch.enable_grad():
            kwargs = {"input_ids": ids, "use_cache": False}
            logits = functional_call(gm.model, (params, gm.frozen), (), kwargs, strict=False).logits
            loss = masked_token_nll(logits, targets(logits, labels) if targets else labels, "mean").sum()
            outs = []
            for block in blocks:
                runs = len(capture.outputs.get(block.module, []))
                if runs != 1:
                    raise LayerReuseError(
                        f"module {block.module} ran {runs} times in one forward pass; K-FAC needs each "
                        "covered Linear applied exactly once"
                    )
                outs.append(capture.outputs[block.module][0])
            grads = torch.autograd.grad(loss, outs, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    stats = {}
    fmask = mask[..., None].float()
    for block, out, d in zip(blocks, outs, grads, strict=True):
        a = capture.inputs[block.module][0].float() * fmask
        if block.bias:
            a = torch.cat([a, fmask], dim=-1)
        d = torch.zeros_like(out, dtype=torch.float32) if d is None else d.float() * fmask
        stats[block.module] = (a, d)
    return LayerActivations(stats, mask)
