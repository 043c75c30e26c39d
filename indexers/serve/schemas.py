"""Request bodies of the JSON API (pydantic models: FastAPI validates them and documents them in
the OpenAPI schema). Limits that depend on the server's configuration are checked in
:mod:`airsearch.indexers.serve.service`, each with a clear 4xx error."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QueryText(Strict):
    """One query: a prompt and the model's response to it."""

    id: str | None = Field(default=None, description="optional id echoed back")
    prompt: str = ""
    response: str


class Condition(Strict):
    """One filter condition on a metadata column (all conditions must hold)."""

    column: str
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in"] = "eq"
    value: Any


class QueryRequest(Strict):
    """Proponents (and opponents, group scores) for one query or a batch."""

    prompt: str | None = None
    response: str | None = None
    queries: list[QueryText] | None = Field(default=None, description="a batch instead of prompt/response")
    k: int = Field(default=10, ge=1)
    mode: Literal["vector", "bm25", "hybrid"] = "vector"
    filters: list[Condition] = Field(default_factory=list)
    where: str | None = Field(default=None, description="raw SQL; only when the server allows it")
    group_by: str | None = None
    opponents: bool = False
    rerank: str | None = Field(default=None, description="gradient method (needs a server --lm)")
    candidates: int = Field(default=50, ge=1, description="rows retrieved for rerank")
    method: str | None = Field(
        default=None, description="search this method column instead of AirRep (needs a server --lm)"
    )
    preview_chars: int | None = Field(default=200, ge=1, description="cut prompt/response; null: full text")


class ExplainRequest(Strict):
    """Token-level explanation of one training row's score for a query."""

    id: str
    prompt: str = ""
    response: str
    method: str | None = Field(default=None, description="gradient token view (needs a server --lm)")


class SelectRequest(Strict):
    """Training-data selection for targets (AirRep App. G), streamed back as JSONL."""

    targets: list[QueryText]
    n: int | None = Field(default=None, ge=1)
    fraction: float | None = Field(default=None, gt=0, le=1)
    strategy: Literal["best-rank", "sum"] = "best-rank"
    filters: list[Condition] = Field(default_factory=list)
    where: str | None = None
