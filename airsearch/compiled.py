"""The exported AirRep encoder behind the ``onnx`` and ``openvino`` runtimes (:mod:`airsearch.runtime`).

The whole encoder (transformer, mean pooling, Dense projection; AirRep §3.1) is exported as one ONNX
graph from token ids to the final vector: inputs ``input_ids`` and ``attention_mask`` (and
``token_type_ids`` when the tokenizer makes them), output ``embedding`` ``[batch, dim]``. Token ids
still come from :meth:`airsearch.encoder.AirRepEncoder.input_ids`, so the input rule is unchanged.

* **Export**: torch's ONNX exporter, with eager attention (the pattern that ONNX Runtime's transformer
  optimizer fuses); for BERT-family models the graph is then fused (Attention, SkipLayerNormalization,
  BiasGelu kernels). The fused graph is checked against torch on a few rows and dropped for the
  plain export if they disagree.
* **onnx int8**: ONNX Runtime dynamic quantisation: weight matrices int8 per output channel,
  activations quantised per batch at run time; only products with a constant weight (attention
  products stay fp32).
* **openvino**: compiled from the same ONNX graph; **int8**: NNCF weight-only int8 compression
  (activations stay fp32, so a row's vector does not depend on the rows batched with it).

Exports are cached under ``$AIRSEARCH_CACHE`` (default ``~/.cache/airsearch``)
``/runtimes/<encoder fingerprint>/<runtime label>/``, written atomically, and reused by every later
command with the same encoder weights.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from airsearch.atomic import atomic_path
from airsearch.errors import InputError, MissingDependency
from airsearch.runtime import cache_root as cache_root
from airsearch.runtime import require_runtime, runtime_label

EXPORT_FORMAT = "airsearch-onnx-v1"  # changes when the exported graph would differ: part of fingerprints
ONNX_FILE = "model.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17
CHECK_COSINE = 0.9999  # the fused fp32 graph must agree with torch this well on the check rows


# The activation precision every runtime is asked for. OpenVINO's CPU plugin otherwise picks bf16 on
# processors with avx512_bf16 or AMX (and f16 on some ARM cores), so one "fp32" runtime name would give
# different vectors on two machines. int8 builds quantise weights only: their activations stay f32 too.
ACTIVATION_PRECISION = "f32"


class CompiledEncoder:
    """An exported encoder graph loaded into ONNX Runtime or OpenVINO: ``__call__(features) -> [n, dim]``.

    :attr:`precision` is the activation precision the runtime reports it computes in, read back from
    the compiled model (OpenVINO) or the session's provider (ONNX Runtime's CPU provider computes fp32
    unless a graph is converted, which :func:`compile_encoder` never does)."""

    def __init__(self, path: Path, runtime: str, inputs: tuple[str, ...]) -> None:
        self.path, self.runtime, self.inputs = path, runtime, inputs
        threads = torch.get_num_threads()  # the runtimes use as many threads as torch is given
        if runtime == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            # no fast-math bf16 GEMMs (an ARM option today; asked for explicitly so it never applies)
            options.add_session_config_entry("mlas.enable_gemm_fastmath_arm64_bfloat16", "0")
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self._run = lambda feeds: self._session.run(None, feeds)[0]
            self.precision = "f32" if self._session.get_providers() == ["CPUExecutionProvider"] else "unknown"
        else:
            import openvino as ov

            settings = {
                "INFERENCE_NUM_THREADS": threads,
                "INFERENCE_PRECISION_HINT": ACTIVATION_PRECISION,
                "EXECUTION_MODE_HINT": "ACCURACY",
            }
            compiled = ov.Core().compile_model(str(path), "CPU", settings)
            self._run = lambda feeds: compiled(feeds)[0]
            self.precision = openvino_precision(compiled)
        if self.precision != ACTIVATION_PRECISION:
            raise InputError(
                f"the {runtime} runtime computes in {self.precision}, not {ACTIVATION_PRECISION}; "
                "its vectors would not match the fp32 encoder's"
            )

    def __call__(self, features: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {k: np.ascontiguousarray(features[k], dtype=np.int64) for k in self.inputs}
        return np.asarray(self._run(feeds), dtype=np.float32)


def openvino_precision(compiled: Any) -> str:
    """The inference precision a compiled OpenVINO model reports (``f32``, ``bf16``, ``f16``)."""
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    return str(getattr(value, "type_name", None) or value).lower()


def compile_encoder(
    model: Any, *, fingerprint: str, runtime: str, quantize: str, check_ids: list[list[int]]
) -> CompiledEncoder:
    """The ``runtime``/``quantize`` build of ``model`` (an :class:`~airsearch.encoder_model.AirRepNet`, weights fingerprint
    ``fingerprint``), exported on first use and cached. ``check_ids`` are token-id rows on which a
    fused graph must match torch."""
    require_runtime(runtime)
    if runtime == "openvino" and quantize == "int8":
        import importlib.util

        if importlib.util.find_spec("nncf") is None:
            raise MissingDependency("nncf", "openvino", "int8 on the openvino runtime")
    inputs = _input_names(model)
    folder = (
        cache_root() / "runtimes" / fingerprint[:32] / f"{runtime_label(runtime, quantize)}-{EXPORT_FORMAT}"
    )
    target = folder / ONNX_FILE if runtime == "onnx" else folder / "model.xml"
    if not target.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder, is_dir=True) as tmp:
            tmp.mkdir(parents=True, exist_ok=True)
            fp32 = export_onnx(model, tmp / "fp32.onnx", inputs, check_ids)
            if runtime == "onnx":
                _onnx_build(fp32, tmp / ONNX_FILE, quantize)
            else:
                _openvino_build(fp32, tmp / "model.xml", quantize)
            for extra in tmp.glob("fp32.onnx*"):
                extra.unlink()
    return CompiledEncoder(target, runtime, inputs)


def _input_names(model: Any) -> tuple[str, ...]:
    with_types = "token_type_ids" in model.tokenizer.model_input_names
    return INPUTS if with_types else INPUTS[:2]


class _Graph(torch.nn.Module):
    """The AirRep network as a function of the token-id tensors (for the exporter)."""

    def __init__(self, model: Any, inputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.inputs = model, inputs

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(dict(zip(self.inputs, tensors, strict=True)))


def export_onnx(
    model: Any, path: Path, inputs: tuple[str, ...], check_ids: list[list[int]], *, fuse: bool = True
) -> Path:
    """Export ``model`` to ``path`` (fp32, dynamic batch and length), fused for BERT-family models
    (unless ``fuse`` is false) when the fused graph matches torch on ``check_ids``; returns the path
    written."""
    features = _features(model, check_ids, inputs)
    example = tuple(torch.as_tensor(features[k], device=model.device) for k in inputs)
    axes = {k: {0: "batch", 1: "tokens"} for k in inputs} | {"embedding": {0: "batch"}}
    was_training = model.training
    model.eval()
    with _eager_attention(model), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        reference = model(dict(zip(inputs, example, strict=True)))
        torch.onnx.export(
            _Graph(model, inputs).eval(),
            example,
            str(path),
            input_names=list(inputs),
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    model.train(was_training)
    reference = reference.float().cpu().numpy()
    fused = _fuse(model, path) if fuse else None
    if fused is not None and _agrees(fused, features, reference):
        fused.replace(path)
    elif fused is not None:
        fused.unlink()
    if not _agrees(path, features, reference):
        raise InputError("the exported ONNX encoder does not reproduce the torch encoder's vectors")
    return path


def _features(model: Any, ids: list[list[int]], inputs: tuple[str, ...]) -> dict[str, np.ndarray]:
    pad = model.tokenizer.pad_token_id or 0
    width = max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), pad, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)], mask[row, : len(x)] = x, 1
    out = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
    return {k: out[k] for k in inputs}


@contextlib.contextmanager
def _eager_attention(model: Any) -> Iterator[None]:
    """Export with eager attention (sdpa exports to a graph the fusion does not recognise)."""
    auto = model.bert
    config = getattr(auto, "config", None)
    before = getattr(config, "_attn_implementation", None)
    switch = getattr(auto, "set_attn_implementation", None)
    if before in (None, "eager") or switch is None:
        yield
        return
    try:
        switch("eager")
    except (ValueError, TypeError, AttributeError):  # a model without an eager path: export as it is
        yield
        return
    try:
        yield
    finally:
        switch(before)


def _fuse(model: Any, path: Path) -> Path | None:
    """ONNX Runtime's BERT fusion of the exported graph, or ``None`` when it does not apply."""
    config = getattr(model.bert, "config", None)
    heads, hidden = getattr(config, "num_attention_heads", 0), getattr(config, "hidden_size", 0)
    if not heads or not hidden:
        return None
    try:
        from onnxruntime.transformers import optimizer

        with warnings.catch_warnings(), _quiet_logging():
            warnings.simplefilter("ignore")
            fused = optimizer.optimize_model(
                str(path), model_type="bert", num_heads=heads, hidden_size=hidden
            )
    except Exception:  # the fusion is an optimisation: any failure keeps the plain export
        return None
    out = path.with_name("fused.onnx")
    fused.save_model_to_file(str(out))
    return out


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _agrees(path: Path, features: dict[str, np.ndarray], reference: np.ndarray) -> bool:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, features)[0]
    cos = (got * reference).sum(1) / np.maximum(
        np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1), 1e-12
    )
    return bool(np.all(cos >= CHECK_COSINE))


def _onnx_build(fp32: Path, out: Path, quantize: str) -> None:
    if quantize == "none":
        fp32.replace(out)
        return
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings(), _quiet_logging():
        warnings.simplefilter("ignore")
        quantize_dynamic(
            str(fp32),
            str(out),
            per_channel=True,
            weight_type=QuantType.QInt8,
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def _openvino_build(fp32: Path, out: Path, quantize: str) -> None:
    import openvino as ov

    model = ov.Core().read_model(str(fp32))
    if quantize == "int8":
        import logging

        import nncf

        nncf.set_log_level(logging.ERROR)  # no bit-width table on the console
        sink = io.StringIO()  # nor its progress bar (stdout carries a command's --json)
        with _quiet_logging(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    ov.save_model(model, str(out), compress_to_fp16=False)
