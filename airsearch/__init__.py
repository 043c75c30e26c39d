"""airsearch: training-data attribution search.

The public Python API. Names are imported lazily so that ``import airsearch`` stays cheap; every CLI
command is a thin layer over one of these.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "AirRepEncoder": "airsearch.encoder",
    "EncoderInfo": "airsearch.encoder",
    "Example": "airsearch.data.example",
    "load_corpus": "airsearch.data.corpus",
    "iter_corpus": "airsearch.data.corpus",
    "load_queries": "airsearch.data.corpus",
    "Corpus": "airsearch.data.corpus",
    "write_rows": "airsearch.data.corpus",
    "sample_corpus_path": "airsearch.data",
    "sample_queries_path": "airsearch.data",
    "AirsearchError": "airsearch.errors",
    "InputError": "airsearch.errors",
    "FingerprintMismatch": "airsearch.errors",
    "group_score": "airsearch.scoring",
    "StreamingGroupScore": "airsearch.scoring",
    "blocked_dot_topk": "airsearch.scoring",
    "SplitLabels": "airsearch.labels",
    "normalise_losses": "airsearch.labels",
    "lds": "airsearch.metrics",
    "TargetLM": "airsearch.lm.model",
    "load_lm": "airsearch.lm.model",
    "save_lm": "airsearch.lm.model",
    "encode_examples": "airsearch.lm.model",
    "masked_token_nll": "airsearch.lm.loss",
    "example_losses": "airsearch.lm.loss",
    "FinetuneConfig": "airsearch.lm.finetune",
    "finetune": "airsearch.lm.finetune",
    "TinyLMConfig": "airsearch.lm.tiny",
    "build_tiny_lm": "airsearch.lm.tiny",
    "import_gguf": "airsearch.lm.gguf",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'airsearch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
