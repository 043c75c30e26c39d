"""Method adapters: one way to get per-(train, test) scores and group scores from every method.

A :class:`Method` is prepared on a training set once (encode it, index it, take its gradients) and
then yields score blocks ``[b, q]`` over consecutive training rows for a set of test examples; the
evaluation code never needs the full ``n x q`` matrix. On top of the blocks:

- :func:`group_scores` aggregates over subsets: attention pooling (AirRep Eq. 7,
  ``sum_i softmax_i(|s_i|) s_i``, for embedding methods) or a sum (for additive methods);
- :func:`topk` keeps the best k training rows per query;
- :func:`summed_scores` sums over groups of queries (one column per group), for AUC and R@k.

Baselines by name (:func:`baseline_method`): ``airrep`` (any encoder folder), ``base`` (the untrained
encoder), ``bm25`` (LanceDB's native full-text index, which ranks by BM25, over prompt + response or
responses only), ``hybrid`` (reciprocal rank
fusion of an encoder's and BM25's rankings, as ``query --mode hybrid``) and ``random`` (seeded). The attribution methods of :mod:`airsearch.methods` (gradient
methods, RepSim, Daunce) come from the one registry, :func:`airsearch.methods.registry.load_method`,
wrapped in a :class:`~airsearch.trainers.evaluation.attribution.FeatureMethod`.
"""

from __future__ import annotations

import abc
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from airsearch.indexers.search import exact_topk

from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder
from airsearch.errors import InputError
from airsearch.methods.plugin import method_names
from airsearch.scoring import StreamingGroupScore, TopK

AGGREGATIONS = ("attention", "sum")
BUILTIN_METHODS = ("airrep", "base", "bm25", "hybrid", "random")


class Method(abc.ABC):
    """A scoring method. ``prepare(train)`` once, then ``score_blocks(test)`` as often as needed."""

    name: str = "method"
    aggregation: str = "sum"  # default group aggregation (Eq. 7 "attention" for embedding methods)

    def __init__(self) -> None:
        self.n_train = 0
        self.prepare_seconds = 0.0
        self.storage_bytes = 0  # bytes stored for the training set (vectors, index)

    def prepare(self, train: Sequence[Example]) -> None:
        t0 = time.perf_counter()
        self._prepare(list(train))
        self.n_train = len(train)
        self.prepare_seconds = time.perf_counter() - t0

    @abc.abstractmethod
    def _prepare(self, train: list[Example]) -> None: ...

    @abc.abstractmethod
    def score_blocks(
        self, test: Sequence[Example], block_size: int = 4096
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(offset, scores[b, q])`` for training rows ``offset .. offset+b-1`` in order."""

    def topk(self, test: Sequence[Example], k: int, block_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Top-k training rows per test example: ``(scores [q, k'], row indices [q, k'])``, best first,
        merged block by block in the one top-k heap (:class:`airsearch.scoring.TopK`)."""
        heap = TopK(len(test), k)
        for start, block in self.score_blocks(test, block_size):
            heap.update(torch.from_numpy(np.ascontiguousarray(block.T)), start)
        return heap.result()

    def fingerprint(self) -> str | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "aggregation": self.aggregation,
            "fingerprint": self.fingerprint(),
            "prepare_seconds": self.prepare_seconds,
            "storage_bytes": self.storage_bytes,
        }


class EmbeddingMethod(Method):
    """``airrep`` / ``base``: single score ``e_z . e_i`` (AirRep §3.1), group score Eq. 7.

    The training set is encoded as ``airsearch index`` encodes a corpus (the same batches and chunks,
    :class:`airsearch.indexers.config.IndexConfig`'s defaults) and :meth:`topk` is the index's exact
    search (:func:`airsearch.indexers.search.exact_topk`), so rankings equal the product's.
    """

    aggregation = "attention"

    def __init__(self, encoder: AirRepEncoder, name: str = "airrep", batch_size: int | None = None) -> None:
        super().__init__()
        self.encoder, self.name, self.batch_size = encoder, name, batch_size
        self.train_vectors = np.zeros((0, encoder.dim), dtype=np.float32)

    def _prepare(self, train: list[Example]) -> None:
        from airsearch.indexers.config import IndexConfig

        chunks = self.encoder.encode_stream(
            train,
            batch_size=self.batch_size or IndexConfig.batch_size,
            chunk_size=IndexConfig.chunk_size,
            total=len(train),
            desc=f"encoding for {self.name}",  # a bar with total and ETA (silenced by -q)
        )
        empty = np.zeros((0, self.encoder.dim), dtype=np.float32)
        self.train_vectors = np.concatenate([empty, *(v for _, v in chunks)])
        self.storage_bytes = int(self.train_vectors.nbytes)

    def _test_vectors(self, test: Sequence[Example]) -> np.ndarray:
        return self.encoder.encode(list(test), show_progress=False)  # as airsearch.indexers.query encodes

    def score_blocks(
        self, test: Sequence[Example], block_size: int = 4096
    ) -> Iterator[tuple[int, np.ndarray]]:
        q = self._test_vectors(test)
        for start in range(0, self.train_vectors.shape[0], block_size):
            yield start, self.train_vectors[start : start + block_size] @ q.T

    def topk(self, test: Sequence[Example], k: int, block_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        v, n = self.train_vectors, self.train_vectors.shape[0]
        blocks = (
            (np.arange(s, min(s + block_size, n)), v[s : s + block_size]) for s in range(0, n, block_size)
        )
        return exact_topk(self._test_vectors(test), blocks, k)

    def fingerprint(self) -> str | None:
        return self.encoder.fingerprint


_WORD = re.compile(r"[A-Za-z0-9]+")


def _bm25_text(example: Example, text: str) -> str:
    return example.response if text == "response" else f"{example.prompt} {example.response}"


def _fts_query(example: Example, max_terms: int = 256, text: str = "full") -> str:
    return " ".join(_WORD.findall(_bm25_text(example, text))[:max_terms])


class BM25Method(Method):
    """``bm25``: LanceDB's native full-text index (BM25 ranking) over the training texts.

    ``text="full"`` indexes and queries ``prompt response``; ``text="response"`` the responses alone
    (``bm25:text=response``), so shared task instructions in prompts cannot match. Each query's
    ``_score`` is taken for every training row the index returns; rows sharing no term with the query
    score 0, as in BM25.
    """

    name = "bm25"

    def __init__(self, workdir: str | Path | None = None, text: str = "full") -> None:
        super().__init__()
        self.text = text
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="airsearch-bm25-")
        self.workdir = Path(workdir) if workdir else Path(self._tmp.name)
        self.table: Any = None

    def _prepare(self, train: list[Example]) -> None:
        import lancedb
        import pyarrow as pa
        from lancedb.index import FTS

        db = lancedb.connect(str(self.workdir))
        texts = [_bm25_text(e, self.text) for e in train]
        data = pa.table(
            {"row": pa.array(range(len(train)), pa.int64()), "text": pa.array(texts, pa.string())}
        )
        self.table = db.create_table("bm25_train", data, mode="overwrite")
        if train:
            self.table.create_index("text", config=FTS())
        self.storage_bytes = sum(p.stat().st_size for p in self.workdir.rglob("*") if p.is_file())

    def query_scores(self, example: Example) -> tuple[np.ndarray, np.ndarray]:
        """(row indices, BM25 scores) of the training rows matching ``example``."""
        text = _fts_query(example, text=self.text)
        if not text or self.n_train == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        res = (
            self.table.search(text, query_type="fts").limit(self.n_train).select(["row", "_score"]).to_arrow()
        )
        return res["row"].to_numpy(), res["_score"].to_numpy().astype(np.float32)

    def score_blocks(
        self, test: Sequence[Example], block_size: int = 4096
    ) -> Iterator[tuple[int, np.ndarray]]:
        hits = [self.query_scores(e) for e in test]
        for start in range(0, self.n_train, block_size):
            stop = min(self.n_train, start + block_size)
            block = np.zeros((stop - start, len(test)), dtype=np.float32)
            for j, (rows, scores) in enumerate(hits):
                sel = (rows >= start) & (rows < stop)
                block[rows[sel] - start, j] = scores[sel]
            yield start, block


class HybridMethod(Method):
    """``hybrid``: reciprocal rank fusion (Cormack et al. 2009 Eq. 1) of an encoder's top-``pool`` rows
    (dot product) and BM25's top-``pool`` rows per query, the fusion ``airsearch query --mode hybrid``
    does (:func:`airsearch.fusion.reciprocal_rank_fusion`, ``pool`` = its ``HYBRID_POOL``); rows in
    neither list score 0."""

    name = "hybrid"

    def __init__(self, encoder: Any, workdir: str | Path | None = None, pool: int | None = None) -> None:
        from airsearch.indexers.query import HYBRID_POOL

        super().__init__()
        self.vector, self.text = EmbeddingMethod(encoder), BM25Method(workdir)
        self.pool = pool or HYBRID_POOL

    def _prepare(self, train: list[Example]) -> None:
        self.vector.prepare(train)
        self.text.prepare(train)
        self.storage_bytes = self.vector.storage_bytes + self.text.storage_bytes

    def score_blocks(
        self, test: Sequence[Example], block_size: int = 4096
    ) -> Iterator[tuple[int, np.ndarray]]:
        from airsearch.fusion import reciprocal_rank_fusion

        _, vector_rows = self.vector.topk(test, self.pool)
        fused = np.zeros((self.n_train, len(test)), dtype=np.float32)
        for j, example in enumerate(test):
            rows, scores = self.text.query_scores(example)
            text_rows = rows[np.argsort(-scores, kind="stable")][: self.pool]
            for row, score in reciprocal_rank_fusion([vector_rows[j].tolist(), text_rows.tolist()]):
                fused[row, j] = score
        for start in range(0, self.n_train, block_size):
            yield start, fused[start : start + block_size]

    def fingerprint(self) -> str | None:
        return self.vector.fingerprint()


class RandomMethod(Method):
    """``random``: seeded i.i.d. normal scores; a block's values depend only on the seed and rows."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed

    def _prepare(self, train: list[Example]) -> None:
        pass

    def score_blocks(
        self, test: Sequence[Example], block_size: int = 4096
    ) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.n_train, block_size):
            stop = min(self.n_train, start + block_size)
            rng = np.random.default_rng([self.seed, start, len(test)])
            yield start, rng.standard_normal((stop - start, len(test))).astype(np.float32)


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


# ----------------------------------------------------------------------------- by name
def baseline_method(
    name: str,
    *,
    encoder: AirRepEncoder | None = None,
    seed: int = 0,
    workdir: str | Path | None = None,
    text: str = "full",
) -> Method:
    """A baseline by name: ``airrep``/``base`` (an :class:`AirRepEncoder`), ``bm25`` (its index under
    ``workdir``, or a temporary folder; over ``text``: full or response) or ``random`` (seeded).
    Attribution methods are wrapped in a
    :class:`~airsearch.trainers.evaluation.attribution.FeatureMethod`, built from a ``MethodConfig``."""
    if name in ("airrep", "base"):
        if encoder is None:
            raise InputError(f"method {name!r} needs an encoder", field="methods")
        return EmbeddingMethod(encoder, name=name)
    if name == "bm25":
        return BM25Method(workdir, text=text)
    if name == "hybrid":
        if encoder is None:
            raise InputError("method 'hybrid' needs an encoder", field="methods")
        return HybridMethod(encoder, workdir)
    if name == "random":
        return RandomMethod(seed)
    known = list(BUILTIN_METHODS) + list(method_names())
    raise InputError(f"unknown method {name!r}; known methods: {known}", field="methods")
