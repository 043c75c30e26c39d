"""The unit of attribution: one training or test example, z = (prompt, response)."""

from __future__ import annotations

import dataclasses
from typing import Any

# AirRep's text template (methods.md §1, from the official code): the prompt is cut to its first
# 256 words; the encoder then fits the tokens to its budget keeping the response (airsearch.encoder).
AIRREP_PROMPT_WORDS = 256
QUESTION_PREFIX = "Question: "
ANSWER_PREFIX = "\nAnswer: "


def normalize_text(text: str) -> str:
    """The one text normalisation of every example, for every method: whitespace at either end is
    removed (an LM tokenizer would make a trailing space a token of its own, and so change every
    gradient score; the AirRep encoder and BM25 ignore it anyway). Text inside is kept as it is."""
    return text.strip() if isinstance(text, str) else text


@dataclasses.dataclass(frozen=True)
class Example:
    """One example. ``prompt`` is empty for pre-training style text rows. Both texts are normalised
    on construction (:func:`normalize_text`), whichever command or file they come from."""

    id: str
    prompt: str
    response: str
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", normalize_text(self.prompt))
        object.__setattr__(self, "response", normalize_text(self.response))

    def to_row(self) -> dict[str, Any]:
        return {"id": self.id, "prompt": self.prompt, "response": self.response, **self.metadata}


def airrep_text(prompt: str, response: str, max_prompt_words: int = AIRREP_PROMPT_WORDS) -> str:
    """The templated text: ``"Question: " + first 256 words of prompt + "\\nAnswer: " + response``.

    The encoder does not cut this text; it builds token ids with the same template under an
    answer-preserving budget (:meth:`airsearch.encoder.AirRepEncoder.input_ids`).
    """
    return QUESTION_PREFIX + cap_prompt_words(prompt, max_prompt_words) + ANSWER_PREFIX + response


def cap_prompt_words(prompt: str, max_words: int = AIRREP_PROMPT_WORDS) -> str:
    """The prompt cut to its first ``max_words`` words (AirRep's official template, methods.md §1)."""
    words = prompt.split()
    return " ".join(words[:max_words]) if len(words) > max_words else prompt


def preview(text: str, n: int) -> str:
    """``text`` on one line (whitespace runs become one space), cut to ``n`` characters with ``…``."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[: max(n - 1, 0)] + "…"
