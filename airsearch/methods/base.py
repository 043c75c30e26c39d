"""The common interface of attribution methods, block-wise scoring and reranking.

Every method here is a *feature method*: it maps train examples to vectors ``u_i`` and test examples
to vectors ``v_j`` such that its score is ``tau(i, j) = u_i . v_j`` (positive = train example i
supports test example j, i.e. lowers its loss). Grad-dot, grad-cos, multi-checkpoint TracIn, DDA
(checkpoint blocks concatenated, the base block carrying ``-beta``), HAIF, Daunce (standardised loss
profiles) and RepSim (unit mean hidden states) all have this form, so one block-wise scorer, one vector store and one rerank path serve all.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
import torch

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.methods.store import VectorManifest, VectorStore
from airsearch.scoring import TopK

MethodName = Literal["tracin", "gradcos", "dda", "haif", "haif-t", "daunce", "repsim"]
METHOD_NAMES: tuple[str, ...] = get_args(MethodName)


class AttributionMethod(abc.ABC):
    """``score(train, test) -> [n_train, n_test]`` and block-wise top-k through train/test features."""

    name: str = "method"

    @abc.abstractmethod
    def train_features(self, examples: Sequence[Example]) -> torch.Tensor:
        """``[n, d]`` train-side vectors (what a vector store keeps)."""

    @abc.abstractmethod
    def test_features(self, examples: Sequence[Example]) -> torch.Tensor:
        """``[q, d]`` test-side vectors."""

    def describe(self) -> dict[str, Any]:
        """Settings that determine the train vectors (recorded in manifests)."""
        return {"method": self.name}

    def manifest(self) -> VectorManifest:
        """The manifest a store of this method's train vectors must carry."""
        raise InputError(
            f"method {self.name!r} keeps no reusable train vectors; run it without a vector store",
            field="vectors",
        )

    # ------------------------------------------------------------------------------------ scoring
    def score(self, train: Sequence[Example], test: Sequence[Example]) -> torch.Tensor:
        """The full ``[n_train, n_test]`` matrix (use :meth:`topk` when it would not fit)."""
        return self.train_features(train) @ self.test_features(test).T

    def topk(
        self,
        train: Sequence[Example],
        test: Sequence[Example],
        k: int,
        *,
        block_size: int = 1024,
        largest: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k train indices per test example, featurising the train set ``block_size`` at a time."""
        queries = self.test_features(test)
        heap = TopK(queries.shape[0], k, largest=largest)
        for start in range(0, len(train), block_size):
            block = self.train_features(train[start : start + block_size])
            heap.update(queries @ block.T, start)
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
