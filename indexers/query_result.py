"""What a query returns: its ranked candidates (:class:`Candidate`), metadata-group scores
(:class:`GroupScore`, AirRep Eq. 7) and the whole answer (:class:`QueryResult`), each with the JSON of
``--json``; and :data:`Rerank`, the signature of a reranking hook (:class:`~airsearch.indexers.searcher.Searcher`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from airsearch.data.example import Example, preview
from airsearch.results import Result
from airsearch.score_kinds import kind_label


@dataclasses.dataclass(frozen=True)
class Candidate(Result):
    """One retrieved training example and its score for one query."""

    id: str
    score: float
    prompt: str
    response: str
    metadata: dict[str, Any]
    row_id: int
    retrieval_score: float | None = None  # the retrieval ranking's score, when ``score`` is a reranker's
    score_kind: str = "airrep"  # what ``score`` is (airsearch.score_kinds)
    retrieval_kind: str | None = None  # what ``retrieval_score`` is

    def example(self) -> Example:
        return Example(self.id, self.prompt, self.response, self.metadata)

    def to_dict(self, preview_chars: int | None = None) -> dict[str, Any]:
        """The JSON of ``--json``; with ``preview_chars`` the prompt and response are shortened."""
        out = super().to_dict()
        if preview_chars is not None:
            out["prompt"] = preview(self.prompt, preview_chars)
            out["response"] = preview(self.response, preview_chars)
        if out["retrieval_score"] is None:
            out.pop("retrieval_score")
            out.pop("retrieval_kind")
        return out


@dataclasses.dataclass(frozen=True)
class GroupScore(Result):
    """A metadata group and its Eq. 7 score for one query."""

    group: Any
    score: float
    size: int
    score_kind: str = "airrep-group"


@dataclasses.dataclass(frozen=True)
class QueryResult(Result):
    """One query's proponents, and its opponents and metadata groups when asked for."""

    query: Example
    proponents: list[Candidate]
    opponents: list[Candidate] | None = None
    groups: list[GroupScore] | None = None
    group_by: str | None = None
    search: str = "exact"
    reranked_by: str | None = None
    mode: str = "vector"
    score_kind: str = "airrep"  # what the proponents' scores are (opponents': always ``airrep``)

    @property
    def ranked_by(self) -> str:
        """Which method ranked the proponents, in words (the result header)."""
        found = {"vector": f"AirRep, {self.search} search", "bm25": "BM25 full-text search"}.get(
            self.mode, f"RRF of AirRep ({self.search.split('+')[0]} search) and BM25 ranks"
        )
        if self.method:
            found = f"the {self.method} method column, {self.search} search"
        if self.reranked_by:
            return f"{kind_label(self.score_kind)}, reranking the top candidates by {found}"
        return found

    method: str | None = None  # the method column searched (query --method), if any

    def to_dict(self, preview_chars: int | None = None) -> dict[str, Any]:
        """The JSON of ``--json`` (the query without its metadata; only the parts asked for)."""
        out: dict[str, Any] = {
            "query": {"id": self.query.id, "prompt": self.query.prompt, "response": self.query.response},
            "search": self.search,
            "mode": self.mode,
            "ranked_by": self.ranked_by,
            "score_kind": self.score_kind,
            "score_label": kind_label(self.score_kind),
            "proponents": [c.to_dict(preview_chars) for c in self.proponents],
        }
        if self.opponents is not None:
            out["opponents"] = [c.to_dict(preview_chars) for c in self.opponents]
        if self.groups is not None:
            out["group_by"] = self.group_by
            out["groups"] = [g.to_dict() for g in self.groups]
        if self.reranked_by:
            out["reranked_by"] = self.reranked_by
        if self.method:
            out["method"] = self.method
        return out


Rerank = Callable[[Example, list[Candidate]], Sequence[float]]
