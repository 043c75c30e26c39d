"""Token-level explanation of an AirRep score (docs/methods.md §1; AirRep Eq. 7's single-example term).

An AirRep vector is a linear projection of mean-pooled token states:
``e(z) = W (1/n) sum_i h_i(z) + b``, so the score of a training row t for a query q,
``s = e(q) . e(t)``, splits exactly over the row's tokens:

``s = sum_i c_i``, with ``c_i = e(q) . (W h_i(t) + b) / n_t``,

and, symmetrically, over the query's tokens with ``e(t)`` in place of ``e(q)``. Each token's share
of the bias is ``e(q) . b / n``, so the contributions sum to the score (to rounding). Special tokens
(``[CLS]``, ``[SEP]``) take part in the mean and so carry a share too; they are marked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder


@dataclass(frozen=True)
class TokenContribution:
    """One input token of the encoder and its additive share of the score."""

    token: str
    contribution: float
    special: bool

    def to_dict(self) -> dict[str, object]:
        return {"token": self.token, "contribution": self.contribution, "special": self.special}


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
) -> tuple[list[str], list[bool], torch.Tensor]:
    """Tokens, special-token flags and ``W h_i + b`` per token, ``[n_tokens, dim]`` (float64)."""
    (ids,) = encoder.input_ids([example])
    feats = encoder.features([ids])
    with torch.inference_mode():
        states = encoder.model.token_states(feats)[0].double()  # [n, hidden]
        linear = encoder.model.projector
        proj = states @ linear.weight.double().T
        if linear.bias is not None:
            proj = proj + linear.bias.double()
    tok = encoder.model.tokenizer
    specials = set(tok.all_special_ids)
    return tok.convert_ids_to_tokens(list(ids)), [i in specials for i in ids], proj


def explain_airrep(encoder: AirRepEncoder, query: Example, row: Example) -> AirRepExplanation:
    """Each token's additive share of ``score(query, row) = e(query) . e(row)`` on both sides."""
    was_training = encoder.model.training
    encoder.model.eval()
    try:
        q_tokens, q_special, q_proj = _projected_token_states(encoder, query)
        r_tokens, r_special, r_proj = _projected_token_states(encoder, row)
    finally:
        encoder.model.train(was_training)
    e_q, e_r = q_proj.mean(dim=0), r_proj.mean(dim=0)
    row_c = (r_proj @ e_q) / r_proj.shape[0]
    query_c = (q_proj @ e_r) / q_proj.shape[0]
    return AirRepExplanation(
        score=float(e_q @ e_r),
        row_tokens=tuple(
            TokenContribution(t, float(c), s)
            for t, c, s in zip(r_tokens, row_c.tolist(), r_special, strict=True)
        ),
        query_tokens=tuple(
            TokenContribution(t, float(c), s)
            for t, c, s in zip(q_tokens, query_c.tolist(), q_special, strict=True)
        ),
    )
