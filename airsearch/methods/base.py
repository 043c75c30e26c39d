"""The common interface of attribution methods, block-wise scoring and reranking.

Every attribution method here is a *feature method*: it maps train examples to vectors ``u_i`` and
test examples to vectors ``v_j`` such that its score is ``tau(i, j) = u_i . v_j`` (positive = train
example i supports test example j, i.e. lowers its loss). Grad-dot, grad-cos, multi-checkpoint TracIn,
DDA (checkpoint blocks concatenated, the base block carrying ``-beta``), HAIF, Daunce (standardised loss
profiles), RepSim (unit mean hidden states) and AirRep's encoder (``airrep`` / ``base``) all have this
form, so one block-wise scorer, one vector store and one rerank path serve all. The search baselines
``bm25``, ``hybrid`` and ``random`` (:mod:`airsearch.indexers.search_methods`) are the documented
``"pairwise"`` fallback: they score blocks of rows themselves (:meth:`AttributionMethod.score_blocks`).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.methods.names import METHOD_NAMES as METHOD_NAMES  # re-exported
from airsearch.methods.names import MethodName as MethodName  # re-exported
from airsearch.methods.store import VectorManifest, VectorStore
from airsearch.scoring import TopK


@dataclass
class TokenScores:
    """Per-response-token contributions of one train example to its scores with each test example.

    ``scores[j, q]`` is the share of response token j (the target token ``token_ids[j]``, text
    ``tokens[j]``); the rows add up to the example's score: ``scores.sum(0) == score(train, test)``.
    """

    example_id: str
    token_ids: list[int]
    tokens: list[str]
    scores: torch.Tensor

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.example_id,
            "tokens": self.tokens,
            "token_ids": self.token_ids,
            "scores": self.scores.double().tolist(),
        }


class AttributionMethod(abc.ABC):
    """``score(train, test) -> [n_train, n_test]`` and block-wise top-k through train/test features.

    The plug-in contract (one module per method declaring a
    :class:`~airsearch.methods.plugin.MethodPlugin`, built by name in
    :func:`airsearch.methods.registry.load_method` from one
    :class:`~airsearch.methods.registry.MethodConfig`):

    - :attr:`name`, and the options dataclass its plug-in declares;
    - :meth:`row_vectors` (train side, streamed in blocks) and :meth:`query_vectors` (test side),
      deterministic for given settings, fingerprinted by :meth:`fingerprint` (the manifest of what
      made them: model, checkpoints, parameter set, projection, preconditioning, options);
    - :attr:`score_kind`: how a score is read from the two vectors. Every attribution method here is
      ``"dot"``: ``score = query_vector . row_vector`` (module docstring), which is what lets each of
      them be a vector column of an index table (:mod:`airsearch.indexers.method_columns`). The
      documented fallback for a method that is not a dot product is ``"pairwise"``: it overrides
      :meth:`score_against` (or, when its score depends on the whole train set, :meth:`prepare` and
      :meth:`score_blocks`: BM25) and gets rerank, ``attribute`` and the evaluation harness, but no
      column. It equals the plug-in's ``score_kind`` (``load_method`` checks);
    - :attr:`aggregation`: the evaluation's default group aggregation.

    The evaluation harness scores every method, attribution method or search baseline, through this
    one class (:class:`airsearch.trainers.evaluation.methods.Method` keeps a prepared method's rows).
    """

    name: str = "method"
    score_kind: str = "dot"
    #: the group aggregation the evaluation uses by default: ``"sum"`` (additive scores, DDA's group
    #: score) or ``"attention"`` (AirRep Eq. 7, the encoder methods'); :mod:`airsearch.scoring`
    aggregation: str = "sum"

    @abc.abstractmethod
    def train_features(self, examples: Sequence[Example]) -> torch.Tensor:
        """``[n, d]`` train-side vectors (what a vector store keeps)."""

    @abc.abstractmethod
    def test_features(self, examples: Sequence[Example]) -> torch.Tensor:
        """``[q, d]`` test-side vectors."""

    def row_vectors(self, examples: Sequence[Example], block_size: int = 256) -> Iterator[torch.Tensor]:
        """The train-side vectors of ``examples``, ``[b, d]`` blocks of at most ``block_size`` rows in
        order (a fixed split, so the same examples always give the same blocks)."""
        for start in range(0, len(examples), block_size):
            yield self.train_features(examples[start : start + block_size])

    def query_vectors(self, queries: Sequence[Example]) -> torch.Tensor:
        """``[q, d]`` query-side vectors: ``scores = row_vectors @ query_vectors.T``."""
        return self.test_features(queries)

    def fingerprint(self) -> str:
        """Fingerprint of what makes this method's vectors (the match fields of :meth:`manifest`)."""
        from airsearch.fingerprint import fingerprint_json

        m = self.manifest()
        return fingerprint_json({f: getattr(m, f) for f in VectorManifest.MATCH_FIELDS})

    def describe(self) -> dict[str, Any]:
        """Settings that determine the train vectors (recorded in manifests)."""
        return {"method": self.name}

    def manifest(self) -> VectorManifest:
        """The manifest a store of this method's train vectors must carry."""
        raise InputError(
            f"method {self.name!r} keeps no reusable train vectors; run it without a vector store",
            field="vectors",
        )

    def train_token_features(self, example: Example) -> tuple[torch.Tensor, list[int]]:
        """``[n_tokens, d]`` rows, one per response token, summing to ``train_features([example])[0]``,
        and the scored token ids. Gradient methods implement it; others refuse."""
        raise InputError(
            f"method {self.name!r} has no per-token scores (gradient methods have them)",
            field="per_token",
        )

    def token_scores(
        self, train: Sequence[Example], test: Sequence[Example], tokenizer: Any = None
    ) -> list[TokenScores]:
        """Per-response-token contributions of each train example to its scores with ``test``."""
        if tokenizer is None and hasattr(self, "ck"):
            tokenizer = self.ck.lms[0].tokenizer
        queries = self.test_features(test)
        out = []
        for example in train:
            rows, token_ids = self.train_token_features(example)
            tokens = [tokenizer.decode([t]) for t in token_ids] if tokenizer is not None else []
            out.append(TokenScores(example.id, token_ids, tokens, rows @ queries.T))
        return out

    # ------------------------------------------------------------------------------------ scoring
    def prepare(self, train: Sequence[Example]) -> int:
        """Make what scoring rows of ``train`` needs before any query (a pairwise method's index over
        it); returns the bytes it keeps. A dot method needs nothing: its row vectors are what is kept."""
        return 0

    def score_blocks(
        self, train: Sequence[Example], test: Sequence[Example], block_size: int = 1024
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """``(offset, scores [b, q])`` for consecutive blocks of at most ``block_size`` rows of
        ``train`` against ``test``: the query vectors once, then :meth:`score_against` per block. A
        pairwise method that scores against the whole of ``train`` (BM25's index) overrides it."""
        queries = self.query_vectors(test)
        for start in range(0, len(train), block_size):
            yield start, self.score_against(train[start : start + block_size], queries)

    def score(self, train: Sequence[Example], test: Sequence[Example]) -> torch.Tensor:
        """The full ``[n_train, n_test]`` matrix (use :meth:`topk` when it would not fit)."""
        blocks = [b for _, b in self.score_blocks(train, test, block_size=max(1, len(train)))]
        return torch.cat(blocks) if blocks else torch.zeros(0, len(test))

    def score_against(self, train: Sequence[Example], queries: torch.Tensor) -> torch.Tensor:
        """``[n_train, q]`` scores of ``train`` against query feature rows (:meth:`test_features`).
        A method may compute them without building the train feature rows."""
        return self.train_features(train) @ queries.T

    def vector_scores(self, rows: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """``[b, q]`` scores of kept row vectors (:meth:`row_vectors`) against query vectors: their dot
        products (a ``"dot"`` method's score)."""
        return rows @ queries.T

    def vector_topk(
        self, rows: torch.Tensor, queries: torch.Tensor, k: int, block_size: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [q, k'], row indices [q, k'])``, best first, of the dot products of kept row
        vectors (:meth:`row_vectors`) and query vectors, ``block_size`` rows at a time, merged in the one
        top-k heap (:class:`airsearch.scoring.TopK`). The encoder methods use the index's exact search."""
        heap = TopK(queries.shape[0], k)
        for start in range(0, rows.shape[0], block_size):
            heap.update(self.vector_scores(rows[start : start + block_size], queries).T, start)
        return heap.result()

    def topk(
        self,
        train: Sequence[Example],
        test: Sequence[Example],
        k: int,
        *,
        block_size: int = 1024,
        largest: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k train indices per test example, scoring the train set ``block_size`` rows at a time."""
        heap = TopK(len(test), k, largest=largest)
        for start, block in self.score_blocks(train, test, block_size):
            heap.update(block.T, start)
        return heap.result()


def topk_from_store(
    store: VectorStore, queries: torch.Tensor, k: int, largest: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k over stored train vectors, one shard at a time."""
    heap = TopK(queries.shape[0], k, largest=largest)
    offset = 0
    for block in store.iter_blocks():
        heap.update(queries.float() @ block.T, offset)
        offset += block.shape[0]
    return heap.result()


def rerank(method: AttributionMethod, query_example: Example, candidates: Sequence[Example]) -> np.ndarray:
    """The method's score of every candidate (train example) for one query: ``[n_candidates]``.

    A reranker orders candidates by this score, highest first (``np.argsort(-scores, kind="stable")``).
    """
    if not candidates:
        return np.zeros(0)
    return method.score(candidates, [query_example])[:, 0].double().numpy()


def rerank_order(scores: np.ndarray) -> np.ndarray:
    """Candidate positions sorted by score, highest first; ties keep the retrieval order."""
    return np.argsort(-np.asarray(scores), kind="stable")
