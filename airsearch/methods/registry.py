"""The one method registry: every attribution method is built by name from one :class:`MethodConfig`.

``airsearch attribute``, ``airsearch query --rerank``, the label teachers and the evaluation harness
all call :func:`load_method`; :class:`Reranker` adapts a method to the query rerank hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from airsearch.config import CommandConfig, require
from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.methods.names import (
    DEBIAS_READINGS,
    FISHER_KINDS,
    METHOD_NAMES,
    PRECONDITION_KINDS,
    FisherKind,
    MethodName,
    PreconditionKind,
    ScoreKind,
)

if TYPE_CHECKING:  # the models load when a method is built, not when its config is read
    import numpy as np

    from airsearch.lm.model import TargetLM
    from airsearch.methods.base import AttributionMethod

BLACKBOX = "Black-box Daunce (without a finished run; the evaluation harness): "


@dataclass(kw_only=True)
class PreconditionOptions(CommandConfig):
    """The K-FAC / EK-FAC options (methods.md §0a), one vocabulary for every command that runs a
    gradient method: ``attribute`` and ``eval`` (through :class:`MethodConfig`), ``query --rerank``
    and the gradient teachers of ``labels generate``.

    ``precondition`` kfac / ekfac turns a gradient method's scores into influence with the damped
    curvature, ``g_test^T (H + lambda I)^{-1} g_train`` (Grosse et al. 2023, Eq. 5); ``damping`` is
    ``lambda`` (default: 0.1 x the mean eigenvalue of each module, Kronfluence's heuristic); the
    factors are fitted on ``factors_sample`` (a corpus file) or on the command's own training rows,
    at most ``factors_samples`` of them (seeded), and kept in ``factors`` when given (fitted once per
    model and parameter set, reused after, refused on a mismatch).
    """

    precondition: PreconditionKind = field(
        default="none",
        metadata={
            "late": True,
            "help": "Hessian-aware influence: none, kfac or ekfac (Linear / LoRA parameters).",
        },
    )
    damping: float | None = field(
        default=None,
        metadata={
            "late": True,
            "help": "K-FAC / EK-FAC damping (default: 0.1 x mean eigenvalue per module).",
        },
    )
    fisher: FisherKind = field(
        default="empirical", metadata={"late": True, "help": "Fisher of the factors: empirical or sampled."}
    )
    factors: str | None = field(
        default=None,
        metadata={
            "late": True,
            "help": "Folder of K-FAC / EK-FAC factors (fitted on first use, then reused).",
        },
    )
    factors_sample: str | None = field(
        default=None,
        metadata={
            "late": True,
            "help": "Corpus file to fit the factors on (default: the command's training rows).",
        },
    )
    factors_samples: int = field(
        default=1000,
        metadata={"late": True, "help": "At most this many fitting examples (seeded; 0: all of them)."},
    )

    def validate(self) -> None:
        require(self.precondition in PRECONDITION_KINDS, "precondition", "must be none, kfac or ekfac")
        require(self.damping is None or self.damping >= 0, "damping", "must be >= 0")
        require(self.fisher in FISHER_KINDS, "fisher", "must be empirical or sampled")
        require(self.factors_samples >= 0, "factors_samples", "must be >= 0 (0: the whole sample)")

    def precondition_options(self) -> dict[str, Any]:
        """These options' values, to pass on to another config that has them (a :class:`MethodConfig`)."""
        return {name: getattr(self, name) for name in PRECONDITION_FIELDS}


PRECONDITION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PreconditionOptions))
PARAMS_HELP = "Gradient parameters: all, linear (what --precondition covers), lora, names:PAT[,PAT]."


@dataclass(kw_only=True)
class MethodConfig(PreconditionOptions):
    """Which attribution method, on which models (``attribute``, ``query --rerank``, teachers, ``eval``)."""

    method: MethodName = field(default="gradcos", metadata={"help": f"One of {', '.join(METHOD_NAMES)}."})
    lm: str | None = field(
        default=None, metadata={"help": "Target LM folder (the final / fine-tuned model)."}
    )
    base_lm: str | None = field(
        default=None, metadata={"help": "DDA: the LM before fine-tuning (th0, the debias term)."}
    )
    checkpoints: list[str] = field(
        default_factory=list,
        metadata={
            "help": "DDA / TracIn checkpoint folders (repeatable); default: --lm alone.",
            "flag": "--checkpoint",
        },
    )
    beta: float = field(default=1.0, metadata={"help": "DDA debias weight."})
    debias: str = field(
        default="eq11",
        metadata={
            "help": "DDA debias reading: eq11 (the base model's own score) or eq9 (test gradient at the "
            "fine-tuned model, train gradient at the base)."
        },
    )
    params: str = field(default="all", metadata={"help": PARAMS_HELP})
    lora_rank: int = field(
        default=8, metadata={"help": "Rank of the gradient LoRA adapters (--params lora)."}
    )
    proj_dim: int = field(default=0, metadata={"help": "JL projection dimension; 0 = exact gradients."})
    seed: int = field(default=0, metadata={"help": "Seed of the JL projection (and of black-box Daunce)."})
    daunce_run: str | None = field(default=None, metadata={"help": "Daunce: folder of a finished run."})
    daunce_kind: ScoreKind = field(default="corr", metadata={"help": "Daunce score: corr or cov."})
    daunce_models: int = field(default=8, metadata={"help": BLACKBOX + "K perturbed models.", "cli": False})
    daunce_ratio: float = field(
        default=0.5, metadata={"help": BLACKBOX + "share of the training set each sees.", "cli": False}
    )
    daunce_lr: float = field(default=1e-3, metadata={"help": BLACKBOX + "learning rate.", "cli": False})
    daunce_epochs: int = field(default=1, metadata={"help": BLACKBOX + "epochs.", "cli": False})
    batch_size: int = field(default=8, metadata={"help": "Examples per gradient batch."})
    max_length: int | None = field(
        default=None, metadata={"help": "Tokens per example (default: the LM's own, 512 from a folder)."}
    )

    def validate(self) -> None:
        super().validate()
        require(self.method in METHOD_NAMES, "method", f"must be one of {list(METHOD_NAMES)}")
        require(self.debias in DEBIAS_READINGS, "debias", f"must be one of {list(DEBIAS_READINGS)}")
        require(self.proj_dim >= 0, "proj_dim", "must be >= 0")
        require(self.lora_rank >= 1, "lora_rank", "must be at least 1")
        require(self.daunce_kind in ("corr", "cov"), "daunce_kind", "must be corr or cov")
        require(self.daunce_models >= 2, "daunce_models", "Daunce needs at least 2 perturbed models")
        require(0 < self.daunce_ratio <= 1, "daunce_ratio", "must be in (0, 1]")
        require(self.daunce_lr > 0, "daunce_lr", "must be positive")
        require(self.daunce_epochs >= 1, "daunce_epochs", "must be at least 1")
        require(self.batch_size >= 1, "batch_size", "must be at least 1")
        require(self.max_length is None or self.max_length >= 2, "max_length", "must be at least 2")


METHOD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(MethodConfig))


def method_config_from(options: Any, method: str, **overrides: Any) -> MethodConfig:
    """The :class:`MethodConfig` of ``method`` from a command config that flattens the method options
    into its own flags: every :class:`MethodConfig` field that ``options`` also has (same name, same
    meaning), then ``overrides``. One conversion for ``query --rerank``, ``query --method``,
    ``explain`` and the method columns, so a command that adds a method field gets it passed on."""
    values = {n: getattr(options, n) for n in METHOD_FIELDS if n != "method" and hasattr(options, n)}
    values.update(overrides)
    if isinstance(values.get("checkpoints"), tuple):
        values["checkpoints"] = list(values["checkpoints"])
    return MethodConfig(method=method, **values)  # type: ignore[arg-type]


def load_method(
    cfg: MethodConfig,
    *,
    lm: TargetLM | None = None,
    checkpoints: Sequence[TargetLM] = (),
    base_lm: TargetLM | None = None,
    train: Sequence[Example] | None = None,
    fit_sample: Sequence[Example] | None = None,
    show_progress: bool = True,
) -> AttributionMethod:
    """The attribution method ``cfg.method`` (methods.md §2-§5) on the models ``cfg`` names.

    Models already in memory take the place of the folders: ``lm`` of ``cfg.lm``, ``checkpoints`` of
    ``cfg.checkpoints`` and ``base_lm`` of ``cfg.base_lm``. TracIn / grad-cos (DDA Eq. 6) and DDA
    (Eq. 9-11) run over the checkpoints (default: the LM alone); HAIF on the LM. Daunce (Eq. 6 of
    Daunce) reads the finished white-box run ``cfg.daunce_run`` (:mod:`airsearch.methods.daunce_run`;
    with an LM, queries outside the run are scored under its saved adapters); without a run it fits
    ``cfg.daunce_models`` black-box fine-tunes of the LM on ``train`` (Daunce Table 2). RepSim (DATE-LM's
    baseline) is the cosine of the LM's mean last hidden states: one forward pass, no gradient.

    With ``cfg.precondition`` kfac / ekfac the gradient methods use K-FAC / EK-FAC influence
    (methods.md §0a); the factors are fitted on ``cfg.factors_sample`` (a corpus file), else on
    ``fit_sample``, else on ``train``, or loaded from ``cfg.factors``.
    """
    from airsearch.lm import load_lm
    from airsearch.methods.gradients import ParamSet
    from airsearch.methods.projection import Projector

    def load(path: str) -> TargetLM:
        return load_lm(path, max_length=cfg.max_length or 512)

    def target() -> TargetLM | None:
        return lm if lm is not None else (load(cfg.lm) if cfg.lm else None)

    if cfg.method == "daunce":
        return _daunce(cfg, target(), train)
    if cfg.method == "repsim":
        from airsearch.methods.repsim import RepSim

        return RepSim(
            _needed(target()),
            batch_size=cfg.batch_size,
            max_length=cfg.max_length,
            show_progress=show_progress,
        )
    kw: dict[str, Any] = {
        "params": ParamSet.parse(cfg.params, lora_rank=cfg.lora_rank),
        "projector": Projector(dim=cfg.proj_dim or None, seed=cfg.seed),
        "batch_size": cfg.batch_size,
        "max_length": cfg.max_length,
        "show_progress": show_progress,
        "precondition": _precondition(cfg, fit_sample if fit_sample is not None else train),
    }
    if cfg.method == "haif" or cfg.method == "haif-t":
        from airsearch.methods.haif import HAIF

        return HAIF(_needed(target()), outer=cfg.method == "haif", **kw)
    cks = list(checkpoints) or [load(c) for c in cfg.checkpoints] or [_needed(target())]
    if cfg.method == "dda":
        from airsearch.methods.dda import DDA

        base = base_lm if base_lm is not None else (load(cfg.base_lm) if cfg.base_lm else None)
        return DDA(cks, base=base, beta=cfg.beta, debias=cfg.debias, **kw)
    from airsearch.methods.tracin import TracIn

    return TracIn(cks, normalize=cfg.method == "gradcos", **kw)


def _precondition(cfg: MethodConfig, sample: Sequence[Example] | None) -> Any:
    from airsearch.methods.precondition import Precondition

    if cfg.precondition != "none" and cfg.factors_sample:
        from airsearch.data.corpus import load_corpus

        sample = load_corpus(cfg.factors_sample).examples
    return Precondition(
        cfg.precondition,
        damping=cfg.damping,
        fisher=cfg.fisher,
        factors_dir=cfg.factors,
        sample=list(sample) if sample else None,
        max_samples=cfg.factors_samples,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
    )


def _needed(lm: TargetLM | None) -> TargetLM:
    if lm is None:
        raise InputError("a target LM folder is needed", field="lm")
    return lm


def _daunce(cfg: MethodConfig, lm: TargetLM | None, train: Sequence[Example] | None) -> AttributionMethod:
    if cfg.daunce_run:
        from airsearch.methods.daunce_run import load_daunce

        return load_daunce(cfg.daunce_run).method(cfg.daunce_kind, lm=lm)
    if train is None:
        raise InputError(
            "daunce needs a finished run (a folder made by airsearch.trainers.daunce.run_daunce)",
            field="daunce_run",
        )
    from airsearch.lm.finetune import FinetuneConfig
    from airsearch.methods.daunce import Daunce, LocalFinetuneFactory, blackbox_providers

    target = _needed(lm)
    ft = FinetuneConfig(
        epochs=cfg.daunce_epochs,
        lr=cfg.daunce_lr,
        batch_size=cfg.batch_size,
        max_length=cfg.max_length or target.max_length,  # the LM's own token budget, as every method
        seed=cfg.seed,
    )
    providers = blackbox_providers(
        LocalFinetuneFactory(target, ft), train, cfg.daunce_models, cfg.daunce_ratio, cfg.seed
    )
    extra = {
        "mode": "black-box",
        "ratio": cfg.daunce_ratio,
        "epochs": cfg.daunce_epochs,
        "lr": cfg.daunce_lr,
        "batch_size": cfg.batch_size,
    }
    return Daunce(providers, kind=cfg.daunce_kind, fingerprint=target.fingerprint, extra=extra)


@dataclass
class Reranker:
    """The ``airsearch.indexers.query`` rerank hook: ``(query, candidates) -> scores`` with a name."""

    method: AttributionMethod
    __name__: str = "rerank"

    def __post_init__(self) -> None:
        self.__name__ = self.method.name

    def __call__(self, query: Example, candidates: Sequence[Any]) -> np.ndarray:
        from airsearch.methods.base import rerank

        examples = [c.example() if hasattr(c, "example") else c for c in candidates]
        return rerank(self.method, query, examples)
