"""The names of the attribution methods, of the Daunce score kinds and of the preconditioners.

A light module (no torch): configs and the CLI read these names without loading any model code.
"""

from __future__ import annotations

from typing import Literal, get_args

MethodName = Literal["tracin", "gradcos", "dda", "haif", "haif-t", "daunce", "repsim"]
METHOD_NAMES: tuple[str, ...] = get_args(MethodName)

ScoreKind = Literal["corr", "cov"]  # Daunce: Pearson correlation or covariance across the K models
DEBIAS_READINGS = ("eq11", "eq9")  # DDA: the two readings of the debias term (airsearch.methods.dda)

PreconditionKind = Literal[
    "none", "kfac", "ekfac"
]  # K-FAC / EK-FAC influence (airsearch.methods.precondition)
PRECONDITION_KINDS: tuple[str, ...] = get_args(PreconditionKind)
FisherKind = Literal["empirical", "sampled"]  # the Fisher the factors estimate (airsearch.methods.kfac)
FISHER_KINDS: tuple[str, ...] = get_args(FisherKind)
