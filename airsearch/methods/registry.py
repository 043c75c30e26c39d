"""Build a method by name (CLI, rerank, label teachers) and adapt it to the query rerank hook."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from airsearch.config import CommandConfig, require
from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.methods.base import METHOD_NAMES, AttributionMethod, rerank
from airsearch.methods.gradients import ParamSet
from airsearch.methods.projection import Projector


@dataclass
class MethodConfig(CommandConfig):
    """Which attribution method and on which models (shared by ``attribute``, ``query --rerank``)."""

    method: str = field(default="gradcos", metadata={"help": f"One of {', '.join(METHOD_NAMES)}."})
    model: str = field(default="", metadata={"help": "Target LM folder (the final / fine-tuned model)."})
    base_model: str | None = field(
        default=None, metadata={"help": "DDA: the model before fine-tuning (th0)."}
    )
    checkpoint: list[str] = field(
        default_factory=list,
        metadata={"help": "DDA / TracIn checkpoints (repeatable); default: --model alone."},
    )
    beta: float = field(default=1.0, metadata={"help": "DDA debias weight."})
    params: str = field(default="all", metadata={"help": "Gradient parameters: all, lora, names:PAT[,PAT]."})
    lora_rank: int = field(
        default=8, metadata={"help": "Rank of the gradient LoRA adapters (--params lora)."}
    )
    proj_dim: int = field(default=0, metadata={"help": "JL projection dimension; 0 = exact gradients."})
    proj_seed: int = field(default=0, metadata={"help": "Projection seed."})
    daunce_run: str | None = field(default=None, metadata={"help": "Daunce: folder of a finished run."})
    daunce_kind: str = field(default="corr", metadata={"help": "Daunce score: corr or cov."})
    batch_size: int = field(default=8, metadata={"help": "Examples per gradient batch."})
    max_length: int = field(default=512, metadata={"help": "Tokens per example."})

    def validate(self) -> None:
        require(self.method in METHOD_NAMES, "method", f"must be one of {list(METHOD_NAMES)}")
        require(self.proj_dim >= 0, "proj_dim", "must be >= 0")
        require(self.daunce_kind in ("corr", "cov"), "daunce_kind", "must be corr or cov")


def build_method(
    cfg: MethodConfig,
    lm: Any | None = None,
    show_progress: bool = True,
    daunce: AttributionMethod | None = None,
) -> AttributionMethod:
    """The configured method; ``lm`` (an already loaded ``--model``) avoids loading it twice.

    Daunce's K models come from a finished run (``airsearch.trainers.daunce``): the caller loads it and passes
    the method as ``daunce`` (``airsearch/`` does not import ``trainers/``).
    """
    from airsearch.lm import load_lm

    cfg.validate()

    def load(path: str) -> Any:
        return load_lm(path, max_length=cfg.max_length)

    if cfg.method == "daunce":
        if daunce is None:
            raise InputError(
                "daunce needs a finished run (a folder made by airsearch.trainers.daunce)",
                field="daunce_run",
            )
        return daunce
    if not cfg.model and not cfg.checkpoint:
        raise InputError("a target model is needed", field="model")
    model = lm if lm is not None else (load(cfg.model) if cfg.model else None)
    kw = {
        "params": ParamSet.parse(cfg.params, lora_rank=cfg.lora_rank),
        "projector": Projector(dim=cfg.proj_dim or None, seed=cfg.proj_seed),
        "batch_size": cfg.batch_size,
        "max_length": cfg.max_length,
        "show_progress": show_progress,
    }
    checkpoints = [load(c) for c in cfg.checkpoint] or [model]
    if cfg.method in ("tracin", "gradcos"):
        from airsearch.methods.tracin import TracIn

        return TracIn(checkpoints, normalize=cfg.method == "gradcos", **kw)
    if cfg.method == "dda":
        from airsearch.methods.dda import DDA

        base = load(cfg.base_model) if cfg.base_model else None
        return DDA(checkpoints, base=base, beta=cfg.beta, **kw)
    from airsearch.methods.haif import HAIF

    return HAIF(model, outer=cfg.method == "haif", **kw)


@dataclass
class Reranker:
    """The ``airsearch.indexers.query`` rerank hook: ``(query, candidates) -> scores`` with a name."""

    method: AttributionMethod
    __name__: str = "rerank"

    def __post_init__(self) -> None:
        self.__name__ = self.method.name

    def __call__(self, query: Example, candidates: Sequence[Any]) -> np.ndarray:
        examples = [c.example() if hasattr(c, "example") else c for c in candidates]
        return rerank(self.method, query, examples)
