"""The search baselines as method plug-ins: ``airrep`` / ``base``, ``bm25``, ``hybrid`` and ``random``.

They join the attribution methods in the one registry (:mod:`airsearch.methods.plugin`, named in
:data:`airsearch.methods.names.BUILTIN_METHOD_MODULES` by this module's path, so the core imports
nothing above it), and every command that takes a method takes them (``eval --method``,
``attribute --method bm25``, ``query --rerank bm25``). Each declares a name, an options dataclass,
``build`` and a ``score_kind``:

- ``airrep`` / ``base``: AirRep's single score ``e_z . e_i`` (AirRep §3.1), ``"dot"``; the rows are
  encoded as ``airsearch index`` encodes a corpus (the same batches and chunks) and top-k is the index's
  exact search (:func:`airsearch.indexers.search.exact_topk`), so rankings equal the product's. Their
  default group aggregation is AirRep Eq. 7 (``"attention"``).
- ``bm25``: LanceDB's native full-text index (BM25 ranking) over ``prompt response`` or the responses
  alone; ``"pairwise"`` (a BM25 score depends on the whole indexed set, so the rows are indexed in
  :meth:`~airsearch.methods.base.AttributionMethod.prepare` and scored against that index).
- ``hybrid``: reciprocal rank fusion (Cormack et al. 2009 Eq. 1) of the encoder's and BM25's top
  ``HYBRID_POOL`` rows, as ``airsearch query --mode hybrid``; ``"pairwise"``.
- ``random``: seeded i.i.d. normal scores; a block's values depend only on the seed, its first row
  and the number of queries; ``"pairwise"``.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from airsearch.config import CommandConfig, require
from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.methods.base import AttributionMethod
from airsearch.methods.plugin import MethodModels, MethodPlugin

BM25_TEXTS = ("full", "response")  # BM25 over prompt + response, or over responses only
_WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass(kw_only=True)
class EncoderOptions(CommandConfig):
    """``airrep`` / ``base`` / ``hybrid``: the AirRep encoder folder (``base``: the default base encoder
    when none is given; an encoder already in memory takes its place)."""

    encoder: str | None = field(default=None, metadata={"help": "AirRep encoder folder."})


@dataclass(kw_only=True)
class HybridOptions(EncoderOptions):
    """``hybrid``: the encoder folder and the rows taken from each ranking (0: ``HYBRID_POOL``, as
    ``query --mode hybrid``)."""

    pool: int = field(default=0, metadata={"help": "Rows taken from each ranking before fusion."})

    def validate(self) -> None:
        require(self.pool >= 0, "pool", "must be >= 0")


@dataclass(kw_only=True)
class BM25Options(CommandConfig):
    """``bm25``: which text is indexed and queried: ``full`` (prompt and response) or ``response``."""

    text: str = field(default="full", metadata={"help": "BM25 text: full (prompt + response) or response."})

    def validate(self) -> None:
        require(self.text in BM25_TEXTS, "text", f"must be one of {list(BM25_TEXTS)}, got {self.text!r}")


@dataclass(kw_only=True)
class RandomOptions(CommandConfig):
    """``random``: the seed of its scores."""

    seed: int = field(default=0, metadata={"help": "Seed of the random scores."})


class _PairwiseOnly:
    """The vector sides of a ``"pairwise"`` method: it has none (module docstring)."""

    name: str

    def train_features(self, examples: Sequence[Example]) -> torch.Tensor:
        raise InputError(f"method {self.name!r} is scored pairwise; it has no row vectors", field="method")

    def test_features(self, examples: Sequence[Example]) -> torch.Tensor:
        raise InputError(f"method {self.name!r} is scored pairwise; it has no query vectors", field="method")


class EncoderMethod(AttributionMethod):
    """``airrep`` / ``base``: rows and queries encoded by one AirRep encoder, scored by dot product."""

    aggregation = "attention"  # AirRep Eq. 7

    def __init__(self, encoder: Any, name: str = "airrep") -> None:
        self.encoder, self.name = encoder, name

    def row_vectors(self, examples: Sequence[Example], block_size: int = 256) -> Iterator[torch.Tensor]:
        """The rows in ``airsearch index``'s chunks and batches (:class:`IndexConfig`'s defaults)."""
        from airsearch.indexers.config import IndexConfig

        chunks = self.encoder.encode_stream(
            examples,
            batch_size=IndexConfig.batch_size,
            chunk_size=IndexConfig.chunk_size,
            total=len(examples),
            desc=f"encoding for {self.name}",  # a bar with total and ETA (silenced by -q)
        )
        for _, vectors in chunks:
            yield torch.from_numpy(vectors)

    def train_features(self, examples: Sequence[Example]) -> torch.Tensor:
        blocks = list(self.row_vectors(examples))
        return torch.cat(blocks) if blocks else torch.zeros(0, self.encoder.dim)

    def test_features(self, examples: Sequence[Example]) -> torch.Tensor:
        # as airsearch.indexers.query encodes a query
        return torch.from_numpy(self.encoder.encode(list(examples), show_progress=False))

    def vector_scores(self, rows: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Dot products in numpy float32, as the index's exact search computes them."""
        return torch.from_numpy(rows.numpy() @ queries.numpy().T)

    def vector_topk(
        self, rows: torch.Tensor, queries: torch.Tensor, k: int, block_size: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        """The index's exact search over the rows (its tie order), ``block_size`` rows at a time."""
        from airsearch.indexers.search import exact_topk

        v, n = rows.numpy(), rows.shape[0]
        blocks = (
            (np.arange(s, min(s + block_size, n)), v[s : s + block_size]) for s in range(0, n, block_size)
        )
        return exact_topk(queries.numpy(), blocks, k)

    def fingerprint(self) -> str:
        return self.encoder.fingerprint

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "encoder": self.encoder.fingerprint}


class BM25Method(_PairwiseOnly, AttributionMethod):
    """``bm25``: LanceDB's full-text index over the rows it is asked to score (indexed once per set of
    rows); a query's ``_score`` is taken for every row the index returns, and rows sharing no term with
    the query score 0, as in BM25."""

    name = "bm25"
    score_kind = "pairwise"

    def __init__(self, text: str = "full", workdir: str | Path | None = None) -> None:
        self.text, self._workdir = text, workdir
        self.table: Any = None
        self._key: int | None = None
        self.n_train = 0

    def _text(self, example: Example) -> str:
        return example.response if self.text == "response" else f"{example.prompt} {example.response}"

    def prepare(self, train: Sequence[Example]) -> int:
        """Index ``train`` (unless it is the set already indexed); the bytes of the index folder."""
        self._index(train)
        return sum(p.stat().st_size for p in Path(self._workdir).rglob("*") if p.is_file())  # type: ignore[arg-type]

    def _index(self, train: Sequence[Example]) -> None:
        import lancedb
        import pyarrow as pa
        from lancedb.index import FTS

        texts = [self._text(e) for e in train]
        key = hash((tuple(e.id for e in train), tuple(texts)))
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="airsearch-bm25-")
            self._workdir = self._tmp.name
        folder = Path(self._workdir)
        if key != self._key:
            data = pa.table(
                {"row": pa.array(range(len(train)), pa.int64()), "text": pa.array(texts, pa.string())}
            )
            self.table = lancedb.connect(str(folder)).create_table("bm25_train", data, mode="overwrite")
            if train:
                self.table.create_index("text", config=FTS())
            self._key, self.n_train = key, len(train)

    def query_scores(self, example: Example) -> tuple[np.ndarray, np.ndarray]:
        """(row indices, BM25 scores) of the indexed rows matching ``example`` (its first 256 words)."""
        text = " ".join(_WORD.findall(self._text(example))[:256])
        if not text or self.n_train == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        res = (
            self.table.search(text, query_type="fts").limit(self.n_train).select(["row", "_score"]).to_arrow()
        )
        return res["row"].to_numpy(), res["_score"].to_numpy().astype(np.float32)

    def score_blocks(
        self, train: Sequence[Example], test: Sequence[Example], block_size: int = 1024
    ) -> Iterator[tuple[int, torch.Tensor]]:
        self._index(train)
        hits = [self.query_scores(e) for e in test]
        for start in range(0, self.n_train, block_size):
            stop = min(self.n_train, start + block_size)
            block = np.zeros((stop - start, len(test)), dtype=np.float32)
            for j, (rows, scores) in enumerate(hits):
                sel = (rows >= start) & (rows < stop)
                block[rows[sel] - start, j] = scores[sel]
            yield start, torch.from_numpy(block)

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "text": self.text}


class HybridMethod(_PairwiseOnly, AttributionMethod):
    """``hybrid``: RRF of the encoder's top-``pool`` rows (dot product, the index's exact search) and
    BM25's top-``pool`` rows per query (:func:`airsearch.fusion.reciprocal_rank_fusion`); rows in neither
    list score 0."""

    name = "hybrid"
    score_kind = "pairwise"

    def __init__(self, encoder: Any, workdir: str | Path | None = None, pool: int | None = None) -> None:
        from airsearch.indexers.searcher import HYBRID_POOL

        self.vector, self.text = EncoderMethod(encoder), BM25Method(workdir=workdir)
        self.pool = pool or HYBRID_POOL
        self.rows: torch.Tensor | None = None
        self._key: int | None = None

    def prepare(self, train: Sequence[Example]) -> int:
        """Encode and index ``train`` (unless already done); the bytes of the vectors and the index."""
        key = hash(tuple((e.id, e.prompt, e.response) for e in train))
        if key != self._key:
            blocks = list(self.vector.row_vectors(train))
            self.rows = torch.cat(blocks) if blocks else torch.zeros(0, self.vector.encoder.dim)
            self._key = key
        return int(self.rows.numel() * 4) + self.text.prepare(train)  # type: ignore[union-attr]

    def score_blocks(
        self, train: Sequence[Example], test: Sequence[Example], block_size: int = 1024
    ) -> Iterator[tuple[int, torch.Tensor]]:
        from airsearch.fusion import reciprocal_rank_fusion

        self.prepare(train)
        assert self.rows is not None
        _, vector_rows = self.vector.vector_topk(self.rows, self.vector.test_features(test), self.pool, 4096)
        fused = torch.zeros((len(train), len(test)), dtype=torch.float32)
        for j, example in enumerate(test):
            rows, scores = self.text.query_scores(example)
            text_rows = rows[np.argsort(-scores, kind="stable")][: self.pool]
            for row, score in reciprocal_rank_fusion([vector_rows[j].tolist(), text_rows.tolist()]):
                fused[row, j] = score
        for start in range(0, len(train), block_size):
            yield start, fused[start : start + block_size]

    def fingerprint(self) -> str:
        return self.vector.fingerprint()

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "encoder": self.vector.fingerprint(), "pool": self.pool}


class RandomMethod(_PairwiseOnly, AttributionMethod):
    """``random``: seeded i.i.d. normal scores (module docstring)."""

    name = "random"
    score_kind = "pairwise"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def score_blocks(
        self, train: Sequence[Example], test: Sequence[Example], block_size: int = 1024
    ) -> Iterator[tuple[int, torch.Tensor]]:
        for start in range(0, len(train), block_size):
            stop = min(len(train), start + block_size)
            rng = np.random.default_rng([self.seed, start, len(test)])
            yield start, torch.from_numpy(rng.standard_normal((stop - start, len(test))).astype(np.float32))

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "seed": self.seed}


def _encoder(options: EncoderOptions, models: MethodModels) -> Any:
    """The encoder in memory, else ``options.encoder`` loaded (``base``: the default base encoder)."""
    if models.encoder is not None:
        return models.encoder
    if not options.encoder and models.method == "airrep":
        raise InputError(
            "method 'airrep' needs an encoder folder (--method-option encoder=FOLDER)", field="method"
        )
    from airsearch.encoder import AirRepEncoder

    return AirRepEncoder.load(options.encoder or None)


def build_encoder(options: EncoderOptions, models: MethodModels) -> EncoderMethod:
    return EncoderMethod(_encoder(options, models), name=models.method)


def build_bm25(options: BM25Options, models: MethodModels) -> BM25Method:
    return BM25Method(options.text, models.workdir)


def build_hybrid(options: HybridOptions, models: MethodModels) -> HybridMethod:
    return HybridMethod(_encoder(options, models), models.workdir, pool=options.pool or None)


def build_random(options: RandomOptions, models: MethodModels) -> RandomMethod:
    return RandomMethod(options.seed)


PLUGINS = (
    MethodPlugin(
        "airrep", EncoderOptions, build_encoder, "AirRep dot product e(q)·e(row)", spec_options=("encoder",)
    ),
    MethodPlugin(
        "base", EncoderOptions, build_encoder, "untrained base encoder dot product", spec_options=("encoder",)
    ),
    MethodPlugin(
        "bm25", BM25Options, build_bm25, "BM25 word overlap", score_kind="pairwise", spec_options=("text",)
    ),
    MethodPlugin(
        "hybrid",
        HybridOptions,
        build_hybrid,
        "RRF of AirRep and BM25 ranks",
        score_kind="pairwise",
        spec_options=("encoder", "pool"),
    ),
    MethodPlugin("random", RandomOptions, build_random, "seeded random scores", score_kind="pairwise"),
)
