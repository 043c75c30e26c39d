"""The AirRep encoder's input rule as token ids, apart from any tokenizer library (no torch).

:func:`template_input_ids` turns examples into encoder token ids under the answer-preserving budget
(:data:`airsearch.encoder.INPUT_RULE`, docs/methods.md §1): ``[CLS] "Question: " prompt "\\nAnswer: "
response [SEP]`` within ``max_seq_length`` tokens, the response kept first and the prompt keeping its
last tokens. It is the one implementation behind both :meth:`airsearch.encoder.AirRepEncoder.input_ids`
(transformers' tokenizer) and the torch-free query encoder (:mod:`airsearch.query_encoder`, the same
tokenizer run by the ``tokenizers`` library); each passes its own ``tokenize`` function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from airsearch.data.example import cap_prompt_words

# How an example is cut to max_seq_length; recorded in the encoder info and its fingerprint.
INPUT_RULE = "keep-response-cut-prompt-left-v2"
LEGACY_INPUT_RULE = "cut-right-v1"  # before v2: the tokenizer cut the templated text from the right
EncoderInput = tuple[int, ...]  # one example's encoder token ids, special tokens included
Tokenize = Callable[[list[str]], list[list[int]]]  # texts -> token ids, no special tokens


@dataclasses.dataclass(frozen=True)
class TemplateTokens:
    """The token ids the template adds around an example: the ``"Question: "`` and ``"\\nAnswer: "``
    markers, and the special tokens the tokenizer puts before and after one sequence."""

    q_mark: tuple[int, ...]
    a_mark: tuple[int, ...]
    head: tuple[int, ...]
    tail: tuple[int, ...]


def template_input_ids(
    tokenize: Tokenize,
    prompts: Sequence[str],
    responses: Sequence[str],
    tokens: TemplateTokens,
    *,
    max_seq_length: int,
    max_prompt_words: int,
) -> list[EncoderInput]:
    """Encoder token ids of each (prompt, response) under the answer-preserving budget."""
    if not prompts:
        return []
    prompt_ids = tokenize([cap_prompt_words(p, max_prompt_words) for p in prompts])
    response_ids = tokenize(list(responses))
    budget = max_seq_length - len(tokens.head) - len(tokens.tail)
    return [
        tokens.head + budget_input(tokens.q_mark, p, tokens.a_mark, r, budget) + tokens.tail
        for p, r in zip(prompt_ids, response_ids, strict=True)
    ]


def budget_input(
    q_mark: Sequence[int], prompt: Sequence[int], a_mark: Sequence[int], response: Sequence[int], budget: int
) -> tuple[int, ...]:
    """``q_mark + prompt + a_mark + response`` cut to ``budget`` tokens, the response kept first.

    The response keeps up to ``budget - len(q_mark) - len(a_mark)`` tokens from its beginning; the
    prompt gets the rest, keeping its last tokens (nearest the answer, as the official AirRep code's
    ``input_ids[-max_len:]`` does). If even the markers do not fit, the tail of the sequence is cut.
    """
    room = max(budget - len(q_mark) - len(a_mark), 0)
    response = tuple(response[:room])
    keep = room - len(response)
    prompt = tuple(prompt[max(len(prompt) - keep, 0) :]) if keep > 0 else ()
    return (tuple(q_mark) + prompt + tuple(a_mark) + response)[:budget]
