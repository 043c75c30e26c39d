"""The method plug-in contract and the one registry of attribution methods (a light module: no torch).

A method is **one module** that declares a :class:`MethodPlugin` (``PLUGINS = (MethodPlugin(...),)``):

- its ``name`` and its ``options`` dataclass (a :class:`~airsearch.config.CommandConfig`; the built-in
  ones are in :mod:`airsearch.methods.options`);
- ``build(options, models) -> AttributionMethod``: the method on the models of :class:`MethodModels`.
  The method implements :meth:`~airsearch.methods.base.AttributionMethod.row_vectors` (train side,
  streamed in fixed blocks) and :meth:`~airsearch.methods.base.AttributionMethod.query_vectors`,
  deterministic for given options and fingerprinted by
  :meth:`~airsearch.methods.base.AttributionMethod.fingerprint`;
- ``score_kind``: how a score is read from the two vectors. ``"dot"`` means
  ``score = query_vector . row_vector``, which is what lets the method be a vector column of an index
  table, be reranked from stored vectors and be scored block-wise. Every built-in attribution method
  and the encoder baselines (``airrep`` / ``base``) are ``"dot"``. The documented fallback for a method
  that is not a dot product is ``"pairwise"``: the module overrides
  :meth:`~airsearch.methods.base.AttributionMethod.score_against` (scores of train rows against query
  vectors), or :meth:`~airsearch.methods.base.AttributionMethod.prepare` and
  :meth:`~airsearch.methods.base.AttributionMethod.score_blocks` when a score depends on the whole
  train set (BM25's index), which ``attribute``, ``query --rerank`` and the evaluation harness call;
  such a method gets no index column (``airsearch method-column`` refuses it in one line). The search
  baselines ``bm25``, ``hybrid`` and ``random`` are ``"pairwise"``.

The built-in plug-ins are the attribution methods of :mod:`airsearch.methods` and the evaluation's
search baselines, which live beside the index they search (:mod:`airsearch.indexers.search_methods`,
found by module path, so the core imports nothing above it).

:func:`get_plugin` finds a built-in plug-in by importing its module (:data:`BUILTIN_METHOD_MODULES`,
the one table of built-in names) or a plug-in registered with :func:`register` /
:func:`register_module` (a method added from outside: one file, then ``register_module("pkg.mod")``).
Every command then offers it: :class:`~airsearch.methods.registry.MethodConfig` carries the built-in
options as flags and any other option of a plug-in's options dataclass as ``--method-option KEY=VALUE``.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airsearch.errors import InputError
from airsearch.methods.names import BUILTIN_METHOD_MODULES

if TYPE_CHECKING:
    from airsearch.data.example import Example
    from airsearch.lm.model import TargetLM
    from airsearch.methods.base import AttributionMethod

SCORE_KINDS = ("dot", "pairwise")


@dataclass
class MethodModels:
    """What a plug-in's ``build`` gets besides its options: models already in memory (they take the
    place of the folders the options name), the training rows (black-box Daunce fits on them), the
    sample to fit K-FAC / EK-FAC factors on, and whether to show progress bars."""

    lm: TargetLM | None = None
    checkpoints: Sequence[TargetLM] = ()
    base_lm: TargetLM | None = None
    train: Sequence[Example] | None = None
    fit_sample: Sequence[Example] | None = None
    show_progress: bool = True
    method: str = ""  # the plug-in being built (one build function may serve two: tracin / gradcos)
    encoder: Any = None  # an AirRep encoder in memory (the encoder baselines; else options.encoder)
    workdir: str | None = None  # a folder the method may keep files in (BM25's index), else a temporary one

    def load(self, path: str, max_length: int | None) -> TargetLM:
        """A target LM from a folder (the method's token budget, 512 by default)."""
        from airsearch.lm import load_lm

        return load_lm(path, max_length=max_length or 512)

    def target(self, options: Any) -> TargetLM:
        """The target LM: the one in memory, else ``options.lm`` loaded; refused when neither is given."""
        if self.lm is not None:
            return self.lm
        if getattr(options, "lm", None):
            return self.load(options.lm, getattr(options, "max_length", None))
        raise InputError("a target LM folder is needed", field="lm")

    def gradient_checkpoints(self, options: Any) -> list[TargetLM]:
        """The models a gradient method runs over: the checkpoints (default: the target LM alone)."""
        if self.checkpoints:
            return list(self.checkpoints)
        cks = [self.load(c, options.max_length) for c in getattr(options, "checkpoints", ())]
        return cks or [self.target(options)]

    def gradient_kwargs(self, options: Any) -> dict[str, Any]:
        """The featuriser keywords of a gradient method from its
        :class:`~airsearch.methods.options.GradientOptions`: parameter set, JL projection, batch,
        token budget and K-FAC / EK-FAC preconditioning (fitted on ``fit_sample``, else ``train``)."""
        from airsearch.methods.gradients import ParamSet
        from airsearch.methods.precondition import Precondition
        from airsearch.methods.projection import Projector

        sample = self.fit_sample if self.fit_sample is not None else self.train
        if options.precondition != "none" and options.factors_sample:
            from airsearch.data.corpus import load_corpus

            sample = load_corpus(options.factors_sample).examples
        return {
            "params": ParamSet.parse(options.params, lora_rank=options.lora_rank),
            "projector": Projector(dim=options.proj_dim or None, seed=options.seed),
            "batch_size": options.batch_size,
            "max_length": options.max_length,
            "show_progress": self.show_progress,
            "precondition": Precondition(
                options.precondition,
                damping=options.damping,
                fisher=options.fisher,
                factors_dir=options.factors,
                sample=list(sample) if sample else None,
                max_samples=options.factors_samples,
                seed=options.seed,
                batch_size=options.batch_size,
            ),
        }


@dataclass(frozen=True)
class MethodPlugin:
    """One attribution method's declaration (module docstring).

    ``gradient``: the method takes a parameter set, a projection and K-FAC / EK-FAC preconditioning,
    and has per-token scores (``explain``, the served token view). ``checkpoints``: it runs over the
    checkpoints (TracIn's sum, DDA's θ'), so an evaluation row names how many (``tracin@3ckpt``).
    ``spec_options``: the options an
    evaluation spec string may set (``dda:beta=0.5,debias=eq9``). ``summary``: one line on what its
    score is (results label a registered method's scores with it; built-ins' labels are in
    :mod:`airsearch.score_kinds`).
    """

    name: str
    options: type
    build: Callable[[Any, MethodModels], AttributionMethod]
    summary: str
    score_kind: str = "dot"
    gradient: bool = False
    checkpoints: bool = False
    spec_options: tuple[str, ...] = ()
    module: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.score_kind not in SCORE_KINDS:
            raise ValueError(f"plug-in {self.name!r}: score_kind must be one of {SCORE_KINDS}")
        names = {f.name for f in dataclasses.fields(self.options)}
        unknown = [o for o in self.spec_options if o not in names]
        if unknown:
            raise ValueError(f"plug-in {self.name!r}: spec options {unknown} are not fields of its options")

    @property
    def needs_lm(self) -> bool:
        """Whether the method runs on a target LM (its options name one); the search baselines do not."""
        return "lm" in {f.name for f in dataclasses.fields(self.options)}

    def make_options(self, values: dict[str, Any], extra: dict[str, str] | None = None) -> Any:
        """This plug-in's options from ``values`` (the fields of a command's method config it shares:
        others are ignored) and ``extra`` (``--method-option KEY=VALUE``: refused unless a field)."""
        names = {f.name for f in dataclasses.fields(self.options)}
        bad = sorted(set(extra or {}) - names)
        if bad:
            known = ", ".join(sorted(names)) or "none"
            raise InputError(
                f"method {self.name!r} has no option {bad[0]!r} (its options: {known})",
                field="method_options",
            )
        data = {k: v for k, v in values.items() if k in names}
        data.update(extra or {})
        return self.options.from_dict(data)

    def option_types(self) -> dict[str, Any]:
        """Each spec option's type (for parsing ``name:key=value`` spec strings)."""
        hints = typing.get_type_hints(self.options)
        return {o: hints[o] for o in self.spec_options}


GRADIENT_SPEC_OPTIONS = ("proj_dim", "params", "lora_rank", "precondition", "damping")


def gradient_plugin(
    name: str, build: Callable[[Any, MethodModels], AttributionMethod], summary: str, **more: Any
) -> MethodPlugin:
    """The declaration of a gradient method: :class:`~airsearch.methods.options.GradientOptions` (or
    ``options=``), ``gradient=True`` and the gradient spec options (after any ``spec_options=``)."""
    from airsearch.methods.options import GradientOptions

    spec = (*more.pop("spec_options", ()), *GRADIENT_SPEC_OPTIONS)
    options = more.pop("options", GradientOptions)
    return MethodPlugin(name, options, build, summary, gradient=True, spec_options=spec, **more)


_REGISTERED: dict[str, MethodPlugin] = {}


def register(plugin: MethodPlugin) -> MethodPlugin:
    """Add a method from outside the package (a built-in name cannot be replaced); returns it."""
    if plugin.name in BUILTIN_METHOD_MODULES:
        raise ValueError(f"{plugin.name!r} is a built-in method")
    _REGISTERED[plugin.name] = plugin
    return plugin


def unregister(name: str) -> None:
    """Remove a method added with :func:`register` (a no-op for any other name)."""
    _REGISTERED.pop(name, None)


def register_module(module: str) -> list[MethodPlugin]:
    """Import ``module`` (a dotted name) and register every plug-in its ``PLUGINS`` declares."""
    mod = importlib.import_module(module)
    declared = getattr(mod, "PLUGINS", None)
    if not declared:
        raise InputError(f"module {module!r} declares no PLUGINS", field="method")
    return [register(dataclasses.replace(p, module=module)) for p in declared]


def method_names() -> tuple[str, ...]:
    """Every method name: the built-in ones, then those registered, in registration order."""
    return (*BUILTIN_METHOD_MODULES, *_REGISTERED)


def get_plugin(name: str) -> MethodPlugin:
    """The plug-in of method ``name`` (imports a built-in method's module); an unknown name is refused."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    module = BUILTIN_METHOD_MODULES.get(name)
    if module is None:
        raise InputError(f"unknown method {name!r}; known methods: {list(method_names())}", field="method")
    for plugin in importlib.import_module(module).PLUGINS:
        if plugin.name == name:
            return dataclasses.replace(plugin, module=module)
    raise InputError(f"module {module} declares no plug-in {name!r}", field="method")  # pragma: no cover


def registered_summary(name: str) -> str | None:
    """The summary of a method registered from outside (``None`` for any other name; no import)."""
    plugin = _REGISTERED.get(name)
    return plugin.summary if plugin else None


def plugins() -> list[MethodPlugin]:
    """Every plug-in, built-in and registered (imports the built-in methods' modules)."""
    return [get_plugin(n) for n in method_names()]


def gradient_method_names() -> tuple[str, ...]:
    """The methods with a parameter set, projection, preconditioning and per-token scores."""
    return tuple(p.name for p in plugins() if p.gradient)
