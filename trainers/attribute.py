"""Whole-corpus gradient / Daunce attribution (the Python API of ``airsearch attribute``).

Writes ``out/results.json`` (top-k train examples per query, highest score first), the config, and
with ``full_matrix`` the ``[n_train, n_queries]`` score matrix (``scores.safetensors``). With
``vectors`` the train vectors are stored and reused (a store made by other settings is refused).
With ``per_token`` every top-k train example also carries the share of each of its response tokens
in its score for the query (:meth:`~airsearch.methods.base.AttributionMethod.token_scores`; for
grad-dot the token gradient ``grad l_t / n`` dotted with the query gradient, HAIF Eq. 23's per-token
terms); the shares add up to the score.
The method comes from the one registry, :func:`airsearch.methods.registry.load_method`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airsearch.config import CorpusReadOptions, require
from airsearch.data.text import DEFAULT_ENCODING, check_encoding
from airsearch.errors import InputError
from airsearch.methods.registry import MethodConfig, load_method
from airsearch.results import Result, omitted_when_none

if TYPE_CHECKING:
    from airsearch.data.example import Example
    from airsearch.methods.base import AttributionMethod


@dataclass(kw_only=True)
class AttributeConfig(MethodConfig, CorpusReadOptions):
    """Attribute every query of ``queries`` to the whole ``corpus`` with one method. The corpus is read
    with the same options as ``airsearch index`` (``id_field`` ...), so ids match an index of the same
    file; each result carries its row's text preview and metadata."""

    corpus: list[str] = field(metadata={"help": "Training corpus file(s) (JSONL/Parquet/...; repeatable)."})
    queries: list[str] = field(metadata={"help": "Query file(s) (prompt/response rows; repeatable)."})
    encoding: str = field(
        default=DEFAULT_ENCODING, metadata={"help": "Text encoding of JSONL, JSON and CSV/TSV files."}
    )
    out: str = field(metadata={"help": "Output folder."})
    k: int = field(default=10, metadata={"help": "Top-k train examples per query.", "flag": ("-k", "--k")})
    full_matrix: bool = field(default=False, metadata={"help": "Also write the full score matrix."})
    vectors: str | None = field(default=None, metadata={"help": "Store / reuse train vectors here."})
    block_size: int = field(default=256, metadata={"help": "Train examples per scoring block."})
    per_token: bool = field(
        default=False,
        metadata={
            "help": "Also split each top-k example's score over its response tokens (gradient methods)."
        },
    )
    top_tokens: int = field(
        default=5, metadata={"help": "Tokens shown per example in the summary (--per-token)."}
    )
    preview_chars: int = field(
        default=200, metadata={"help": "Characters of each result's prompt and response kept in the results."}
    )

    def validate(self) -> None:
        super().validate()
        for name in ("corpus", "queries", "out"):
            require(bool(getattr(self, name)), name, "is required")
        require(self.k >= 1, "k", "must be at least 1")
        require(self.block_size >= 1, "block_size", "must be at least 1")
        check_encoding(self.encoding)
        require(self.top_tokens >= 1, "top_tokens", "must be at least 1")
        require(self.preview_chars >= 1, "preview_chars", "must be at least 1")
        require(
            not self.per_token or self.method not in ("daunce", "repsim"),
            "per_token",
            f"per-token scores come from gradient methods, not {self.method}",
        )
        require(
            self.method == "daunce" or bool(self.lm or self.checkpoints),
            "lm",
            f"{self.method} needs the target LM folder",
        )
        require(
            self.method != "daunce" or bool(self.daunce_run),
            "daunce_run",
            "daunce needs a finished run (a folder made by airsearch.trainers.daunce.run_daunce)",
        )


@dataclass(frozen=True)
class TokenShare(Result):
    """One response token of a train example and its share of the example's score for a query (the
    JSON shape of ``airsearch explain``'s token view, plus the token id)."""

    token: str
    token_id: int
    contribution: float


@dataclass(frozen=True)
class Attributed(Result):
    """A train example and its attribution score for one query (``score_kind``: the method, see
    :mod:`airsearch.score_kinds`), its text preview and metadata (with ``per_token``, the shares of its
    response tokens, in token order; they add up to ``score``)."""

    id: str
    score: float
    score_kind: str = ""
    prompt: str = ""
    response: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    tokens: list[TokenShare] | None = omitted_when_none()


@dataclass(frozen=True)
class QueryAttribution(Result):
    """One query's top-k train examples, highest score first."""

    query_id: str
    top: list[Attributed]


@dataclass(frozen=True)
class AttributeResult(Result):
    """What :func:`attribute` did: where it wrote, the method, the sizes and every query's top-k."""

    out: str
    method: str
    train: int
    queries: int
    k: int
    results: list[QueryAttribution]


def attribute(cfg: AttributeConfig) -> AttributeResult:
    """Python API of the command; returns the summary and writes the results (a refused or failed run
    leaves no output or vector folder it made)."""
    from airsearch.atomic import file_in_the_way, removed_if_left_empty

    for name in ("out", "vectors"):
        blocker = file_in_the_way(getattr(cfg, name)) if getattr(cfg, name) else None
        if blocker is not None:
            raise InputError(
                f"cannot write here: {blocker} is a file, not a folder", field=name, path=blocker
            )
    with removed_if_left_empty(cfg.out), removed_if_left_empty(cfg.vectors or cfg.out):
        return _attribute(cfg)


def _attribute(cfg: AttributeConfig) -> AttributeResult:
    import torch
    from safetensors.torch import save_file

    from airsearch.atomic import write_json_atomic
    from airsearch.data.corpus import load_corpus, load_queries
    from airsearch.data.example import preview
    from airsearch.methods.base import topk_from_store
    from airsearch.methods.store import VectorStoreWriter, open_store
    from airsearch.score_kinds import score_kind
    from airsearch.scoring import TopK

    read = {**cfg.read_options(), "encoding": cfg.encoding}
    train = list(load_corpus(list(cfg.corpus), **read, source_field="corpus").examples)
    queries = list(load_queries(list(cfg.queries), **read, source_field="queries").examples)
    method = load_method(cfg, fit_sample=train)
    qf = method.test_features(queries)
    out = Path(cfg.out)
    k = min(cfg.k, len(train))
    full = torch.zeros(len(train), len(queries)) if cfg.full_matrix else None
    ids = [e.id for e in train]
    if cfg.vectors and Path(cfg.vectors, "manifest.json").exists():
        store = open_store(cfg.vectors, expected=method.manifest(), expected_ids=ids)
        scores, idx = topk_from_store(store, qf, k)
        if full is not None:
            full = store.all() @ qf.T
    else:
        writer = VectorStoreWriter(cfg.vectors, method.manifest()) if cfg.vectors else None
        heap = TopK(len(queries), k)
        for s in range(0, len(train), cfg.block_size):
            block = method.train_features(train[s : s + cfg.block_size])
            part = qf @ block.T
            heap.update(part, s)
            if full is not None:
                full[s : s + block.shape[0]] = part.T
            if writer:
                writer.add(block, ids[s : s + cfg.block_size])
        if writer:
            writer.close()
        scores, idx = heap.result()
    shares = _token_shares(method, train, queries, idx) if cfg.per_token else {}
    kind = score_kind(method=method.name, precondition=cfg.precondition)
    results = [
        QueryAttribution(
            query_id=q.id,
            top=[
                Attributed(
                    id=ids[int(i)],
                    score=float(sc),
                    score_kind=kind,
                    prompt=preview(train[int(i)].prompt, cfg.preview_chars),
                    response=preview(train[int(i)].response, cfg.preview_chars),
                    metadata=train[int(i)].metadata,
                    tokens=shares.get((j, int(i))),
                )
                for sc, i in zip(scores[j], idx[j], strict=True)
            ],
        )
        for j, q in enumerate(queries)
    ]
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        out / "results.json",
        {"method": method.describe(), "k": k, "results": [r.to_dict() for r in results]},
    )
    cfg.save(out / "config.yaml")
    if full is not None:
        save_file({"scores": full.contiguous()}, str(out / "scores.safetensors"))
        write_json_atomic(out / "scores_ids.json", {"train_ids": ids, "query_ids": [q.id for q in queries]})
    return AttributeResult(
        out=str(out), method=method.name, train=len(train), queries=len(queries), k=k, results=results
    )


def _token_shares(
    method: AttributionMethod, train: list[Example], queries: list[Example], idx: Any
) -> dict[tuple[int, int], list[TokenShare]]:
    """``{(query j, train row i): token shares}`` for every top-k pair, one per-token gradient pass
    per distinct train example."""
    rows = sorted({int(i) for r in idx for i in r})
    per = dict(zip(rows, method.token_scores([train[i] for i in rows], queries), strict=True))
    out: dict[tuple[int, int], list[TokenShare]] = {}
    for j, top in enumerate(idx):
        for i in map(int, top):
            ts = per[i]
            values = ts.scores[:, j].tolist()
            out[j, i] = [
                TokenShare(token=t, token_id=tid, contribution=float(v))
                for t, tid, v in zip(ts.tokens, ts.token_ids, values, strict=True)
            ]
    return out
