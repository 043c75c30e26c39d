"""What a printed score is: one short id and one label per kind of score, for the CLI, ``--json`` and
the page (a light module: no torch).

Attribution scores estimate which training rows made the model produce a response (AirRep's learned
dot product, methods.md §1; the gradient methods; Daunce). Retrieval scores measure only how much a row
looks like the query (BM25's word overlap). Reciprocal rank fusion mixes an attribution ranking with a
retrieval ranking. Scores of different kinds are on different scales and are never compared.
"""

from __future__ import annotations

# kind id -> label. Gradient kinds preconditioned with K-FAC / EK-FAC read "<method>+kfac" / "+ekfac".
SCORE_KINDS: dict[str, str] = {
    "airrep": "AirRep dot product e(q)·e(row)",
    "airrep-group": "AirRep Eq. 7 group score",
    "airrep-sum": "sum over targets of AirRep dot products",
    "bm25": "BM25 word overlap",
    "rrf": "RRF of AirRep and BM25 ranks",
    "tracin": "TracIn gradient dot product",
    "gradcos": "grad-cos, gradient cosine in [-1, 1]",
    "dda": "DDA debiased gradient similarity",
    "haif": "HAIF influence",
    "haif-t": "HAIF-T influence",
    "daunce": "Daunce score over K models",
    "repsim": "RepSim hidden-state cosine",
}
PRECONDITIONED = {"kfac": "K-FAC influence", "ekfac": "EK-FAC influence"}
RETRIEVAL_KINDS = ("bm25",)

# printed once above results: which scores are attribution and which are retrieval
HINT = (
    "AirRep and gradient scores (--rerank) are attribution: which rows taught the model this response; "
    "BM25 is retrieval: rows that share its words; hybrid's RRF mixes the two."
)


def score_kind(mode: str = "vector", method: str | None = None, precondition: str = "none") -> str:
    """The kind id of a ranking's scores: the rerank ``method`` when there is one (with its
    ``precondition``), else the search ``mode``'s (vector: ``airrep``, bm25, hybrid: ``rrf``)."""
    if method:
        return method if precondition in (None, "none") else f"{method}+{precondition}"
    return {"vector": "airrep", "bm25": "bm25", "hybrid": "rrf"}.get(mode, mode)


def kind_label(kind: str) -> str:
    """The label of a kind id: a built-in's from :data:`SCORE_KINDS`, a registered plug-in's summary
    (:mod:`airsearch.methods.plugin`), else the id itself."""
    from airsearch.methods.plugin import registered_summary

    method, _, pre = kind.partition("+")
    base = SCORE_KINDS.get(method) or registered_summary(method) or method
    return f"{PRECONDITIONED[pre]} ({base})" if pre in PRECONDITIONED else base
