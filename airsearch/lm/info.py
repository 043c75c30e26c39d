"""What ``airsearch lm info`` reports about a target LM folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from airsearch.lm.model import LM_INFO_FILE, has_chat_template, load_lm


def read_lm_record(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance airsearch recorded when it built or imported the model (``airsearch_lm.json``),
    without the loss curve; ``{}`` for a folder airsearch did not make."""
    f = Path(path) / LM_INFO_FILE
    if not f.exists():
        return {}
    data = json.loads(f.read_text())
    data.pop("loss_curve", None)
    return data


def lm_info(model_dir: str | os.PathLike, *, fingerprint: bool = False) -> dict[str, Any]:
    """Architecture, size, tokenizer, formatting and provenance of a target LM folder.

    ``fingerprint`` also hashes the weights (the fingerprint artefacts record and compare).
    """
    lm = load_lm(model_dir, device="cpu")
    cfg, tok = lm.model.config, lm.tokenizer
    chat = has_chat_template(tok)
    result: dict[str, Any] = {
        "path": str(Path(model_dir)),
        "source": lm.source,
        "architecture": type(lm.model).__name__,
        "num_parameters": lm.num_parameters(),
        "vocab_size": len(tok),
        "hidden_size": getattr(cfg, "hidden_size", None),
        "layers": getattr(cfg, "num_hidden_layers", None),
        "heads": getattr(cfg, "num_attention_heads", None),
        "dtype": str(next(lm.model.parameters()).dtype).removeprefix("torch."),
        "chat_template": chat,
        "format": "chat template" if chat else "Question:/Answer: template",
        "special_tokens": {
            k: getattr(tok, k, None) for k in ("bos_token", "eos_token", "pad_token", "unk_token")
        },
        "recorded": read_lm_record(model_dir),
    }
    if fingerprint:
        result["fingerprint"] = lm.fingerprint
    return result
