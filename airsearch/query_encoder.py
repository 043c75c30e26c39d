"""The torch-free query encoder: ONNX Runtime and the ``tokenizers`` library, no torch or transformers.

A query against an index built on the torch runtime (the default) needs one vector from the index's
encoder. Importing torch and transformers' model code costs seconds; running a one-row query costs
milliseconds. So the first command that loads the encoder with torch (``index``, or a ``query`` /
``select`` that finds no export) also writes, once per encoder, a **query export** under
``$AIRSEARCH_CACHE/query/<weights fingerprint>-<format>/`` (:mod:`airsearch.query_export`):

* ``model.onnx``: the whole encoder (transformer, mean pooling, projection; AirRep §3.1) in fp32, the
  graph :func:`airsearch.compiled.export_onnx` makes;
* ``tokenizer.json``: the encoder's own fast tokenizer, run here by ``tokenizers``;
* ``query_encoder.json``: the weights fingerprint, the dimension, the input rule's settings and the
  template tokens (markers, ``[CLS]`` / ``[SEP]``), so that :func:`~airsearch.encoder_inputs.template_input_ids`
  builds exactly the token ids :meth:`airsearch.encoder.AirRepEncoder.input_ids` builds.

The export is kept only if, on check rows, its token ids equal the torch encoder's and its vectors
equal them to 1e-5 relative; otherwise the record says why and queries keep using torch. Its vectors
therefore stand for the torch encoder's: its fingerprint is the weights fingerprint and its runtime
label ``torch``, so it passes the index's encoder check.

Which encoder a folder holds is remembered too (:func:`remember_folder`): the folder's file names,
sizes and modification times map to the weights fingerprint, so a later query checks the index's
encoder fingerprint without hashing the weights (which needs torch). Any change to the folder's files
misses the record, and that query takes the torch path again (and records the folder anew).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from airsearch.atomic import write_json_atomic
from airsearch.data.example import Example
from airsearch.encoder_inputs import EncoderInput, TemplateTokens, template_input_ids
from airsearch.fingerprint import fingerprint_json
from airsearch.runtime import cache_root

QUERY_FORMAT = "airsearch-query-onnx-v1"  # changes when the export's files or their meaning change
META_FILE = "query_encoder.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_dir(fingerprint: str) -> Path:
    """The query export of the encoder with weights fingerprint ``fingerprint``."""
    return cache_root() / "query" / f"{fingerprint[:32]}-{QUERY_FORMAT}"


class QueryEncoder:
    """Encodes query examples with a query export (see the module docstring): ``encode(examples)``
    gives the vectors the torch encoder gives, float32 ``[n, dim]``."""

    runtime_label = "torch"  # its vectors are the torch encoder's (checked to 1e-5 when exported)
    precision = "f32"

    def __init__(self, folder: Path, meta: dict[str, Any], *, threads: int = 0) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder, self.meta = folder, meta
        self.fingerprint: str = meta["fingerprint"]
        self.dim: int = int(meta["dim"])
        self.inputs: tuple[str, ...] = tuple(meta["inputs"])
        self.pad_id: int = int(meta["pad_id"])
        self.tokens = TemplateTokens(
            *(tuple(meta["template_tokens"][k]) for k in ("q_mark", "a_mark", "head", "tail"))
        )
        self._tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self._tokenizer.no_truncation()  # the input rule cuts, not the tokenizer
        self._tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("mlas.enable_gemm_fastmath_arm64_bfloat16", "0")  # fp32 GEMMs
        # no busy-waiting pool threads: after each run they spun on the cores that the reranker's torch
        # (or another process) needs, doubling a query encode's CPU time for no gain in wall time
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tokenizer.encode_batch(texts, add_special_tokens=False)] if texts else []

    def input_ids(self, examples: Sequence[Example]) -> list[EncoderInput]:
        """The encoder token ids of each example (the input rule of :mod:`airsearch.encoder_inputs`)."""
        return template_input_ids(
            self._tokenize,
            [e.prompt for e in examples],
            [e.response for e in examples],
            self.tokens,
            max_seq_length=int(self.meta["max_seq_length"]),
            max_prompt_words=int(self.meta["max_prompt_words"]),
        )

    def encode_ids(self, ids: Sequence[Sequence[int]], *, batch_size: int = 64) -> np.ndarray:
        """Vectors ``[n, dim]`` of token-id inputs (batches of similar lengths, returned in input order)."""
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for s in range(0, len(order), batch_size):
            rows = order[s : s + batch_size]
            width = max(len(ids[i]) for i in rows)
            input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                input_ids[r, : len(ids[i])], mask[r, : len(ids[i])] = ids[i], 1
            feeds = {
                "input_ids": input_ids,
                "attention_mask": mask,
                "token_type_ids": np.zeros_like(input_ids),
            }
            out[rows] = self._session.run(None, {k: feeds[k] for k in self.inputs})[0]
        return out

    def encode(
        self, examples: Sequence[Example], *, batch_size: int = 64, show_progress: bool | None = None
    ) -> np.ndarray:
        """AirRep vectors of ``examples``, float32 ``[n, dim]`` (queries are few: no progress bar)."""
        if len(examples) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_ids(self.input_ids(examples), batch_size=batch_size)


def open_query_encoder(fingerprint: str) -> QueryEncoder | None:
    """The query export of the encoder ``fingerprint``, or ``None`` when there is none, it was found
    unusable when made, or ONNX Runtime is not installed (the caller then uses torch)."""
    import importlib.util

    folder = export_dir(fingerprint)
    meta = _read_json(folder / META_FILE)
    if not meta or not meta.get("usable") or meta.get("fingerprint") != fingerprint:
        return None
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    return QueryEncoder(folder, meta)


# ------------------------------------------------------------------------------ folder -> fingerprint
def folder_signature(folder: Path) -> str:
    """A fingerprint of a folder's file names, sizes and modification times (no file is read)."""
    files = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            files.append([str(p.relative_to(folder)), st.st_size, st.st_mtime_ns])
    return fingerprint_json(files)


def _folder_record(folder: Path) -> Path:
    return cache_root() / "query" / "folders" / f"{fingerprint_json(str(folder.resolve()))}.json"


def remember_folder(folder: Path, fingerprint: str) -> None:
    """Record that ``folder``, as its files are now, holds the encoder with weights ``fingerprint``."""
    record = {
        "folder": str(folder.resolve()),
        "signature": folder_signature(folder),
        "fingerprint": fingerprint,
    }
    path = _folder_record(folder)
    if _read_json(path) != record:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, record)


def remembered_fingerprint(folder: Path) -> str | None:
    """The weights fingerprint recorded for ``folder``, if its files have not changed since."""
    record = _read_json(_folder_record(folder))
    if not record or record.get("folder") != str(folder.resolve()):
        return None
    return record.get("fingerprint") if record.get("signature") == folder_signature(folder) else None


def fast_query_encoder(source: str | None, fingerprint: str) -> QueryEncoder | None:
    """The torch-free encoder for an index whose (torch-runtime) encoder is ``source`` with weights
    ``fingerprint``, or ``None`` when the folder is not known to hold exactly that encoder, or no
    usable export exists. A hub id that is not a local folder also gives ``None``."""
    from airsearch.encoder_source import resolve_encoder_source

    try:
        folder = Path(resolve_encoder_source(source))
    except Exception:  # noqa: BLE001 - the torch path reports a bad source in its own words
        return None
    if not folder.is_dir() or remembered_fingerprint(folder) != fingerprint:
        return None
    return open_query_encoder(fingerprint)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
