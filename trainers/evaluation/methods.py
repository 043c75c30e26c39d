"""The evaluation's method adapter: one way to get per-(train, test) scores and group scores from every
method of the one registry.

A :class:`Method` wraps one :class:`~airsearch.methods.base.AttributionMethod` (the one method class,
built by its plug-in through :func:`airsearch.methods.registry.load_method`): an attribution method
(gradient methods, RepSim, Daunce) or a search baseline (``airrep`` / ``base`` encoders, ``bm25``,
``hybrid``, ``random``: :mod:`airsearch.indexers.search_methods`). It is prepared on a training set once
(a dot method's row vectors are computed and kept, what a vector store keeps; a pairwise method indexes
the rows) and then yields score blocks ``[b, q]`` over consecutive training rows for a set of test
examples; the evaluation code never needs the full ``n x q`` matrix. On top of the blocks:

- :func:`group_scores` aggregates over subsets: attention pooling (AirRep Eq. 7,
  ``sum_i softmax_i(|s_i|) s_i``, the encoder methods' default) or a sum (additive methods);
- :func:`topk` keeps the best k training rows per query;
- :func:`summed_scores` sums over groups of queries (one column per group), for AUC and R@k.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.lm.model import TargetLM
from airsearch.methods.base import AttributionMethod
from airsearch.methods.plugin import get_plugin
from airsearch.methods.registry import MethodConfig
from airsearch.scoring import StreamingGroupScore, TopK

AGGREGATIONS = ("attention", "sum")


class Method:
    """An :class:`~airsearch.methods.base.AttributionMethod` prepared on a training set (module docstring).

    Given a :class:`MethodConfig`, ``prepare`` builds the method through the one registry on the models
    given here (an encoder in memory for the encoder baselines; ``workdir`` for BM25's index; black-box
    Daunce fits its K models on the training set then; with ``whitebox``, a white-box Eq. 5 run is
    trained on the training set first and read back); an already-built method is used as it is.

    A ``"dot"`` method's row vectors are computed once (identical ones are shared between methods of one
    manifest through ``shared``, e.g. DDA's beta / debias variants) and scored ``u_i . v_j`` block by
    block; a ``"pairwise"`` method prepares its own index and scores its own blocks.
    """

    def __init__(
        self,
        method: MethodConfig | AttributionMethod,
        *,
        lm: TargetLM | None = None,
        checkpoints: Sequence[TargetLM] = (),
        base_lm: TargetLM | None = None,
        encoder: Any = None,
        workdir: str | Path | None = None,
        name: str | None = None,
        whitebox: Any = None,
        shared: dict[str, tuple[torch.Tensor, float]] | None = None,
    ) -> None:
        self.config = method if isinstance(method, MethodConfig) else None
        self.impl: AttributionMethod | None = None if isinstance(method, MethodConfig) else method
        self.name = name or (method.method if isinstance(method, MethodConfig) else method.name)
        self.lm, self.checkpoints, self.base_lm = lm, tuple(checkpoints), base_lm
        self.encoder, self.workdir = encoder, workdir
        self.whitebox, self.shared, self.reused_seconds = whitebox, shared, 0.0
        self.n_train, self.prepare_seconds = 0, 0.0
        self.storage_bytes = 0  # bytes kept for the training set (vectors, index)
        self.train_features: torch.Tensor | None = None
        self.train_rows: list[Example] = []

    @classmethod
    def of(
        cls,
        name: str,
        *,
        encoder: Any = None,
        workdir: str | Path | None = None,
        seed: int = 0,
        **options: Any,
    ) -> Method:
        """The method ``name`` of the registry with ``seed`` and its own ``options`` (``text="response"``)."""
        get_plugin(name)  # an unknown name is refused with the known ones
        extra = [f"{k}={v}" for k, v in options.items()]
        return cls(
            MethodConfig(method=name, seed=seed, method_options=extra), encoder=encoder, workdir=workdir
        )

    @property
    def aggregation(self) -> str:
        """The method's default group aggregation (``"attention"``, Eq. 7, for the encoder methods)."""
        if self.impl is not None:
            return self.impl.aggregation
        return "sum"

    @property
    def needs_lm(self) -> bool:
        """Whether the method runs on the target LM (not a search baseline)."""
        return get_plugin(self.config.method).needs_lm if self.config is not None else True

    # ------------------------------------------------------------------------------------ prepare
    def prepare(self, train: Sequence[Example]) -> None:
        """Build the method and keep what scoring ``train`` needs; ``prepare_seconds`` counts the time,
        including that of train vectors reused from an identical method."""
        t0 = time.perf_counter()
        self._prepare(list(train))
        self.n_train = len(train)
        self.prepare_seconds = time.perf_counter() - t0 + self.reused_seconds

    def _prepare(self, train: list[Example]) -> None:
        if self.config is not None and self.whitebox is not None:
            self.config = self.config.replace(daunce_run=str(self.whitebox.run(self.lm, train)))
        if self.config is not None:
            from airsearch.methods.registry import load_method

            self.impl = load_method(
                self.config,
                lm=self.lm,
                checkpoints=self.checkpoints,
                base_lm=self.base_lm,
                train=train,
                show_progress=False,
                encoder=self.encoder,
                workdir=None if self.workdir is None else str(self.workdir),
            )
        assert self.impl is not None
        if self.impl.score_kind != "dot":  # the documented fallback: the method scores its own blocks
            self.train_rows, self.train_features = train, None
            self.storage_bytes = self.impl.prepare(train)
            return
        key = self._shared_key(train)
        if key is not None and key in self.shared:  # type: ignore[operator]
            self.train_features, self.reused_seconds = self.shared[key]  # type: ignore[index]
        else:
            t0 = time.perf_counter()
            blocks = [b.detach().float().cpu() for b in self.impl.row_vectors(train)]  # the plug-in contract
            self.train_features = torch.cat(blocks) if blocks else self.impl.train_features(train).float()
            if key is not None:
                self.shared[key] = (self.train_features, time.perf_counter() - t0)  # type: ignore[index]
        self.storage_bytes = int(self.train_features.numel() * 4)

    def _shared_key(self, train: Sequence[Example]) -> str | None:
        """What determines the train vectors: the method's vector-store manifest and the rows."""
        if self.shared is None:
            return None
        try:
            manifest = self.impl.manifest()  # type: ignore[union-attr]
        except InputError:  # a method that keeps no reusable train vectors
            return None
        fields = {f: getattr(manifest, f) for f in manifest.MATCH_FIELDS}
        return json.dumps([fields, [e.id for e in train]], sort_keys=True, default=str)

    # ------------------------------------------------------------------------------------ scoring
    def _queries(self, test: Sequence[Example]) -> torch.Tensor:
        assert self.impl is not None, "prepare() first"
        return self.impl.query_vectors(list(test)).detach().float().cpu()

    def score_blocks(
        self, test: Sequence[Example], block_size: int = 4096
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(offset, scores[b, q])`` for training rows ``offset .. offset+b-1`` in order."""
        assert self.impl is not None, "prepare() first"
        if self.train_features is None:  # a pairwise method: its own scores of each block of rows
            for start, block in self.impl.score_blocks(self.train_rows, list(test), block_size):
                yield start, block.detach().float().cpu().numpy()
            return
        v = self._queries(test)
        for start in range(0, self.train_features.shape[0], block_size):
            yield start, self.impl.vector_scores(self.train_features[start : start + block_size], v).numpy()

    def topk(self, test: Sequence[Example], k: int, block_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Top-k training rows per test example: ``(scores [q, k'], row indices [q, k'])``, best first:
        a dot method's own search over its row vectors
        (:meth:`~airsearch.methods.base.AttributionMethod.vector_topk`), else the blocks merged in the
        one top-k heap (:class:`airsearch.scoring.TopK`)."""
        assert self.impl is not None, "prepare() first"
        if self.train_features is not None:
            return self.impl.vector_topk(self.train_features, self._queries(test), k, block_size)
        heap = TopK(len(test), k)
        for start, block in self.score_blocks(test, block_size):
            heap.update(torch.from_numpy(np.ascontiguousarray(block.T)), start)
        return heap.result()

    def fingerprint(self) -> str | None:
        """The fingerprint of what makes the method's scores (``None`` for BM25 and random)."""
        try:
            return self.impl.fingerprint() if self.impl is not None else None
        except InputError:  # no manifest: nothing but the options and the rows make its scores
            return None

    def describe(self) -> dict[str, Any]:
        settings = self.impl.describe() if self.impl is not None else {"method": self.name}
        return {
            "name": self.name,
            "aggregation": self.aggregation,
            "fingerprint": self.fingerprint(),
            "prepare_seconds": self.prepare_seconds,
            "storage_bytes": self.storage_bytes,
            "settings": settings,
        }


# ----------------------------------------------------------------------------- aggregation
def group_scores(
    method: Method,
    test: Sequence[Example],
    members: Sequence[Sequence[int]],
    aggregation: str | None = None,
    block_size: int = 4096,
) -> np.ndarray:
    """Group score of each subset for each test example, ``[n_subsets, q]``, from score blocks.

    ``members[k]`` lists the training-row indices of subset k (a repeated row counts as often as it
    is listed). ``attention`` is Eq. 7, streamed per subset by the one streaming Eq. 7,
    :class:`airsearch.scoring.StreamingGroupScore` (exact in any blocking); ``sum`` adds the scores.
    """
    agg = aggregation or method.aggregation
    if agg not in AGGREGATIONS:
        raise InputError(f"unknown aggregation {agg!r}; choose one of {AGGREGATIONS}", field="aggregation")
    n_sub, q = len(members), len(test)
    membership = torch.zeros((method.n_train, n_sub), dtype=torch.float64)  # counts (repeats allowed)
    for k, rows in enumerate(members):
        for r in rows:
            membership[r, k] += 1.0
    total = torch.zeros((n_sub, q), dtype=torch.float64)
    pools = [StreamingGroupScore(n_queries=q) for _ in range(n_sub if agg == "attention" else 0)]
    for start, block in method.score_blocks(test, block_size):
        s = torch.from_numpy(np.asarray(block, dtype=np.float64))  # [b, q]
        counts = membership[start : start + s.shape[0]]  # [b, K]
        if agg == "sum":
            total += counts.T @ s
            continue
        for k in torch.nonzero(counts.sum(0)).flatten().tolist():
            rows = torch.nonzero(counts[:, k]).flatten()
            pools[k].update_scores(s[rows], counts[rows, k])
    if agg == "sum":
        return total.numpy()
    return np.stack([p.result() for p in pools]) if pools else np.zeros((0, q))


def topk(
    method: Method, test: Sequence[Example], k: int, block_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k training rows per test example: ``(scores[q, k], row indices[q, k])`` (:meth:`Method.topk`)."""
    return method.topk(test, k, block_size=block_size)


def summed_scores(
    method: Method,
    test: Sequence[Example],
    groups: Sequence[Sequence[int]] | None = None,
    block_size: int = 4096,
) -> np.ndarray:
    """``[n_train, n_groups]``: each training row's score summed over each group of test examples
    (one group of all of them by default). A query group (e.g. all outputs showing one swap) is
    scored the additive way, as DDA scores a set of test outputs."""
    groups = [list(range(len(test)))] if groups is None else groups
    assign = torch.zeros((len(test), len(groups)), dtype=torch.float64)
    for g, idx in enumerate(groups):
        assign[list(idx), g] = 1.0
    out = np.zeros((method.n_train, len(groups)))
    for start, block in method.score_blocks(test, block_size):
        out[start : start + block.shape[0]] = (
            torch.from_numpy(np.asarray(block, np.float64)) @ assign
        ).numpy()
    return out
