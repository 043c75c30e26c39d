"""Writing the query export that :mod:`airsearch.query_encoder` reads (this side needs torch).

:func:`prepare_fast_queries` is called wherever the torch encoder is loaded for an index (``index``,
and a ``query`` / ``select`` that took the torch path): it remembers which encoder the folder holds
and, once per encoder, exports it (:func:`airsearch.compiled.export_onnx`, fp32) with its tokenizer and
template tokens, atomically. The export is kept as usable only if, on :data:`CHECK_ROWS`, the
``tokenizers`` token ids equal transformers' and the ONNX vectors equal torch's to :data:`RTOL`
relative (the fused graph first, then the plain one); otherwise the record says why and nothing else
changes: queries keep using torch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from airsearch.atomic import atomic_path, write_json_atomic
from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder
from airsearch.progress import announce
from airsearch.query_encoder import (
    META_FILE,
    MODEL_FILE,
    QUERY_FORMAT,
    TOKENIZER_FILE,
    QueryEncoder,
    export_dir,
    remember_folder,
)

RTOL = 1e-5  # a query vector equals the index-time vector to 1e-5 relative (issue 28)
# rows the export must reproduce: empty prompt, unicode, stray whitespace, and one over the token budget
CHECK_ROWS = [
    Example("a", "What is the capital of France?", "Paris."),
    Example("b", "", "ok"),
    Example("c", "  Übersetze: «naïve café» ", "naive cafe \n"),
    Example("d", "tell me a long story " * 60, "once upon a time " * 200),
]


def prepare_fast_queries(encoder: AirRepEncoder, folder: Path | None) -> bool:
    """Remember that ``folder`` holds ``encoder`` and write its query export if there is none yet;
    whether a usable export exists. Never raises for a failed export (it is an optimisation)."""
    if encoder.runtime_label != "torch" or importlib.util.find_spec("onnxruntime") is None:
        return False
    fingerprint = encoder.weights_fingerprint
    target = export_dir(fingerprint)
    try:
        if not (target / META_FILE).exists():
            announce("preparing the torch-free query encoder (once per encoder)")
            try:
                _write_export(encoder, fingerprint, target)
            except Exception as e:  # noqa: BLE001 - any failure only means queries keep using torch
                _write_unusable(encoder, fingerprint, target, repr(e)[:300])
        if folder is not None and folder.is_dir():
            remember_folder(folder, fingerprint)
        return bool(json.loads((target / META_FILE).read_text()).get("usable"))
    except OSError:  # an unwritable cache: queries keep using torch
        return False


def _write_unusable(encoder: AirRepEncoder, fingerprint: str, target: Path, why: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, is_dir=True) as tmp:
        write_json_atomic(tmp / META_FILE, _meta(encoder, fingerprint, usable=False, why=why))


def _meta(encoder: AirRepEncoder, fingerprint: str, **extra: Any) -> dict[str, Any]:
    from airsearch.compiled import _input_names

    t = encoder.template_tokens()
    return {
        "format": QUERY_FORMAT,
        "fingerprint": fingerprint,
        "dim": encoder.dim,
        "inputs": list(_input_names(encoder.model)),
        "pad_id": encoder.model.tokenizer.pad_token_id or 0,
        "max_seq_length": encoder.info.max_seq_length,
        "max_prompt_words": encoder.info.max_prompt_words,
        "input_rule": encoder.info.input_rule,
        "template_tokens": {"q_mark": t.q_mark, "a_mark": t.a_mark, "head": t.head, "tail": t.tail},
        **extra,
    }


def _write_export(encoder: AirRepEncoder, fingerprint: str, target: Path) -> None:
    from airsearch.compiled import _input_names, export_onnx

    backend = getattr(encoder.model.tokenizer, "backend_tokenizer", None)
    meta = _meta(encoder, fingerprint)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, is_dir=True) as tmp:
        if backend is None:
            write_json_atomic(tmp / META_FILE, {**meta, "usable": False, "why": "no fast tokenizer"})
            return
        (tmp / TOKENIZER_FILE).write_text(backend.to_str())
        with _tokenizer_warnings_off():  # the over-budget check row is cut by the input rule, on purpose
            reference_ids = [list(x) for x in encoder.input_ids(CHECK_ROWS)]
            reference = encoder.encode(CHECK_ROWS, show_progress=False)
        why = ""
        for fuse in (True, False):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_onnx(
                    encoder.model, tmp / MODEL_FILE, _input_names(encoder.model), reference_ids, fuse=fuse
                )
            why = _disagreement(QueryEncoder(tmp, meta, threads=1), reference_ids, reference)
            if not why:
                break
        write_json_atomic(
            tmp / META_FILE, {**meta, "usable": not why, "fused": fuse, **({"why": why} if why else {})}
        )


@contextlib.contextmanager
def _tokenizer_warnings_off() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _disagreement(fast: QueryEncoder, ids: list[list[int]], reference: np.ndarray) -> str:
    """Why ``fast`` does not reproduce the torch encoder on :data:`CHECK_ROWS` ('' when it does)."""
    got_ids = [list(x) for x in fast.input_ids(CHECK_ROWS)]
    if got_ids != ids:
        return "the tokenizers library gives other token ids than transformers"
    got = fast.encode(CHECK_ROWS)
    scale = float(np.abs(reference).max())
    if not np.allclose(got, reference, rtol=RTOL, atol=RTOL * scale):
        return f"ONNX vectors differ from torch by up to {float(np.abs(got - reference).max()) / scale:.2e} relative"
    return ""
