"""``airsearch explain``: token-level explanation of one (query, training row) score.

* AirRep (always): the exact split of ``e(q) . e(t)`` over the row's and the query's encoder tokens
  (:func:`airsearch.explain.explain_airrep`; mean pooling + linear projection make the score a sum of
  per-token terms, AirRep §3.1 / docs/methods.md §1).
* A gradient method (when a target LM is given): each response token's share of the row's score for
  the query, from the per-token gradients (HAIF Eq. 23's ``grad l_j``;
  :meth:`airsearch.methods.base.AttributionMethod.token_scores`), summing to the method's score.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from airsearch.indexers.config import ExplainConfig
from airsearch.indexers.query import Searcher
from airsearch.indexers.store import IndexTable
from airsearch.indexers.table_methods import method_on_table

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.explain import AirRepExplanation, explain_airrep
from airsearch.methods.registry import MethodConfig
from airsearch.results import Result


@dataclasses.dataclass(frozen=True)
class GradientTokens(Result):
    """A gradient method's score of the row for the query and its split over the row's response tokens."""

    method: str
    score: float
    tokens: tuple[str, ...]
    contributions: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "score": self.score,
            "tokens": [
                {"token": t, "contribution": c} for t, c in zip(self.tokens, self.contributions, strict=True)
            ],
        }


@dataclasses.dataclass(frozen=True)
class RowExplanation(Result):
    """The explained row, the query, and the token views."""

    row: Example
    row_id: int
    query: Example
    airrep: AirRepExplanation
    gradient: GradientTokens | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": {**example_dict(self.row), "row_id": self.row_id},
            "query": {"prompt": self.query.prompt, "response": self.query.response},
            "airrep": self.airrep.to_dict(),
            "gradient": self.gradient.to_dict() if self.gradient else None,
        }


class RowNotFound(InputError):
    """No stored row has the requested id."""


def example_dict(example: Example) -> dict[str, Any]:
    """``{id, prompt, response, metadata}`` of an example (the API's row shape)."""
    return {
        "id": example.id,
        "prompt": example.prompt,
        "response": example.response,
        "metadata": example.metadata,
    }


def find_row(searcher: Searcher, row_id: str) -> tuple[int, Example]:
    """``(row id, example)`` of the stored example with id ``row_id`` (newest version the searcher reads)."""
    found = searcher.table.find([row_id])
    if row_id not in found:
        raise RowNotFound(f"no row with id {row_id!r}", field="id")
    rid = int(found[row_id])
    return rid, searcher.table.take([rid])[0]


def gradient_tokens(method: Any, query: Example, row: Example) -> GradientTokens:
    """Per-response-token shares of ``method``'s score of ``row`` for ``query`` (they sum to the score)."""
    (ts,) = method.token_scores([row], [query])
    col = ts.scores[:, 0].double()
    return GradientTokens(
        method=method.name,
        score=float(col.sum()),
        tokens=tuple(ts.tokens),
        contributions=tuple(float(c) for c in col.tolist()),
    )


def explain_row(searcher: Searcher, query: Example, row_id: str, *, method: Any = None) -> RowExplanation:
    """Explain the score of stored row ``row_id`` for ``query`` (AirRep always, ``method`` if given)."""
    rid, row = find_row(searcher, row_id)
    airrep = explain_airrep(searcher.encoder, query, row)
    grad = gradient_tokens(method, query, row) if method is not None else None
    return RowExplanation(row=row, row_id=rid, query=query, airrep=airrep, gradient=grad)


def load_gradient_method(method_cfg: MethodConfig, table: IndexTable | None = None) -> Any:
    """A gradient attribution method for token views, from the one method registry.

    With ``table``, a K-FAC / EK-FAC preconditioned method fits its factors on a seeded sample of the
    table's rows unless ``method_cfg`` names a fitting file or stored factors.
    """
    from airsearch.methods.registry import load_method

    if method_cfg.method in ("daunce", "repsim"):
        raise InputError(f"token views need a gradient method, not {method_cfg.method}", field="method")
    if table is not None:
        return method_on_table(method_cfg, table, show_progress=False)
    return load_method(method_cfg, show_progress=False)


def explain_score(cfg: ExplainConfig, *, method: Any = None) -> RowExplanation:
    """Python API of ``airsearch explain``."""
    cfg.validate()
    searcher = Searcher(cfg.db, cfg.table, encoder=cfg.encoder)
    method_cfg = cfg.gradient_method()
    if method is None and method_cfg is not None:
        method = load_gradient_method(method_cfg, searcher.table)
    return explain_row(searcher, Example("query", cfg.prompt or "", cfg.response), cfg.id, method=method)
