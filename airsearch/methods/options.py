"""The options dataclasses of the built-in attribution methods (a light module: no torch).

Each built-in method plug-in (:mod:`airsearch.methods.plugin`) names one of these as its options:
grad-dot / TracIn, grad-cos, HAIF and HAIF-T take :class:`GradientOptions`, DDA :class:`DDAOptions`,
Daunce :class:`DaunceOptions`, RepSim :class:`RepSimOptions`. They live here, not in the methods'
own modules, because every command's config holds them (:class:`~airsearch.methods.registry.MethodConfig`
is their union) and a config must load without importing torch. A method added from outside
declares its options dataclass in its own module; commands pass them on with ``--method-option``.

A field shared by several options classes (``lm``, ``seed``, ``batch_size`` ...) is declared once, in
a common base, so every method reads it with the same meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from airsearch.config import CommandConfig, require
from airsearch.methods.names import (
    DEBIAS_READINGS,
    FISHER_KINDS,
    PRECONDITION_KINDS,
    FisherKind,
    PreconditionKind,
    ScoreKind,
)

BLACKBOX = "Black-box Daunce (without a finished run; the evaluation harness): "
PARAMS_HELP = "Gradient parameters: all, linear (what --precondition covers), lora, names:PAT[,PAT]."


@dataclass(kw_only=True)
class PreconditionOptions(CommandConfig):
    """The K-FAC / EK-FAC options (methods.md §0a), one vocabulary for every command that runs a
    gradient method.

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
        super().validate()
        require(self.precondition in PRECONDITION_KINDS, "precondition", "must be none, kfac or ekfac")
        require(self.damping is None or self.damping >= 0, "damping", "must be >= 0")
        require(self.fisher in FISHER_KINDS, "fisher", "must be empirical or sampled")
        require(self.factors_samples >= 0, "factors_samples", "must be >= 0 (0: the whole sample)")

    def precondition_options(self) -> dict[str, Any]:
        """These options' values, to pass on to another config that has them (a ``MethodConfig``)."""
        return {name: getattr(self, name) for name in PRECONDITION_FIELDS}


PRECONDITION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PreconditionOptions))


@dataclass(kw_only=True)
class LMOptions(CommandConfig):
    """What every LM-based method reads: the target LM, the batch, the token budget and the seed."""

    lm: str | None = field(
        default=None, metadata={"help": "Target LM folder (the final / fine-tuned model)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the JL projection (and of black-box Daunce)."})
    batch_size: int = field(default=8, metadata={"help": "Examples per gradient batch."})
    max_length: int | None = field(
        default=None, metadata={"help": "Tokens per example (default: the LM's own, 512 from a folder)."}
    )

    def validate(self) -> None:
        super().validate()
        require(self.batch_size >= 1, "batch_size", "must be at least 1")
        require(self.max_length is None or self.max_length >= 2, "max_length", "must be at least 2")


@dataclass(kw_only=True)
class RepSimOptions(LMOptions):
    """RepSim: the LM's mean last hidden states (one forward pass)."""


@dataclass(kw_only=True)
class GradientOptions(LMOptions, PreconditionOptions):
    """Gradient methods (grad-dot / TracIn, grad-cos, HAIF, HAIF-T): checkpoints, the parameter set, the
    JL projection and K-FAC / EK-FAC preconditioning."""

    checkpoints: list[str] = field(
        default_factory=list,
        metadata={
            "help": "DDA / TracIn checkpoint folders (repeatable); default: --lm alone.",
            "flag": "--checkpoint",
        },
    )
    params: str = field(default="all", metadata={"help": PARAMS_HELP})
    lora_rank: int = field(
        default=8, metadata={"help": "Rank of the gradient LoRA adapters (--params lora)."}
    )
    proj_dim: int = field(default=0, metadata={"help": "JL projection dimension; 0 = exact gradients."})

    def validate(self) -> None:
        super().validate()
        require(self.proj_dim >= 0, "proj_dim", "must be >= 0")
        require(self.lora_rank >= 1, "lora_rank", "must be at least 1")


@dataclass(kw_only=True)
class DDAOptions(GradientOptions):
    """DDA (Eq. 9-11): the base model and the debias term."""

    base_lm: str | None = field(
        default=None, metadata={"help": "DDA: the LM before fine-tuning (th0, the debias term)."}
    )
    beta: float = field(default=1.0, metadata={"help": "DDA debias weight."})
    debias: str = field(
        default="eq11",
        metadata={
            "help": "DDA debias reading: eq11 (the base model's own score) or eq9 (test gradient at the "
            "fine-tuned model, train gradient at the base)."
        },
    )

    def validate(self) -> None:
        super().validate()
        require(self.debias in DEBIAS_READINGS, "debias", f"must be one of {list(DEBIAS_READINGS)}")


@dataclass(kw_only=True)
class DaunceOptions(LMOptions):
    """Daunce: a finished white-box run, or the black-box fine-tunes' settings (Daunce Table 2)."""

    daunce_run: str | None = field(default=None, metadata={"help": "Daunce: folder of a finished run."})
    daunce_kind: ScoreKind = field(default="corr", metadata={"help": "Daunce score: corr or cov."})
    daunce_models: int = field(default=8, metadata={"help": BLACKBOX + "K perturbed models."})
    daunce_ratio: float = field(
        default=0.5, metadata={"help": BLACKBOX + "share of the training set each sees."}
    )
    daunce_lr: float = field(default=1e-3, metadata={"help": BLACKBOX + "learning rate."})
    daunce_epochs: int = field(default=1, metadata={"help": BLACKBOX + "epochs."})

    def validate(self) -> None:
        super().validate()
        require(self.daunce_kind in ("corr", "cov"), "daunce_kind", "must be corr or cov")
        require(self.daunce_models >= 2, "daunce_models", "Daunce needs at least 2 perturbed models")
        require(0 < self.daunce_ratio <= 1, "daunce_ratio", "must be in (0, 1]")
        require(self.daunce_lr > 0, "daunce_lr", "must be positive")
        require(self.daunce_epochs >= 1, "daunce_epochs", "must be at least 1")
