"""The names of the built-in attribution methods, of the Daunce score kinds and of the preconditioners.

A light module (no torch): configs and the CLI read these names without loading any model code.
:data:`BUILTIN_METHOD_MODULES` is the one table of built-in methods, the attribution methods and the
evaluation's search baselines: each name's module declares its plug-in
(:class:`airsearch.methods.plugin.MethodPlugin`); methods registered from outside join them in
:func:`airsearch.methods.plugin.method_names`. Every list of method names derives from it.
"""

from __future__ import annotations

from typing import Literal, get_args

BUILTIN_METHOD_MODULES: dict[str, str] = {
    "tracin": "airsearch.methods.tracin",
    "gradcos": "airsearch.methods.tracin",
    "dda": "airsearch.methods.dda",
    "haif": "airsearch.methods.haif",
    "haif-t": "airsearch.methods.haif",
    "daunce": "airsearch.methods.daunce_run",
    "repsim": "airsearch.methods.repsim",
    # the search baselines, beside the index they search (found by path: the core imports nothing above it)
    "airrep": "airsearch.indexers.search_methods",
    "base": "airsearch.indexers.search_methods",
    "bm25": "airsearch.indexers.search_methods",
    "hybrid": "airsearch.indexers.search_methods",
    "random": "airsearch.indexers.search_methods",
}
MethodName = str  # a built-in name (METHOD_NAMES) or a registered plug-in's
METHOD_NAMES: tuple[str, ...] = tuple(BUILTIN_METHOD_MODULES)  # the built-in ones

ScoreKind = Literal["corr", "cov"]  # Daunce: Pearson correlation or covariance across the K models
DEBIAS_READINGS = ("eq11", "eq9")  # DDA: the two readings of the debias term (airsearch.methods.dda)

PreconditionKind = Literal[
    "none", "kfac", "ekfac"
]  # K-FAC / EK-FAC influence (airsearch.methods.precondition)
PRECONDITION_KINDS: tuple[str, ...] = get_args(PreconditionKind)
FisherKind = Literal["empirical", "sampled"]  # the Fisher the factors estimate (airsearch.methods.kfac)
FISHER_KINDS: tuple[str, ...] = get_args(FisherKind)
