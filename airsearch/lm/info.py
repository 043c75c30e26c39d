"""What the ``airsearch lm`` commands report about a target LM folder (typed results)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airsearch.lm.model import LM_INFO_FILE, has_chat_template, load_lm
from airsearch.results import Result, omitted_when_none


@dataclass(frozen=True)
class LmInfo(Result):
    """Architecture, size, tokenizer, formatting and provenance of a target LM folder."""

    path: str
    source: str
    architecture: str
    num_parameters: int
    vocab_size: int
    hidden_size: int | None
    layers: int | None
    heads: int | None
    dtype: str
    chat_template: bool
    format: str  # how examples are turned into text: the chat template or Question:/Answer:
    special_tokens: dict[str, str | None]
    recorded: dict[str, Any]  # the provenance airsearch recorded (read_lm_record)
    fingerprint: str | None = omitted_when_none()  # weights fingerprint, when asked for


@dataclass(frozen=True)
class TinyLmSummary(Result):
    """What ``airsearch lm build-tiny`` wrote."""

    out: str
    examples: int
    corpus_fingerprint: str
    num_parameters: int | None
    vocab_size: int | None
    loss_first: float | None
    loss_last: float | None
    seconds_per_step: float | None
    seconds: float


@dataclass(frozen=True)
class GgufImportSummary(Result):
    """What ``airsearch lm import-gguf`` wrote: the folder and the provenance recorded in it."""

    out: str
    record: dict[str, Any]  # read_lm_record of the new folder: source, architecture, num_parameters, ...
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"out": self.out, **self.record, "seconds": self.seconds}


def read_lm_record(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance airsearch recorded when it built or imported the model (``airsearch_lm.json``),
    without the loss curve; ``{}`` for a folder airsearch did not make."""
    f = Path(path) / LM_INFO_FILE
    if not f.exists():
        return {}
    data = json.loads(f.read_text())
    data.pop("loss_curve", None)
    return data


def tiny_lm_summary(
    path: str | os.PathLike, *, examples: int, corpus_fingerprint: str, seconds: float
) -> TinyLmSummary:
    """The summary of a tiny LM folder just built from ``examples`` corpus rows in ``seconds``."""
    rec = read_lm_record(path)
    return TinyLmSummary(
        out=str(path),
        examples=examples,
        corpus_fingerprint=corpus_fingerprint,
        num_parameters=rec.get("num_parameters"),
        vocab_size=rec.get("vocab_size"),
        loss_first=rec.get("loss_first"),
        loss_last=rec.get("loss_last"),
        seconds_per_step=rec.get("seconds_per_step"),
        seconds=round(seconds, 2),
    )


def gguf_import_summary(path: str | os.PathLike, *, seconds: float) -> GgufImportSummary:
    """The summary of a folder just imported from a GGUF file in ``seconds``."""
    return GgufImportSummary(out=str(path), record=read_lm_record(path), seconds=round(seconds, 2))


def lm_info(model_dir: str | os.PathLike, *, fingerprint: bool = False) -> LmInfo:
    """Architecture, size, tokenizer, formatting and provenance of a target LM folder.

    ``fingerprint`` also hashes the weights (the fingerprint artefacts record and compare).
    """
    lm = load_lm(model_dir, device="cpu")
    cfg, tok = lm.model.config, lm.tokenizer
    chat = has_chat_template(tok)
    return LmInfo(
        path=str(Path(model_dir)),
        source=lm.source,
        architecture=type(lm.model).__name__,
        num_parameters=lm.num_parameters(),
        vocab_size=len(tok),
        hidden_size=getattr(cfg, "hidden_size", None),
        layers=getattr(cfg, "num_hidden_layers", None),
        heads=getattr(cfg, "num_attention_heads", None),
        dtype=str(next(lm.model.parameters()).dtype).removeprefix("torch."),
        chat_template=chat,
        format="chat template" if chat else "Question:/Answer: template",
        special_tokens={
            k: getattr(tok, k, None) for k in ("bos_token", "eos_token", "pad_token", "unk_token")
        },
        recorded=read_lm_record(model_dir),
        fingerprint=lm.fingerprint if fingerprint else None,
    )
