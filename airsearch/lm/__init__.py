"""The target language model: loading, formatting, the masked response NLL, fine-tuning, builders.

- :mod:`airsearch.lm.model`: :class:`TargetLM`, :func:`load_lm`, :func:`save_lm`, :func:`encode_examples`
- :mod:`airsearch.lm.loss`: :func:`masked_token_nll`, :func:`example_losses`
- :mod:`airsearch.lm.finetune`: :class:`FinetuneConfig`, :func:`finetune`
- :mod:`airsearch.lm.tiny`: :class:`TinyLMConfig`, :func:`build_tiny_lm` (a CPU-sized target LM)
- :mod:`airsearch.lm.info`: :func:`lm_info` (what ``airsearch lm info`` shows)
- :mod:`airsearch.lm.gguf`: :func:`import_gguf` (GGUF file -> plain safetensors HF folder)
"""

from airsearch.lm.finetune import FinetuneConfig, finetune
from airsearch.lm.info import LmInfo, lm_info, read_lm_record
from airsearch.lm.loss import batch_loss, example_losses, masked_token_nll
from airsearch.lm.model import IGNORE_INDEX, TargetLM, encode_examples, load_lm, save_lm, tokenize_example
from airsearch.lm.tiny import TinyLMConfig, build_tiny_lm

__all__ = [
    "FinetuneConfig",
    "TinyLMConfig",
    "build_tiny_lm",
    "finetune",
    "IGNORE_INDEX",
    "LmInfo",
    "TargetLM",
    "batch_loss",
    "encode_examples",
    "example_losses",
    "lm_info",
    "load_lm",
    "masked_token_nll",
    "read_lm_record",
    "save_lm",
    "tokenize_example",
]
