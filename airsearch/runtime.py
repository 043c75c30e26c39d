"""Encoder runtimes, the vocabulary: which engine runs the AirRep encoder and at what precision.

``runtime`` is ``torch`` (the model itself), ``onnx`` (ONNX Runtime) or ``openvino`` (OpenVINO), and
``quantize`` is ``none`` (fp32) or ``int8``. The ONNX and OpenVINO runtimes run an exported copy of
the encoder (:mod:`airsearch.compiled`): the same weights and the same input rule, hence the same
vectors up to float rounding in fp32 and up to the int8 error with ``int8`` (cosine to fp32 in
``benchmarks/results/encode.md``). Vectors of two runtimes are not mixed: the runtime is part of the
encoder fingerprint an index records, and an index is queried with the runtime it was built with.

This module is light (no numpy, torch or runtime library): configs import it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

from airsearch.errors import InputError, MissingDependency

Runtime = Literal["torch", "onnx", "openvino"]
Quantize = Literal["none", "int8"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)
QUANTIZE: tuple[str, ...] = get_args(Quantize)
DEFAULT_RUNTIME = "torch"
DEFAULT_QUANTIZE = "none"
RUNTIME_HELP = "encoder runtime: torch, onnx (ONNX Runtime) or openvino (CPU inference engines)"
QUANTIZE_HELP = "encoder weights: none (fp32) or int8 (dynamic int8, with --runtime onnx or openvino)"
# the packages each runtime needs (the export is checked with ONNX Runtime), and the extra installing them
PACKAGES = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnxruntime", "onnx")}


def cache_root() -> Path:
    """Where exported encoders are kept (``$AIRSEARCH_CACHE``, default ``~/.cache/airsearch``): the
    runtimes' builds (:mod:`airsearch.compiled`) and the query encoder (:mod:`airsearch.query_encoder`)."""
    return Path(os.environ.get("AIRSEARCH_CACHE") or Path.home() / ".cache" / "airsearch")


def runtime_label(runtime: str = DEFAULT_RUNTIME, quantize: str = DEFAULT_QUANTIZE) -> str:
    """``torch``, ``onnx``, ``onnx-int8``, ``openvino`` or ``openvino-int8``."""
    return runtime if quantize == "none" else f"{runtime}-{quantize}"


def check_runtime(runtime: str, quantize: str) -> None:
    """Refuse an unknown runtime or precision, and int8 on torch (only the exported runtimes quantise)."""
    if runtime not in RUNTIMES:
        raise InputError(f"must be one of {RUNTIMES}, not {runtime!r}", field="runtime")
    if quantize not in QUANTIZE:
        raise InputError(f"must be one of {QUANTIZE}, not {quantize!r}", field="quantize")
    if runtime == "torch" and quantize != "none":
        raise InputError("int8 runs on the onnx or openvino runtime; choose one of them", field="quantize")


def require_runtime(runtime: str) -> None:
    """Refuse a runtime whose package is not installed, naming the extra that installs it."""
    if runtime == "torch":
        return
    import importlib.util

    for package in PACKAGES[runtime]:
        if importlib.util.find_spec(package) is None:
            raise MissingDependency(package, runtime, f"the {runtime} encoder runtime")


def recorded_runtime(encoder_info: dict) -> tuple[str, str]:
    """``(runtime, quantize)`` an index's encoder record names (tables from before runtimes: torch)."""
    return (
        str(encoder_info.get("runtime") or DEFAULT_RUNTIME),
        str(encoder_info.get("quantize") or DEFAULT_QUANTIZE),
    )
