"""The target language model: loading, formatting, the masked response NLL, fine-tuning, builders.

- :mod:`airsearch.lm.model`: :class:`TargetLM`, :func:`load_lm`, :func:`save_lm`, :func:`encode_examples`
- :mod:`airsearch.lm.loss`: :func:`masked_token_nll`, :func:`example_losses`
- :mod:`airsearch.lm.finetune`: :class:`FinetuneConfig`, :func:`finetune`
- :mod:`airsearch.lm.tiny`: :class:`TinyLMConfig`, :func:`build_tiny_lm` (a CPU-sized target LM)
- :mod:`airsearch.lm.info`: :func:`lm_info` (what ``airsearch lm info`` shows)
- :mod:`airsearch.lm.gguf`: :func:`import_gguf` (GGUF file -> plain safetensors HF folder)
"""

from typing import TYPE_CHECKING

from airsearch.lazy import lazy_exports

if TYPE_CHECKING:
    from airsearch.lm.finetune import FinetuneConfig, finetune
    from airsearch.lm.info import LmInfo, lm_info, read_lm_record
    from airsearch.lm.loss import batch_loss, example_losses, masked_token_nll
    from airsearch.lm.model import IGNORE_INDEX, TargetLM, encode_examples, load_lm, save_lm, tokenize_example
    from airsearch.lm.tiny import TinyLMConfig, build_tiny_lm

_EXPORTS = {
    "FinetuneConfig": "finetune",
    "finetune": "finetune",
    "LmInfo": "info",
    "lm_info": "info",
    "read_lm_record": "info",
    "batch_loss": "loss",
    "example_losses": "loss",
    "masked_token_nll": "loss",
    "IGNORE_INDEX": "model",
    "TargetLM": "model",
    "encode_examples": "model",
    "load_lm": "model",
    "save_lm": "model",
    "tokenize_example": "model",
    "TinyLMConfig": "tiny",
    "build_tiny_lm": "tiny",
}
__all__ = [
    "FinetuneConfig",
    "IGNORE_INDEX",
    "LmInfo",
    "TargetLM",
    "TinyLMConfig",
    "batch_loss",
    "build_tiny_lm",
    "encode_examples",
    "example_losses",
    "finetune",
    "lm_info",
    "load_lm",
    "masked_token_nll",
    "read_lm_record",
    "save_lm",
    "tokenize_example",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
