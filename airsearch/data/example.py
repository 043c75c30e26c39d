"""The unit of attribution: one training or test example, z = (prompt, response)."""

from __future__ import annotations

import dataclasses
from typing import Any

# AirRep's text template (methods.md §1, from the official code): the prompt is cut to its first
# 256 words, the response is kept whole; the tokenizer then truncates to 512 tokens.
AIRREP_PROMPT_WORDS = 256
QUESTION_PREFIX = "Question: "
ANSWER_PREFIX = "\nAnswer: "


@dataclasses.dataclass(frozen=True)
class Example:
    """One example. ``prompt`` is empty for pre-training style text rows."""

    id: str
    prompt: str
    response: str
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return {"id": self.id, "prompt": self.prompt, "response": self.response, **self.metadata}


def airrep_text(prompt: str, response: str, max_prompt_words: int = AIRREP_PROMPT_WORDS) -> str:
    """The encoder input: ``"Question: " + first 256 words of prompt + "\\nAnswer: " + response``."""
    words = prompt.split()
    if len(words) > max_prompt_words:
        prompt = " ".join(words[:max_prompt_words])
    return QUESTION_PREFIX + prompt + ANSWER_PREFIX + response
