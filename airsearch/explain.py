"""Token-level explanation of an AirRep score (docs/methods.md §1; AirRep Eq. 7's single-example term).

An AirRep vector is a linear projection of mean-pooled token states:
``e(z) = W (1/n) sum_i h_i(z) + b``, so the score of a training row t for a query q,
``s = e(q) . e(t)``, splits exactly over the row's tokens:

``s = sum_i c_i``, with ``c_i = e(q) . (W h_i(t) + b) / n_t``,

and, symmetrically, over the query's tokens with ``e(t)`` in place of ``e(q)``. Each token's share
of the bias is ``e(q) . b / n``, so the contributions sum to the score (to rounding). Special tokens
(``[CLS]``, ``[SEP]``) and the template's markers (``Question:``, ``Answer:``) take part in the mean
and so carry a share too; each token says which part of the input it is (``part``: special, template,
prompt, response), so a reader can tell the shares of the text from those of the template.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from airsearch.data.example import ANSWER_PREFIX, QUESTION_PREFIX, Example
from airsearch.encoder import AirRepEncoder


@dataclass(frozen=True)
class TokenContribution:
    """One input token of the encoder and its additive share of the score."""

    token: str
    contribution: float
    special: bool
    part: str = "response"  # special, template, prompt or response (TOKEN_PARTS)

    @property
    def content(self) -> bool:
        """A token of the example's own text (prompt or response), not of the template."""
        return self.part in ("prompt", "response")

    def to_dict(self) -> dict[str, object]:
        return {
            "token": self.token,
            "contribution": self.contribution,
            "special": self.special,
            "part": self.part,
        }


TOKEN_PARTS = ("special", "template", "prompt", "response")


def token_parts(encoder: AirRepEncoder, example: Example, ids: list[int]) -> list[str]:
    """Which part of the encoder input each of ``ids`` is: the tokenizer's special tokens, the template
    markers, or the example's prompt or response (the layout of :func:`airsearch.encoder.budget_input`:
    ``head + Question-marker + prompt + Answer-marker + response + tail``)."""
    tok = encoder.model.tokenizer
    specials = set(tok.all_special_ids)
    parts = ["special" if i in specials else "response" for i in ids]
    q_mark, a_mark = (tok(m, add_special_tokens=False)["input_ids"] for m in (QUESTION_PREFIX, ANSWER_PREFIX))
    lo = next((j for j, p in enumerate(parts) if p != "special"), len(ids))
    hi = next((j for j in range(len(ids), lo, -1) if parts[j - 1] != "special"), lo)
    body = list(ids[lo:hi])
    n_resp = len(tok(example.response, add_special_tokens=False)["input_ids"])
    at = len(body) - min(n_resp, max(len(body) - len(q_mark) - len(a_mark), 0)) - len(a_mark)
    if body[at : at + len(a_mark)] != a_mark:  # the markers were cut (a tiny budget): search for them
        found = [j for j in range(len(body) - len(a_mark), -1, -1) if body[j : j + len(a_mark)] == a_mark]
        at = found[0] if found else len(body)
    for j in range(len(body)):
        if j < len(q_mark) and body[: len(q_mark)] == q_mark or at <= j < at + len(a_mark):
            parts[lo + j] = "template"
        elif j < at:
            parts[lo + j] = "prompt"
    return parts


@dataclass(frozen=True)
class AirRepExplanation:
    """The score of (query, row) and its exact split over each side's tokens."""

    score: float
    row_tokens: tuple[TokenContribution, ...]
    query_tokens: tuple[TokenContribution, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "score": self.score,
            "row_tokens": [t.to_dict() for t in self.row_tokens],
            "query_tokens": [t.to_dict() for t in self.query_tokens],
        }


def _projected_token_states(
    encoder: AirRepEncoder, example: Example
) -> tuple[list[str], list[str], torch.Tensor]:
    """Tokens, their parts (:func:`token_parts`) and ``W h_i + b`` per token, ``[n_tokens, dim]``
    (float64)."""
    (ids,) = encoder.input_ids([example])
    feats = encoder.features([ids])
    with torch.inference_mode():
        states = encoder.model.token_states(feats)[0].double()  # [n, hidden]
        linear = encoder.model.projector
        proj = states @ linear.weight.double().T
        if linear.bias is not None:
            proj = proj + linear.bias.double()
    tok = encoder.model.tokenizer
    return tok.convert_ids_to_tokens(list(ids)), token_parts(encoder, example, list(ids)), proj


def explain_airrep(encoder: AirRepEncoder, query: Example, row: Example) -> AirRepExplanation:
    """Each token's additive share of ``score(query, row) = e(query) . e(row)`` on both sides."""
    was_training = encoder.model.training
    encoder.model.eval()
    try:
        q_tokens, q_parts, q_proj = _projected_token_states(encoder, query)
        r_tokens, r_parts, r_proj = _projected_token_states(encoder, row)
    finally:
        encoder.model.train(was_training)
    e_q, e_r = q_proj.mean(dim=0), r_proj.mean(dim=0)
    row_c = (r_proj @ e_q) / r_proj.shape[0]
    query_c = (q_proj @ e_r) / q_proj.shape[0]
    return AirRepExplanation(
        score=float(e_q @ e_r),
        row_tokens=tuple(
            TokenContribution(t, float(c), p == "special", p)
            for t, c, p in zip(r_tokens, row_c.tolist(), r_parts, strict=True)
        ),
        query_tokens=tuple(
            TokenContribution(t, float(c), p == "special", p)
            for t, c, p in zip(q_tokens, query_c.tolist(), q_parts, strict=True)
        ),
    )
