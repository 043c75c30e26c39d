"""Per-example and per-token gradients of the masked response NLL (methods.md §0), with torch.func.

``g(z, th) = grad_th L(z, th)`` where L is the mean NLL over the response tokens
(:func:`airsearch.lm.masked_token_nll`). Gradients are taken on a chosen parameter set:

- ``all``: every parameter (tiny models);
- ``names``: parameters whose name matches any of the given glob patterns or substrings;
- ``linear``: the weights and biases of every ``torch.nn.Linear`` but the output head (the attention
  and MLP projections of a transformer): the set K-FAC / EK-FAC preconditioning covers;
- ``lora``: LoRA adapters. A model that already carries LoRA adapters (a peft model) gives the
  gradients of its adapter weights (A and B). A plain model gets fresh adapters on ``lora_targets``
  with a seeded random A and **B = 0**, and the gradient is taken on **B only**: with B = 0 the
  adapted model computes exactly the same function as the plain one (so the gradient is the true one
  at th), and the gradient of ``B`` (out x r) equals ``dL/dW @ A^T``: the full weight gradient
  multiplied by a fixed random r-dim matrix on its input side, a LoGra-style factored projection.
  A's gradient would be zero at B = 0, which is why it is not used.

Implementation: the model is called through ``torch.func.functional_call`` with the chosen
parameters as inputs; per-example gradients are ``vmap(grad(loss))`` over chunks of examples, and
per-token gradients (HAIF) are one forward pass per example with ``vjp`` and a ``vmap`` of the
pullback over the one-hot basis of its response tokens (no Python loop over tokens). The model is
put in eval mode (no dropout), and batches are right-padded, so no attention mask is passed: under a
causal mask, right padding never changes the logits of real positions, and the mask would need
data-dependent control flow that vmap cannot trace.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch.func import functional_call, grad, vjp, vmap

from airsearch.errors import InputError
from airsearch.methods.linear_layers import (
    LayerReuseError,
    eager_eval,
    layer_activations,
    linear_blocks_or_none,
)

ParamKind = Literal["all", "names", "lora", "linear"]
DEFAULT_LORA_TARGETS = ("q_proj", "v_proj")


@dataclass(frozen=True)
class ParamSet:
    """Which parameters gradients are taken on; recorded in every stored-vector manifest."""

    kind: ParamKind = "all"
    patterns: tuple[str, ...] = ()
    lora_rank: int = 8
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    lora_seed: int = 0

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "names":
            out["patterns"] = list(self.patterns)
        if self.kind == "lora":
            out.update(rank=self.lora_rank, targets=list(self.lora_targets), seed=self.lora_seed)
        return out

    @classmethod
    def parse(cls, text: str, **kwargs: Any) -> ParamSet:
        """``"all"``, ``"lora"``, ``"linear"`` or ``"names:PAT1,PAT2"`` (the CLI's ``--params`` value)."""
        if text in ("all", "lora", "linear"):
            return cls(kind=text, **kwargs)  # type: ignore[arg-type]
        if text.startswith("names:") and len(text) > 6:
            return cls(kind="names", patterns=tuple(p for p in text[6:].split(",") if p), **kwargs)
        raise InputError(
            f"expected 'all', 'lora', 'linear' or 'names:PATTERN[,PATTERN...]', got {text!r}", field="params"
        )


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) or p in name for p in patterns)


def _attach_zero_lora(model: Any, spec: ParamSet) -> Any:
    """Wrap a plain model in fresh LoRA adapters: seeded random A, B = 0, no dropout."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        r=spec.lora_rank,
        lora_alpha=spec.lora_rank,
        lora_dropout=0.0,
        target_modules=list(spec.lora_targets),
        bias="none",
    )
    try:
        wrapped = get_peft_model(model, cfg)
    except ValueError as e:
        raise InputError(f"cannot attach LoRA adapters: {e}", field="lora_targets") from None
    gen = torch.Generator().manual_seed(spec.lora_seed)
    with torch.no_grad():
        for name, p in sorted(wrapped.named_parameters()):
            if "lora_A" in name:
                a = torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5
                p.copy_(a.to(p.dtype))
            elif "lora_B" in name:
                p.zero_()
    return wrapped


@dataclass
class GradientModel:
    """A model prepared for functional gradients: the chosen parameters and everything else frozen."""

    model: Any
    param_names: list[str]
    params: dict[str, torch.Tensor]
    frozen: dict[str, torch.Tensor]
    spec: ParamSet = field(default_factory=ParamSet)
    _linear_path: list[Any] | None = field(default=None, repr=False)
    _own: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.params.values())

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    # ------------------------------------------------------------------------------ losses
    def _logits(self, params: dict[str, torch.Tensor], input_ids: torch.Tensor) -> torch.Tensor:
        out = functional_call(
            self.model, (params, self.frozen), (), {"input_ids": input_ids, "use_cache": False}, strict=False
        )
        return out.logits

    def example_loss(
        self, params: dict[str, torch.Tensor], input_ids: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """L(z, th) of one unbatched, right-padded example (``[t]`` ids and labels)."""
        from airsearch.lm import masked_token_nll

        return masked_token_nll(self._logits(params, input_ids[None]), labels[None], "mean")[0]

    def token_losses(
        self, params: dict[str, torch.Tensor], input_ids: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Per-position NLL ``[t-1]`` of one example (zero where the target is masked)."""
        from airsearch.lm import masked_token_nll

        return masked_token_nll(self._logits(params, input_ids[None]), labels[None], "none")[0]

    # ----------------------------------------------------------------------------- gradients
    def flatten(self, grads: dict[str, torch.Tensor], batch_dims: int = 1) -> torch.Tensor:
        """Concatenate a gradient dict into ``[..., p]`` rows in :attr:`param_names` order."""
        lead = next(iter(grads.values())).shape[:batch_dims]
        return torch.cat([grads[n].reshape(*lead, -1) for n in self.param_names], dim=-1)

    def per_example_grads(self, batch: dict[str, torch.Tensor], chunk_size: int = 8) -> torch.Tensor:
        """``[b, p]``: row i is ``grad_th L(z_i, th)``.

        When every parameter is the weight or bias of a Linear layer (``linear``, ``lora`` and most
        ``names`` sets) the rows come from one batched forward/backward and the layers' inputs and
        output gradients, ``G(z) = sum_t d_t a_t^T`` (:mod:`airsearch.methods.linear_layers`), ``chunk_size``
        examples per pass. Otherwise they come from ``vmap(grad(L))`` over the examples. Both give the
        same gradients (tested against a per-example loop).
        """
        ids, labels = right_trim(batch)
        ids, labels = ids.to(self.device), labels.to(self.device)
        if self.linear_route():
            lengths = batch["attention_mask"].sum(1)
            # one [b, p] buffer that every chunk's layers write into: no per-layer or per-chunk copies
            out = torch.empty(ids.shape[0], self.num_params, device=self.device)
            try:
                for i in range(0, ids.shape[0], chunk_size):
                    rows = slice(i, i + chunk_size)
                    self._linear_grads(ids[rows], labels[rows], lengths[rows], out[rows])
                return out
            except LayerReuseError:
                self._linear_path = []  # a layer applied twice per forward: the vmap route handles it
        if ids.shape[0] == 1:  # one example (a query vector): plain autograd, without vmap's set-up
            return self._one_example_grad(ids[0], labels[0])
        fn = vmap(grad(self.example_loss), in_dims=(None, 0, 0), chunk_size=chunk_size)
        with eager_eval(self.model):
            return self.flatten(fn(self.params, ids, labels)).float()

    def _one_example_grad(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``[1, p]``: ``grad_th L(z, th)`` of one example by reverse-mode autograd (what the vmap
        route computes for a batch of one; a parameter the loss does not reach gets a zero gradient).

        When the model's own parameters are the selected ones and require grad (a loaded model), the
        model is called as it is: ``functional_call``'s swap of every parameter in and out, and the
        attention switch that only vmap needs, cost as much as the forward pass on a small LM."""
        from airsearch.lm import masked_token_nll

        own = self._own_parameters()
        if own is None:
            params = {n: t.detach().requires_grad_(True) for n, t in self.params.items()}
            wrt = [params[n] for n in self.param_names]
            with eager_eval(self.model), torch.enable_grad():
                loss = self.example_loss(params, ids, labels)
                grads = torch.autograd.grad(loss, wrt, allow_unused=True)
        else:
            wrt = own
            with eager_eval(self.model, attention=False), torch.enable_grad():
                logits = self.model(input_ids=ids[None], use_cache=False).logits
                loss = masked_token_nll(logits, labels[None], "mean")[0]
                grads = torch.autograd.grad(loss, wrt, allow_unused=True)
        rows = [
            (g if g is not None else torch.zeros_like(w)).reshape(1, -1)
            for g, w in zip(grads, wrt, strict=True)
        ]
        return torch.cat(rows, dim=-1).float()

    def _own_parameters(self) -> list[torch.Tensor] | None:
        """The model's own parameters in :attr:`param_names` order, when each one requires grad and
        holds the selected tensor (the same storage); ``None`` otherwise."""
        if self._own is None:
            self._own = dict(self.model.named_parameters())
        own = [self._own.get(n) for n in self.param_names]
        if any(
            p is None or not p.requires_grad or p.data_ptr() != self.params[n].data_ptr()
            for p, n in zip(own, self.param_names, strict=True)
        ):
            return None
        return own  # type: ignore[return-value]

    def linear_route(self) -> bool:
        """Whether per-example gradients come from hooked Linear layers (every parameter is the
        weight or bias of a Linear applied once per forward)."""
        if self._linear_path is None:
            self._linear_path = linear_blocks_or_none(self) or []
        return bool(self._linear_path)

    def per_example_dots(
        self, batch: dict[str, torch.Tensor], queries: torch.Tensor, chunk_size: int = 8
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(G Q^T [b, q], ||G||^2 [b])`` for the batch's gradient rows ``G`` and query rows ``Q``
        ``[q, p]``, one Linear layer at a time, so the ``[b, p]`` rows are never built (the
        :meth:`linear_route` only; a layer applied twice raises
        :class:`~airsearch.methods.linear_layers.LayerReuseError` and switches to the vmap route)."""
        if not self.linear_route():
            raise ValueError("per_example_dots needs the Linear-layer route")
        ids, labels = right_trim(batch)
        ids, labels = ids.to(self.device), labels.to(self.device)
        lengths = batch["attention_mask"].sum(1)
        queries = queries.to(self.device, torch.float32)
        dots = torch.zeros(ids.shape[0], queries.shape[0], device=self.device)
        sq_norms = torch.zeros(ids.shape[0], device=self.device)
        cols = self.param_slices()
        for i in range(0, ids.shape[0], chunk_size):
            rows = slice(i, i + chunk_size)
            try:
                acts = layer_activations(self, ids[rows], labels[rows], lengths[rows], self._linear_path)
            except LayerReuseError:
                self._linear_path = []
                raise
            for block in self._linear_path:
                g = acts.per_example_grads(block)
                acts.stats.pop(block.module)
                parts = [(g[..., : block.in_features] if block.bias else g, block.weight)]
                if block.bias:
                    parts.append((g[..., block.in_features], block.bias))
                for part, name in parts:
                    flat = part.reshape(part.shape[0], -1)
                    dots[rows] += flat @ queries[:, cols[name]].T
                    sq_norms[rows] += flat.square().sum(1)
        return dots, sq_norms

    def param_slices(self) -> dict[str, slice]:
        """Each parameter's columns in a flattened gradient row (:attr:`param_names` order)."""
        slices, start = {}, 0
        for n in self.param_names:
            size = self.params[n].numel()
            slices[n] = slice(start, start + size)
            start += size
        return slices

    def _linear_grads(
        self, ids: torch.Tensor, labels: torch.Tensor, lengths: torch.Tensor, out: torch.Tensor
    ) -> None:
        """Write the chunk's gradient rows into ``out`` ``[b, p]``, one Linear layer at a time."""
        acts = layer_activations(self, ids, labels, lengths, self._linear_path)
        cols = self.param_slices()
        for block in self._linear_path:
            weight = out[:, cols[block.weight]].view(-1, block.out_features, block.in_features)
            if block.bias:
                g = acts.per_example_grads(block)
                weight.copy_(g[..., : block.in_features])
                out[:, cols[block.bias]] = g[..., block.in_features]
            else:
                acts.per_example_grads(block, out=weight)
            acts.stats.pop(block.module)  # free the layer's inputs and output gradients

    def per_token_grads(
        self, input_ids: torch.Tensor, labels: torch.Tensor, chunk_size: int | None = 64
    ) -> torch.Tensor:
        """``[n_tokens, p]``: row j is ``grad_th l_j`` for response token j of one example.

        One forward pass (``vjp``), then the pullback vmapped over the one-hot basis of the
        response positions, ``chunk_size`` tokens at a time.
        """
        valid = int((labels != -100).nonzero().max()) + 1 if (labels != -100).any() else 0
        ids = input_ids[:valid].to(self.device)
        lab = labels[:valid].to(self.device)
        positions = (lab[1:] != -100).nonzero().squeeze(-1)
        if positions.numel() == 0:
            return torch.zeros(0, self.num_params, device=self.device)
        with eager_eval(self.model):
            _, pullback = vjp(lambda p: self.token_losses(p, ids, lab)[positions], self.params)
            basis = torch.eye(positions.numel(), device=self.device)
            (grads,) = vmap(pullback, chunk_size=chunk_size)(basis)
        return self.flatten(grads).float()


def prepare(lm_or_model: Any, spec: ParamSet | None = None) -> GradientModel:
    """Select the parameters of ``spec`` (a :class:`airsearch.lm.TargetLM` or a torch module).

    For ``lora`` on a plain model a LoRA-wrapped deep copy is made; the caller's model is untouched.
    """
    import copy

    spec = spec or ParamSet()
    model = getattr(lm_or_model, "model", lm_or_model)
    if spec.kind == "lora":
        if hasattr(model, "peft_config"):
            select: Callable[[str], bool] = lambda n: "lora_" in n  # noqa: E731
        else:
            model = _attach_zero_lora(copy.deepcopy(model), spec)
            select = lambda n: "lora_B" in n  # noqa: E731
    elif spec.kind == "names":
        if not spec.patterns:
            raise InputError("a 'names' parameter set needs at least one pattern", field="params")
        select = lambda n: _matches(n, spec.patterns)  # noqa: E731
    elif spec.kind == "linear":
        select = linear_parameter_names(model).__contains__
    else:
        select = lambda n: True  # noqa: E731
    model.eval()
    params: dict[str, torch.Tensor] = {}
    frozen: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        (params if select(name) else frozen)[name] = p.detach()
    for name, b in model.named_buffers():
        frozen[name] = b.detach()
    if not params:
        raise InputError(
            f"the parameter set {spec.describe()} selects no parameter of the model", field="params"
        )
    return GradientModel(model=model, param_names=list(params), params=params, frozen=frozen, spec=spec)


def linear_parameter_names(model: Any) -> set[str]:
    """Weights and biases of every ``torch.nn.Linear`` except the output head (``--params linear``).

    The head is left out: it is often tied to the input embedding, and its output-side Kronecker
    factor would be vocabulary x vocabulary.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names: set[str] = set()
    for mod_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            names.update(
                f"{mod_name}.{p}" if mod_name else p for p, _ in module.named_parameters(recurse=False)
            )
    return names


def right_trim(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's ids and labels, cut to the longest row; refuse left padding (it would shift tokens)."""
    mask = batch["attention_mask"]
    lengths = mask.sum(dim=1)
    width = int(lengths.max())
    expected = torch.arange(mask.shape[1])[None, :] < lengths[:, None]
    if not torch.equal(mask.bool().cpu(), expected):
        raise InputError("gradient batches must be right-padded (attention_mask)")
    return batch["input_ids"][:, :width], batch["labels"][:, :width]


def length_sorted_batches(n: int, lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding); each batch in input order."""
    order = sorted(range(n), key=lambda i: lengths[i])
    return [sorted(order[s : s + batch_size]) for s in range(0, n, batch_size)]
