"""Method specs of the eval commands (``dda:beta=0.5,debias=eq9``) and the row names that say what ran.

A spec is ``NAME`` or ``NAME:key=value[,key=value]`` (``airrep:FOLDER`` / ``base:FOLDER`` /
``hybrid:FOLDER`` name an encoder folder instead: any method whose plug-in takes an ``encoder``).
``NAME`` is a method of the one registry (:func:`airsearch.methods.plugin.method_names`: the search
baselines ``airrep``, ``base``, ``bm25``, ``hybrid``, ``random``, the attribution methods, and any
registered plug-in), or ``daunce-bb`` / ``daunce-wb`` (Daunce's black-box fine-tunes, Daunce Table 2, or
its white-box Eq. 5 run). A method accepts the options its plug-in declares
(``MethodPlugin.spec_options``, typed by its options dataclass; :func:`spec_options`); the rest of its
:class:`~airsearch.methods.registry.MethodConfig` comes from the eval config.

The row name of a method (:func:`run_label`) says what ran: for a method that runs over checkpoints
(its plug-in's ``checkpoints``), how many its gradients were taken on (``tracin@1ckpt``), DDA's β and
debias reading, K-FAC / EK-FAC preconditioning
(``tracin@1ckpt:precondition=ekfac``, methods.md §0a), the parameters and projection
(``gradcos@1ckpt:proj_dim=384``), Daunce's variant (``daunce-bb`` / ``daunce-wb``); a search
baseline's encoder folder by its name (``airrep:enc_a``) or its spec (``bm25:text=response``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from airsearch.indexers.search_methods import BM25_TEXTS

from airsearch.config import coerce_value
from airsearch.errors import InputError
from airsearch.methods.names import PRECONDITION_KINDS
from airsearch.methods.plugin import get_plugin, method_names
from airsearch.methods.registry import METHOD_FIELDS, MethodConfig


class EvalOptions(Protocol):
    """The options of :class:`airsearch.trainers.evaluation.common.EvalConfig` a method spec reads
    (structural, so this module does not import the one that validates specs with it)."""

    lm: str | None
    encoder: str | None
    base_encoder: str
    proj_dim: int
    params: str
    seed: int
    daunce_run: str | None
    daunce_models: int
    daunce_lr: float


DAUNCE_VARIANTS = ("daunce-bb", "daunce-wb")
SPEC_PARAMS = ("all", "linear", "lora")  # ``names:PAT`` holds ':' and ',', so it is given with --params only


def spec_options(name: str) -> dict[str, Any]:
    """The options a spec of method ``name`` may set, with their types: those its plug-in declares
    (none for an unknown name or a Daunce variant)."""
    return get_plugin(name).option_types() if name in method_names() else {}


def needs_lm(spec: str) -> bool:
    """Whether the method of ``spec`` runs on the target LM: every method but the search baselines (an
    unknown name too: it is refused when the methods are built)."""
    name = spec.partition(":")[0]
    return name in DAUNCE_VARIANTS or name not in method_names() or get_plugin(name).needs_lm


def encoder_folder(spec: str, cfg: EvalOptions) -> str:
    """The encoder folder of an encoder method's spec: ``NAME:FOLDER``, else the eval config's (``airrep``:
    the trained ``encoder``; ``base``: ``base_encoder``; ``hybrid``: ``encoder``, else ``base_encoder``);
    ``""`` when none is given."""
    name = spec.partition(":")[0]
    given = method_spec_options(spec).get("encoder")
    if given:
        return str(given)
    if name == "airrep":
        return cfg.encoder or ""
    return (cfg.encoder if name == "hybrid" else None) or cfg.base_encoder


SPEC_PRECONDITION = PRECONDITION_KINDS
_LABEL_ORDER = ("beta", "debias", "precondition", "damping", "params", "lora_rank", "proj_dim")


def method_spec_options(spec: str) -> dict[str, Any]:
    """The ``key=value[,key=value]`` options of a method spec such as ``dda:beta=0,debias=eq9``.

    Only the options of :func:`spec_options` are accepted; anything else is refused with the spec named.
    """
    name, _, rest = spec.partition(":")
    if not rest:
        return {}
    allowed = spec_options(name)
    if "encoder" in allowed and "=" not in rest:  # NAME:FOLDER names an encoder folder
        return {"encoder": rest}
    opts: dict[str, Any] = {}
    for part in rest.split(","):
        key, eq, value = part.partition("=")
        if not eq or key not in allowed:
            known = ", ".join(f"{k}=..." for k in allowed) or "none"
            raise InputError(
                f"method {spec!r}: unknown option {part!r} (options of {name!r}: {known})", field="methods"
            )
        try:
            opts[key] = coerce_value(value, allowed[key])
        except InputError as e:
            raise InputError(f"method {spec!r}: {key} {e.message}", field="methods") from None
    choices = {"params": SPEC_PARAMS, "text": BM25_TEXTS, "precondition": SPEC_PRECONDITION}
    for key, allowed_values in choices.items():
        if key in opts and opts[key] not in allowed_values:
            raise InputError(
                f"method {spec!r}: {key} must be one of {list(allowed_values)}, got {opts[key]!r}",
                field="methods",
            )
    return opts


def method_config(
    cfg: EvalOptions, spec: str, *, batch_size: int = 8, max_length: int | None = None
) -> MethodConfig:
    """The registry config of an attribution-method spec (``dda``, ``dda:beta=0``, ``daunce-wb``) under
    ``cfg``; ``max_length`` is the target LM's token budget (the gold's, in ``eval lds``)."""
    name = spec.partition(":")[0]
    opts = method_spec_options(spec)
    method = "daunce" if name in DAUNCE_VARIANTS else name
    # a registered plug-in's own options (not MethodConfig fields) travel as its method_options
    extra = [f"{k}={opts.pop(k)}" for k in list(opts) if k not in METHOD_FIELDS]
    return MethodConfig(
        method=method,  # type: ignore[arg-type]  # checked against METHOD_NAMES by MethodConfig
        lm=cfg.lm,
        proj_dim=opts.pop("proj_dim", cfg.proj_dim),
        params=opts.pop("params", cfg.params),
        seed=cfg.seed,
        daunce_run=None if name == "daunce-bb" else cfg.daunce_run,
        daunce_models=cfg.daunce_models,
        daunce_lr=cfg.daunce_lr,
        batch_size=batch_size,
        max_length=max_length,
        method_options=extra,
        **opts,
    )


def is_whitebox_daunce(spec: str, cfg: EvalOptions) -> bool:
    """``daunce-wb``, or plain ``daunce`` with a finished white-box run given."""
    name = spec.partition(":")[0]
    return name == "daunce-wb" or (name == "daunce" and bool(cfg.daunce_run))


def run_label(
    spec: str,
    cfg: EvalOptions,
    mcfg: MethodConfig | None,
    *,
    n_checkpoints: int = 0,
    has_base: bool = False,
) -> str:
    """The row name of ``spec``: what ran (see the module docstring). ``mcfg`` is the method's registry
    config (``None``: a search baseline's); ``n_checkpoints`` the models in memory its gradients are
    taken on (0: the checkpoint folders ``mcfg`` names, else the LM alone)."""
    name, _, rest = spec.partition(":")
    if mcfg is None or not get_plugin(mcfg.method).needs_lm:  # a search baseline: its encoder, or its spec
        if rest and "=" not in rest and "encoder" in spec_options(name):
            return f"{name}:{Path(rest).name}"
        return spec
    if mcfg.method == "daunce":
        return "daunce-wb" if is_whitebox_daunce(spec, cfg) else "daunce-bb"
    if mcfg.method == "repsim":
        return "repsim"
    plugin = get_plugin(mcfg.method)
    ran_on = n_checkpoints or len(mcfg.checkpoints) or 1  # the models the plug-in's build runs over
    head = f"{mcfg.method}@{ran_on}ckpt" if plugin.checkpoints else mcfg.method
    shown: dict[str, Any] = {}
    if mcfg.method == "dda":
        if has_base and mcfg.beta != 0:
            shown.update(beta=f"{mcfg.beta:g}", debias=mcfg.debias)
        else:
            shown["beta"] = "0"  # no debias term ran: no base model, or beta 0
    if mcfg.precondition != "none":
        shown["precondition"] = mcfg.precondition
        if mcfg.damping is not None:
            shown["damping"] = f"{mcfg.damping:g}"
    if mcfg.params != "all":
        shown["params"] = mcfg.params
        if mcfg.params == "lora" and mcfg.lora_rank != MethodConfig.lora_rank:
            shown["lora_rank"] = mcfg.lora_rank
    if mcfg.proj_dim:
        shown["proj_dim"] = mcfg.proj_dim
    extra = mcfg.extra_options()  # a registered plug-in's own options, in name order
    order = (*_LABEL_ORDER, *sorted(extra))
    shown.update(extra)
    opts = ",".join(f"{k}={shown[k]}" for k in order if k in shown)
    return f"{head}:{opts}" if opts else head
