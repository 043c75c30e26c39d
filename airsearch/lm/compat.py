"""Models that a gradient method combines must be one model at different weights.

DDA sums gradient scores over the fine-tuning checkpoints th_1..th_N and subtracts the base model
th_0's (DDA Eqs. 9-11); TracIn sums over checkpoints. Each model tokenizes the examples itself, so a
checkpoint with another tokenizer scores other token ids (two vocabularies in one score), and one with
another architecture has other parameters. :func:`require_same_model` refuses such a model, naming the
first field that differs, before any gradient is taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airsearch.errors import InputError

# config fields that decide the parameters and what the ids mean
ARCHITECTURE_FIELDS = (
    "model_type",
    "architectures",
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "tie_word_embeddings",
)
TOKENIZER_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "chat_template")


def _config(lm: Any) -> Any:
    model = lm.model
    return getattr(model, "config", None) or getattr(getattr(model, "base_model", None), "config", None)


def model_difference(target: Any, other: Any) -> str | None:
    """How ``other`` (a :class:`~airsearch.lm.model.TargetLM`) differs from ``target`` in tokenizer or
    architecture, as ``"<field> (<other's> vs the target's <target's>)"``; ``None`` when they agree."""
    ta, tb = target.tokenizer, other.tokenizer
    va, vb = ta.get_vocab(), tb.get_vocab()
    if va != vb:
        token = next((t for t in sorted(set(va) ^ set(vb)) or sorted(va) if va.get(t) != vb.get(t)), "?")
        return (
            f"tokenizer vocabulary ({len(vb)} vs the target's {len(va)} entries; token {token!r} "
            f"is id {vb.get(token)} vs {va.get(token)})"
        )
    for name in TOKENIZER_FIELDS:
        a, b = getattr(ta, name, None), getattr(tb, name, None)
        if a != b:
            return f"tokenizer field '{name}' ({_short(b)} vs the target's {_short(a)})"
    ca, cb = _config(target), _config(other)
    for name in ARCHITECTURE_FIELDS:
        a, b = getattr(ca, name, None), getattr(cb, name, None)
        if a != b:
            return f"architecture field '{name}' ({_short(b)} vs the target's {_short(a)})"
    return None


def require_same_model(target: Any, others: Sequence[tuple[Any, str]]) -> None:
    """Refuse any ``(model, config field)`` of ``others`` whose tokenizer or architecture differs from
    ``target``'s; the error names the differing field, the model's folder and the config field."""
    for lm, field in others:
        diff = model_difference(target, lm)
        if diff is not None:
            raise InputError(
                f"this model's {diff} differs from the target {getattr(target, 'source', '?')}; the base "
                "model and every checkpoint must share the target's tokenizer and architecture",
                field=field,
                path=getattr(lm, "source", None),
            )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
