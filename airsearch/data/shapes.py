"""Row shapes: how a raw row becomes (prompt, response, metadata).

Detected per row, in this order (the first key present decides the shape):

=================  ==========================================================================
``messages``       a chat list of ``{"role", "content"}``; the final turn must be ``assistant`` and
                   is the response. The earlier turns are the prompt: a single ``user`` turn is its
                   content as is; otherwise each turn is rendered ``"<role>: <content>"``, one per
                   line (joined with ``"\\n"``). Content may be a string or a list of
                   ``{"type": "text", "text": ...}`` parts.
``prompt``         ``prompt`` + ``response``.
``instruction``    ``instruction`` (+ optional ``input``) + ``output``; the prompt is
                   ``instruction + "\\n\\n" + input`` when ``input`` is non-empty, else ``instruction``.
``inputs``         ``inputs`` + ``targets``.
``text``           pre-training style: the prompt is ``""`` and the response is ``text``.
=================  ==========================================================================

A field mapping (``prompt_field`` / ``response_field``) overrides detection: the named columns are the
prompt and response. With only ``response_field`` given, the prompt is the ``prompt`` column if the row
has one, else ``""``; ``prompt_field=""`` means no prompt. With only ``prompt_field`` given, the
response is the ``response`` column.

Required fields must be non-empty strings (``input`` may be empty or null). Every column that the
shape does not consume is kept, JSON-able, as metadata. Metadata keys that would clash with the
example's own fields (``id``, ``prompt``, ``response``) are renamed ``orig_<key>``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from airsearch.data.readers import jsonable

RESERVED_KEYS = ("id", "prompt", "response")


class RowProblem(Exception):
    """A row that cannot be read as an example; ``field`` names the culprit when there is one."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


@dataclasses.dataclass(frozen=True)
class FieldMapping:
    """User override of shape detection (``--prompt-field`` / ``--response-field``)."""

    prompt_field: str | None = None
    response_field: str | None = None

    @property
    def active(self) -> bool:
        return self.prompt_field is not None or self.response_field is not None


def _text(row: dict[str, Any], field: str, *, required: bool = True) -> str:
    """The string in ``row[field]``; required fields must be present, strings and non-empty."""
    value = row.get(field)
    if value is None:
        if required:
            raise RowProblem(
                "missing required field" if field not in row else "required field is null", field
            )
        return ""
    if not isinstance(value, str):
        raise RowProblem(f"field must be a string, got {type(value).__name__}", field)
    if required and not value.strip():
        raise RowProblem("required field is empty", field)
    return value


def _content(turn: Any, index: int) -> tuple[str, str]:
    if not isinstance(turn, dict):
        raise RowProblem(f"messages[{index}] is not an object with role and content", "messages")
    role, content = turn.get("role"), turn.get("content")
    if not isinstance(role, str) or not role:
        raise RowProblem(f"messages[{index}] has no role", "messages")
    if isinstance(content, list):  # multi-part content: keep the text parts
        parts = [p.get("text") if isinstance(p, dict) else p for p in content]
        if not all(isinstance(p, str) for p in parts):
            raise RowProblem(f"messages[{index}].content has non-text parts", "messages")
        content = "\n".join(parts)
    if not isinstance(content, str):
        raise RowProblem(f"messages[{index}].content must be a string", "messages")
    return role, content


def render_chat(messages: Any, *, require_response: bool = True) -> tuple[str, str]:
    """(prompt, response) of a chat list, as described in the module docstring."""
    if not isinstance(messages, list) or not messages:
        raise RowProblem("must be a non-empty list of {role, content} turns", "messages")
    turns = [_content(t, i) for i, t in enumerate(messages)]
    response = ""
    if turns[-1][0] == "assistant":
        response = turns.pop()[1]
        if not response.strip():
            raise RowProblem("the final assistant turn is empty", "messages")
    elif require_response:
        raise RowProblem(f"the final turn must be the assistant's (got '{turns[-1][0]}')", "messages")
    if len(turns) == 1 and turns[0][0] == "user":
        return turns[0][1], response
    return "\n".join(f"{role}: {content}" for role, content in turns), response


def extract(
    row: dict[str, Any],
    mapping: FieldMapping,
    *,
    require_response: bool = True,
) -> tuple[str, str, set[str]]:
    """``(prompt, response, consumed column names)`` of one row, or :class:`RowProblem`."""
    if mapping.active:
        pf = mapping.prompt_field
        rf = mapping.response_field or "response"
        if pf is None:
            pf = "prompt" if "prompt" in row else ""
        prompt = _text(row, pf) if pf else ""
        response = _text(row, rf, required=require_response)
        return prompt, response, {pf, rf} - {""}
    if "messages" in row:
        prompt, response = render_chat(row["messages"], require_response=require_response)
        return prompt, response, {"messages"}
    if "prompt" in row:
        return _text(row, "prompt"), _text(row, "response", required=require_response), {"prompt", "response"}
    if "instruction" in row:
        instruction = _text(row, "instruction")
        extra = _text(row, "input", required=False)
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        return prompt, _text(row, "output", required=require_response), {"instruction", "input", "output"}
    if "inputs" in row:
        return _text(row, "inputs"), _text(row, "targets", required=require_response), {"inputs", "targets"}
    if "text" in row:
        return "", _text(row, "text"), {"text"}
    for partner, name in (("response", "prompt"), ("output", "instruction"), ("targets", "inputs")):
        if partner in row:
            raise RowProblem(f"missing required field (the row has '{partner}')", name)
    keys = sorted(row)[:8]
    raise RowProblem(
        f"unknown row shape (columns {keys}); expected prompt+response, instruction+output, "
        "inputs+targets, messages or text, or name the columns with --prompt-field/--response-field"
    )


def metadata_of(row: dict[str, Any], consumed: set[str]) -> dict[str, Any]:
    """Every column not consumed by the shape or the id, JSON-able; reserved names get ``orig_``."""
    meta = {}
    for key, value in row.items():
        if key in consumed:
            continue
        key = str(key)
        meta[f"orig_{key}" if key in RESERVED_KEYS else key] = jsonable(value)
    return meta
