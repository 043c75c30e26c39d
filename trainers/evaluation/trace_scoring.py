"""Scoring planted tracing: which queries show the plant, and how well a method finds its cause.

Entity swaps (DDA §5.2, Eq. 13). The positives of a query are the injected rows of the swap it
shows (:meth:`~airsearch.trainers.evaluation.planted.PlantedCorpus.positives`); rows corrupted by
another swap are negatives for it. Per swap type ``t`` (DDA's protocol), every training row is scored
by its summed score over the queries showing ``t`` (a set of outputs scored the additive way) and
judged by AUC and R@k against ``positives(t)``, with ``k_t = min(k, |positives(t)|)`` so that 100% is
reachable. Two pooled figures: the mean over types (each type weighs the same) and the mean over
queries of each query scored alone against its own type's positives.

PII (HAIF PII-E): top-1 tracing accuracy, the share of queries whose best-scored biography is the
person's own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from airsearch.trainers.evaluation.common import Cost
from airsearch.trainers.evaluation.lmtools import greedy_generate
from airsearch.trainers.evaluation.methods import Method, summed_scores, topk
from airsearch.trainers.evaluation.metrics import precision_at_k, roc_auc
from airsearch.trainers.evaluation.pii import answered_correctly
from airsearch.trainers.evaluation.planted import PlantedCorpus

from airsearch.data.example import Example
from airsearch.lm.model import TargetLM
from airsearch.results import Result, omitted_when_none


@dataclasses.dataclass(frozen=True)
class SwapTypeScore(Result):
    """Entity-swap tracing of one swap type: AUC and R@k of its injected rows (``k`` =
    min(the asked k, ``n_positive``)), from the type's summed scores and per query (mean)."""

    auc: float
    r_at_k: float
    k: int
    n_queries: int
    n_positive: int
    query_auc: float
    query_r_at_k: float


@dataclasses.dataclass(frozen=True)
class TraceScore(Result):
    """One method's tracing scores: entity-swap AUC and R@k (the mean over swap types, and the mean
    over queries each scored alone) with the per-type figures, or PII top-1 accuracy; only ``note``
    when no query showed the planted behaviour. ``settings``: what ran (the method's own record)."""

    note: str | None = omitted_when_none()
    top1: float | None = omitted_when_none()  # pii
    auc: float | None = omitted_when_none()  # entity-swap, from here to per_type
    r_at_k: float | None = omitted_when_none()
    k: int | None = omitted_when_none()
    query_auc: float | None = omitted_when_none()
    query_r_at_k: float | None = omitted_when_none()
    per_type: dict[str, SwapTypeScore] | None = omitted_when_none()
    n_queries: int | None = omitted_when_none()
    settings: dict[str, Any] | None = omitted_when_none()
    fingerprint: str | None = omitted_when_none()
    cost: Cost | None = omitted_when_none()


def _nanmean(values: Sequence[float]) -> float:
    v = np.asarray(values, dtype=float)
    return float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else float("nan")


def swap_trace_score(
    type_scores: np.ndarray,
    query_scores: np.ndarray,
    types: Sequence[str],
    query_types: Sequence[str],
    bench: PlantedCorpus,
    k: int,
) -> TraceScore:
    """The entity-swap figures from scores over ``bench.examples``: ``type_scores[:, j]`` summed over
    the queries showing ``types[j]``, ``query_scores[:, i]`` of query ``i`` (showing ``query_types[i]``)."""
    positives = {t: bench.positives(t) for t in types}
    k_of = {t: max(1, min(k, int(positives[t].sum()))) for t in types}
    q_auc = [roc_auc(query_scores[:, i], positives[t]) for i, t in enumerate(query_types)]
    q_rak = [precision_at_k(query_scores[:, i], positives[t], k_of[t]) for i, t in enumerate(query_types)]
    per_type = {}
    for j, t in enumerate(types):
        mine = [i for i, qt in enumerate(query_types) if qt == t]
        per_type[t] = SwapTypeScore(
            auc=roc_auc(type_scores[:, j], positives[t]),
            r_at_k=precision_at_k(type_scores[:, j], positives[t], k_of[t]),
            k=k_of[t],
            n_queries=len(mine),
            n_positive=int(positives[t].sum()),
            query_auc=_nanmean([q_auc[i] for i in mine]),
            query_r_at_k=_nanmean([q_rak[i] for i in mine]),
        )
    return TraceScore(
        auc=_nanmean([s.auc for s in per_type.values()]),
        r_at_k=_nanmean([s.r_at_k for s in per_type.values()]),
        k=k,
        query_auc=_nanmean(q_auc),
        query_r_at_k=_nanmean(q_rak),
        per_type=per_type,
        n_queries=len(query_types),
    )


def score_swaps(
    method: Method, queries: Sequence[Example], bench: PlantedCorpus, k: int, block_size: int = 4096
) -> TraceScore:
    """:func:`swap_trace_score` of a prepared ``method``: one pass over its score blocks gives the
    summed score of every type's queries and each query's own scores."""
    query_types = [q.metadata["swap"] for q in queries]
    types = [t for t in bench.swap_types if t in query_types]
    groups = [[i for i, qt in enumerate(query_types) if qt == t] for t in types]
    singles = [[i] for i in range(len(queries))]
    scores = summed_scores(method, queries, groups + singles, block_size=block_size)
    return swap_trace_score(scores[:, : len(types)], scores[:, len(types) :], types, query_types, bench, k)


def score_pii(
    method: Method,
    queries: Sequence[Example],
    candidates: Sequence[Example],
    target: dict[str, list[str]],
    block_size: int = 4096,
) -> TraceScore:
    """HAIF PII-E top-1 tracing accuracy: the best-scored biography is one of the queried person's
    own (``target[query id]``)."""
    _, idx = topk(method, queries, 1, block_size=block_size)
    hits = [candidates[int(i[0])].id in target[q.id] for q, i in zip(queries, idx, strict=True)]
    return TraceScore(top1=float(np.mean(hits)), n_queries=len(queries))


def swap_queries(
    lm: TargetLM, queries: Sequence[Example], max_new_tokens: int
) -> tuple[list[Example], dict[str, Any]]:
    """The held-out articles whose output shows their swap: the greedy generation names the swapped-in
    entity (the query's response is then the generation), or, failing that, the LM gives the swapped
    summary a lower loss than the clean one (the response is then the swapped summary)."""
    from airsearch.lm import example_losses

    gens = greedy_generate(lm, queries, max_new_tokens=max_new_tokens)
    swapped = []
    for q in queries:
        src, dst = q.metadata["swap"].split("->")
        swapped.append(Example(q.id, q.prompt, q.response.replace(src, dst), q.metadata))
    loss_sw = example_losses(lm, swapped, show_progress=False)
    loss_cl = example_losses(lm, queries, show_progress=False)
    shown: list[Example] = []
    for q, g, s, ls, lc in zip(queries, gens, swapped, loss_sw, loss_cl, strict=True):
        dst = q.metadata["swap"].split("->")[1]
        if dst in g:
            shown.append(Example(q.id, q.prompt, g, {**q.metadata, "shown_by": "generation"}))
        elif ls < lc:
            shown.append(dataclasses.replace(s, metadata={**s.metadata, "shown_by": "loss"}))
    per_type: dict[str, int] = {}
    for q in shown:
        per_type[q.metadata["swap"]] = per_type.get(q.metadata["swap"], 0) + 1
    return shown, {
        "n_candidates": len(queries),
        "by_generation": sum(q.metadata["shown_by"] == "generation" for q in shown),
        "by_loss": sum(q.metadata["shown_by"] == "loss" for q in shown),
        "shown_per_type": per_type,
        "generations": dict(zip([q.id for q in queries], gens, strict=True)),
    }


def pii_queries(
    lm: TargetLM, heldout: Sequence[Example], max_length: int, max_new_tokens: int
) -> tuple[list[Example], dict[str, Any]]:
    """HAIF: only the held-out questions the LM answers correctly are traced; the response is the
    answer the LM produced. Greedy generation of those (long enough for the longest answer) is
    recorded as a check of the criterion (``generation_agrees``)."""
    ok = answered_correctly(lm, heldout, max_length=max_length)
    correct = [
        dataclasses.replace(q, metadata={**q.metadata, "shown_by": "greedy answer"})
        for q, hit in zip(heldout, ok, strict=True)
        if hit
    ]
    from airsearch.lm.model import format_example

    longest = max((len(format_example(lm.tokenizer, q)[1]) for q in correct), default=0)
    gens = greedy_generate(lm, correct, max_new_tokens=max(max_new_tokens, longest))
    agree = sum(g.strip().startswith(q.response.strip()) for q, g in zip(correct, gens, strict=True))
    return correct, {
        "n_heldout": len(heldout),
        "n_correct": len(correct),
        "answer_accuracy": len(correct) / max(1, len(heldout)),
        "generation_agrees": agree,
        "query_mode": "correctly answered (HAIF)",
    }
