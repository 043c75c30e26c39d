"""The one method registry: every attribution method is built by name from one :class:`MethodConfig`.

``airsearch attribute``, ``airsearch query --rerank``, the label teachers and the evaluation harness
all call :func:`load_method`; :class:`Reranker` adapts a method to the query rerank hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from airsearch.config import require
from airsearch.data.example import Example
from airsearch.methods.names import MethodName
from airsearch.methods.options import BLACKBOX as BLACKBOX  # re-exported
from airsearch.methods.options import PARAMS_HELP as PARAMS_HELP  # re-exported
from airsearch.methods.options import PRECONDITION_FIELDS as PRECONDITION_FIELDS  # re-exported
from airsearch.methods.options import DaunceOptions, DDAOptions, RepSimOptions
from airsearch.methods.options import PreconditionOptions as PreconditionOptions  # re-exported
from airsearch.methods.plugin import MethodModels, get_plugin, method_names

if TYPE_CHECKING:  # the models load when a method is built, not when its config is read
    import numpy as np

    from airsearch.lm.model import TargetLM
    from airsearch.methods.base import AttributionMethod


@dataclass(kw_only=True)
class MethodConfig(DDAOptions, DaunceOptions, RepSimOptions):
    """Which attribution method, with every option of every built-in method (the union of the options
    dataclasses of :mod:`airsearch.methods.options`); ``method_options`` (``--method-option KEY=VALUE``)
    sets the options of a plug-in registered from outside. A command holds one, nested
    (``QueryConfig.method_config`` ...), and the CLI flattens its fields into the command's flags
    (:func:`airsearch.cli.common.config_options`), so every command gets every option of every method.
    """

    method: MethodName = field(
        default="gradcos", metadata={"help": "An attribution method (airsearch.methods.plugin.method_names)."}
    )
    method_options: list[str] = field(
        default_factory=list,
        metadata={
            "help": "KEY=VALUE option of a plug-in method's options dataclass (repeatable).",
            "flag": "--method-option",
            "late": True,
        },
    )

    def validate(self) -> None:
        super().validate()
        names = method_names()
        require(self.method in names, "method", f"must be one of {list(names)}")
        for item in self.method_options:
            require("=" in item, "method_options", f"{item!r} is not KEY=VALUE")

    def extra_options(self) -> dict[str, str]:
        """``method_options`` as a mapping."""
        return dict(item.split("=", 1) for item in self.method_options)

    def plugin_options(self) -> Any:
        """The options dataclass of ``method``'s plug-in, filled from this config."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _OWN_FIELDS}
        return get_plugin(self.method).make_options(values, self.extra_options())


_OWN_FIELDS = ("method", "method_options")
METHOD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(MethodConfig))


def method_config_from(options: Any, method: str, **overrides: Any) -> MethodConfig:
    """The :class:`MethodConfig` of ``method`` from a command config: its nested ``method_config`` when
    it holds one, else every :class:`MethodConfig` field that ``options`` also has (same name, same
    meaning); then ``overrides``. One conversion for ``query --rerank``, ``query --method``,
    ``explain``, ``serve`` and the method columns."""
    nested = getattr(options, "method_config", None)
    source = nested if isinstance(nested, MethodConfig) else options
    values = {n: getattr(source, n) for n in METHOD_FIELDS if n != "method" and hasattr(source, n)}
    values.update(overrides)
    for name in ("checkpoints", "method_options"):
        if isinstance(values.get(name), tuple):
            values[name] = list(values[name])
    return MethodConfig(method=method, **values)


def load_method(
    cfg: MethodConfig,
    *,
    lm: TargetLM | None = None,
    checkpoints: Sequence[TargetLM] = (),
    base_lm: TargetLM | None = None,
    train: Sequence[Example] | None = None,
    fit_sample: Sequence[Example] | None = None,
    show_progress: bool = True,
    encoder: Any = None,
    workdir: str | None = None,
) -> AttributionMethod:
    """The attribution method ``cfg.method`` (methods.md §2-§5) on the models ``cfg`` names, built by its
    plug-in (:mod:`airsearch.methods.plugin`) from its options (:meth:`MethodConfig.plugin_options`).

    Models already in memory take the place of the folders: ``lm`` of ``cfg.lm``, ``checkpoints`` of
    ``cfg.checkpoints`` and ``base_lm`` of ``cfg.base_lm``. TracIn / grad-cos (DDA Eq. 6) and DDA
    (Eq. 9-11) run over the checkpoints (default: the LM alone); HAIF on the LM. Daunce (Eq. 6 of
    Daunce) reads the finished white-box run ``cfg.daunce_run``; without a run it fits
    ``cfg.daunce_models`` black-box fine-tunes of the LM on ``train`` (Daunce Table 2). RepSim (DATE-LM's
    baseline) is the cosine of the LM's mean last hidden states: one forward pass, no gradient.

    With ``cfg.precondition`` kfac / ekfac the gradient methods use K-FAC / EK-FAC influence
    (methods.md §0a); the factors are fitted on ``cfg.factors_sample`` (a corpus file), else on
    ``fit_sample``, else on ``train``, or loaded from ``cfg.factors``.

    The search baselines (:mod:`airsearch.indexers.search_methods`) take ``encoder`` (an AirRep encoder in
    memory, in place of ``--method-option encoder=FOLDER``) and ``workdir`` (where BM25 keeps its index).
    """
    plugin = get_plugin(cfg.method)
    models = MethodModels(
        lm=lm,
        checkpoints=tuple(checkpoints),
        base_lm=base_lm,
        train=train,
        fit_sample=fit_sample,
        show_progress=show_progress,
        method=plugin.name,
        encoder=encoder,
        workdir=None if workdir is None else str(workdir),
    )
    method = plugin.build(cfg.plugin_options(), models)
    if method.score_kind != plugin.score_kind:  # a plug-in's declaration and its method must agree
        raise ValueError(
            f"plug-in {plugin.name!r} declares {plugin.score_kind!r}, its method {method.score_kind!r}"
        )
    return method


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
