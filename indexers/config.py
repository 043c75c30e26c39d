"""The configs of ``airsearch index``, ``query``, ``select``, ``info``, ``delete`` and ``restore`` (one
dataclass per command). ``QueryConfig`` carries the ``--rerank`` options too, so ``query --config FILE``
sets them."""

from __future__ import annotations

import dataclasses
import re
from typing import Literal, get_args

from airsearch.indexers.lock import DEFAULT_LOCK_TIMEOUT

from airsearch.config import CommandConfig, CorpusReadOptions, require
from airsearch.data.text import DEFAULT_ENCODING, check_encoding
from airsearch.errors import InputError
from airsearch.methods.names import MethodName
from airsearch.methods.plugin import get_plugin, method_names
from airsearch.methods.registry import MethodConfig, method_config_from
from airsearch.runtime import QUANTIZE_HELP, RUNTIME_HELP, Quantize, Runtime, check_runtime

F = dataclasses.field
AnnType = Literal["auto", "IVF_PQ", "IVF_HNSW_SQ", "IVF_HNSW_PQ", "IVF_SQ", "IVF_FLAT"]
INDEX_TYPES: tuple[str, ...] = get_args(AnnType)  # the ANN index types (airsearch.indexers.ann)
DEFAULT_TYPE = "auto"  # by table size: airsearch.indexers.ann.AnnConfig.resolved_type
DEFAULT_THRESHOLD = 50_000  # rows from which an ANN index is built
ENCODING_HELP = "text encoding of JSONL, JSON and CSV/TSV files"


def bad_filter(where: str, exc: BaseException, field: str = "where") -> InputError:
    """The error for a filter the SQL engine refused: its first line, without the engine's own source
    location (``, /.../sql.rs:109:22``)."""
    first = re.sub(r",\s*/\S+\.rs:\d+:\d+$", "", (str(exc).splitlines() or [type(exc).__name__])[0])
    from airsearch.indexers.rows import not_a_column_hint

    hints = [h for key in re.findall(r"`([^`]*)`", where) if (h := not_a_column_hint(key))]
    return InputError(f"bad filter {where!r}: {hints[0] if hints else first}", field=field)


def check_filter(where: str | None, field: str = "where") -> None:
    """Refuse a ``--where`` filter that is more than one SQL expression: a ``;`` (statement separator)
    or a comment (``--``, ``/*``) outside string literals, which the SQL parser would silently drop."""
    if where is None:
        return
    if not where.strip():
        raise InputError("the filter is empty; leave it out to use every row", field=field)
    quote: str | None = None
    for i, c in enumerate(where):
        if quote:
            quote = None if c == quote else quote  # '' inside a literal closes and reopens it
        elif c in "'\"":
            quote = c
        elif c == ";" or where.startswith(("--", "/*"), i):
            what = "';' (a statement separator)" if c == ";" else f"the SQL comment {where[i : i + 2]!r}"
            raise InputError(
                f"a filter is one SQL expression over the table's columns; {what} is not allowed "
                f"in {where!r}",
                field=field,
            )


def lock_timeout_field() -> float:
    """The ``lock_timeout`` field of every command that writes a table (:mod:`airsearch.indexers.lock`)."""
    return F(
        default=DEFAULT_LOCK_TIMEOUT,
        metadata={"help": "seconds to wait for another writer of the same table before giving up"},
    )


QUERY_RUNTIME_HELP = "encoder runtime (default: the one the index was built with; another is refused)"
QUERY_QUANTIZE_HELP = "encoder int8 or none (default: the index's)"
Backend = Literal["auto", "faiss", "numpy", "torch"]
SearchMode = Literal["vector", "bm25", "hybrid"]
SEARCH_MODES = ("vector", "bm25", "hybrid")


@dataclasses.dataclass(kw_only=True)
class IndexConfig(CorpusReadOptions):
    """Encode a corpus with AirRep and store it in a LanceDB table."""

    corpus: list[str] = F(metadata={"help": "corpus files or folders (the CORPUS arguments)", "cli": False})
    db: str = F(metadata={"help": "LanceDB directory (created if missing)"})
    table: str = F(default="corpus", metadata={"help": "table name inside the db"})
    encoder: str = F(
        default="default", metadata={"help": "AirRep encoder folder, base encoder, or 'default'"}
    )
    append: bool = F(
        default=False,
        metadata={"help": "add rows to an existing table (same encoder; ids already there are refused)"},
    )
    upsert: bool = F(
        default=False,
        metadata={"help": "add rows to an existing table, replacing the rows whose ids are already there"},
    )
    overwrite: bool = F(
        default=False, metadata={"help": "replace an existing table once the new one is built"}
    )
    batch_size: int = F(default=64, metadata={"help": "encoder batch size"})
    chunk_size: int = F(default=1024, metadata={"help": "rows encoded and written per chunk"})
    lm: str | None = F(
        default=None,
        metadata={"help": "target LM folder: computes the table's method columns of added rows"},
    )
    runtime: Runtime = F(default="torch", metadata={"help": RUNTIME_HELP})
    quantize: Quantize = F(default="none", metadata={"help": QUANTIZE_HELP})
    ray: str | None = F(
        default=None,
        metadata={
            "help": "encode on Ray: 'auto' (the running cluster), a cluster ADDRESS, or 'local' (a local Ray)"
        },
    )
    workers: int | None = F(
        default=None,
        metadata={"help": "encoder actors with --ray (default: one per GPU, else one per 2 CPUs)"},
    )
    encoding: str = F(default=DEFAULT_ENCODING, metadata={"help": ENCODING_HELP})
    ann_threshold: int = F(
        default=DEFAULT_THRESHOLD, metadata={"help": "build an ANN index at this many rows (-1: never)"}
    )
    ann_type: AnnType = F(
        default=DEFAULT_TYPE,
        metadata={"help": "ANN index type (auto: IVF_HNSW_SQ below 500k rows, IVF_FLAT from 500k)"},
    )
    fts: bool = F(
        default=True, metadata={"help": "build the full-text (BM25) index for query --mode bm25|hybrid"}
    )
    nprobes: int | None = F(
        default=None,
        metadata={"help": "ANN partitions probed per query (default: HNSW 8, IVF 3 partitions in 16)"},
    )
    refine_factor: int | None = F(
        default=None,
        metadata={
            "help": "ANN refine: re-score refine_factor*k rows exactly (default: 20, or 100 from 500k "
            "rows; none for IVF_FLAT)"
        },
    )
    ef: int | None = F(
        default=None,
        metadata={"help": "HNSW candidate list size per query (default: 300, or 1000 from 500k rows)"},
    )
    lock_timeout: float = lock_timeout_field()

    def validate(self) -> None:
        require(bool(self.corpus), "corpus", "give at least one corpus file or folder")
        require(self.lock_timeout >= 0, "lock_timeout", "must be >= 0")
        require(bool(self.db), "db", "is required (the index directory)")
        require(self.batch_size > 0, "batch_size", "must be positive")
        require(self.chunk_size > 0, "chunk_size", "must be positive")
        require(self.ann_type in INDEX_TYPES, "ann_type", f"must be one of {INDEX_TYPES}")
        modes = [m for m in ("append", "upsert", "overwrite") if getattr(self, m)]
        require(
            len(modes) <= 1, modes[-1] if modes else "append", f"{' and '.join(modes)} exclude each other"
        )
        check_encoding(self.encoding)
        require(self.nprobes is None or self.nprobes > 0, "nprobes", "must be positive")
        require(self.refine_factor is None or self.refine_factor >= 0, "refine_factor", "must be >= 0")
        require(self.ef is None or self.ef > 0, "ef", "must be positive")
        check_runtime(self.runtime, self.quantize)
        require(
            self.ray is None or bool(self.ray.strip()), "ray", "give 'auto', a cluster address or 'local'"
        )
        require(self.workers is None or self.workers >= 1, "workers", "must be at least 1")
        require(
            self.workers is None or self.ray is not None, "workers", "sets the encoder actors of a Ray build"
        )


def method_config_field(help_text: str) -> MethodConfig:
    """A command's nested :class:`MethodConfig`: every option of every method, flattened into the
    command's flags (the method itself is named by the command's own option: ``--rerank``, ``--method``)."""
    return F(  # type: ignore[return-value]
        default_factory=MethodConfig, metadata={"flatten": True, "skip": ("method",), "help": help_text}
    )


@dataclasses.dataclass(kw_only=True)
class QueryConfig(CorpusReadOptions):
    """Which training examples best explain a (prompt, response)? With ``rerank``, an attribution method
    rescores the AirRep candidates, and with ``method`` a method column is searched; either takes every
    option of every method from the nested ``method_config`` (a gradient method may be K-FAC / EK-FAC
    preconditioned: the factors are fitted on a seeded sample of the table's rows unless
    ``factors_sample`` names a file)."""

    db: str = F(metadata={"help": "LanceDB directory"})
    table: str | None = F(default=None, metadata={"help": "table name (default: the only table)"})
    prompt: str | None = F(default=None, metadata={"help": "query prompt"})
    response: str | None = F(default=None, metadata={"help": "query response (model output)"})
    queries: str | None = F(default=None, metadata={"help": "file of queries (any corpus format)"})
    encoding: str = F(default=DEFAULT_ENCODING, metadata={"help": ENCODING_HELP + " (--queries)"})
    k: int = F(default=10, metadata={"help": "results per query", "flag": ("-k", "--k")})
    where: str | None = F(default=None, metadata={"help": "SQL filter on metadata, e.g. \"task = 'x'\""})
    mode: SearchMode = F(
        default="vector",
        metadata={
            "help": "vector (AirRep dot product), bm25 (full-text), or hybrid (reciprocal rank fusion)"
        },
    )
    opponents: bool = F(
        default=False, metadata={"help": "also list opponents (most negative AirRep scores, in every mode)"}
    )
    group_by: str | None = F(default=None, metadata={"help": "rank metadata groups by Eq. 7 group score"})
    encoder: str | None = F(default=None, metadata={"help": "encoder (default: the one the index records)"})
    runtime: Runtime | None = F(default=None, metadata={"help": QUERY_RUNTIME_HELP})
    quantize: Quantize | None = F(default=None, metadata={"help": QUERY_QUANTIZE_HELP})
    exact: bool = F(default=False, metadata={"help": "exact search even when an ANN index exists"})
    backend: Backend = F(default="auto", metadata={"help": "exact search backend"})
    preview_chars: int = F(default=100, metadata={"help": "characters of prompt/response shown"})
    # --rerank: AirRep retrieves `candidates` rows, an attribution method rescores them
    rerank: MethodName | None = F(
        default=None, metadata={"help": "rescore the AirRep candidates with this attribution method"}
    )
    candidates: int = F(default=200, metadata={"help": "AirRep candidates to rescore (with --rerank)"})
    # --method: search a method column of the table (airsearch.indexers.method_columns)
    method: str | None = F(
        default=None,
        metadata={
            "help": "search this method column (its name, e.g. m_gradcos, or a method name) with the "
            "query's method vector; needs --lm (the column's LM)"
        },
    )
    method_config: MethodConfig = method_config_field("the options of the --rerank / --method method")

    def validate(self) -> None:
        super().validate()
        require(bool(self.db), "db", "is required (the index directory)")
        require(self.k > 0, "k", "must be positive")
        require(
            self.method is None or (self.mode == "vector" and self.rerank is None),
            "method",
            "searches a method column by vector; it takes no --mode bm25/hybrid and no --rerank",
        )
        require(self.method is None or bool(self.lm), "lm", "searching a method column needs --lm")
        require(self.mode in SEARCH_MODES, "mode", f"must be one of {SEARCH_MODES}")
        check_runtime(self.runtime or "onnx", self.quantize or "none")
        has_pair = self.prompt is not None or self.response is not None
        require(
            has_pair != (self.queries is not None),
            "queries",
            "give either a prompt/response pair or a queries file (one of them)",
        )
        require(not has_pair or self.response is not None, "response", "a prompt needs a response")
        check_filter(self.where)
        check_encoding(self.encoding)
        require(
            self.rerank is None or self.rerank in method_names(),
            "rerank",
            f"must be one of {list(method_names())}",
        )
        require(self.candidates >= 1, "candidates", f"must be at least 1, got {self.candidates}")
        require(
            self.rerank in (None, "daunce")
            or bool(self.lm or self.checkpoints)
            or not get_plugin(self.rerank).needs_lm,  # a search baseline (bm25, ...) needs no LM
            "lm",
            "reranking needs the target LM folder",
        )
        require(
            self.rerank != "daunce" or bool(self.daunce_run),
            "daunce_run",
            "reranking with daunce needs a finished run",
        )
        require(
            self.precondition == "none" or (self.rerank is not None and get_plugin(self.rerank).gradient),
            "precondition",
            "preconditions a gradient --rerank method (tracin, gradcos, dda, haif, haif-t)",
        )

    def rerank_method(self) -> MethodConfig | None:
        """The registry config of the ``--rerank`` method (``None`` without ``--rerank``)."""
        if self.rerank is None:
            return None
        return method_config_from(self, self.rerank)


@dataclasses.dataclass(kw_only=True)
class ExplainConfig(CommandConfig):
    """Why does a training row score as it does for a query? Token-level contributions: AirRep's exactly,
    and with ``lm`` a gradient method's, on parameter set ``params``, K-FAC / EK-FAC preconditioned with
    ``precondition`` (factors fitted on a seeded sample of the table's rows unless ``factors_sample``
    names a file, or read from ``factors``)."""

    db: str = F(metadata={"help": "LanceDB directory"})
    table: str | None = F(default=None, metadata={"help": "table name (default: the only table)"})
    id: str = F(metadata={"help": "id of the training row to explain"})
    prompt: str | None = F(default=None, metadata={"help": "query prompt (none: a text-only query)"})
    response: str = F(metadata={"help": "query response (model output)"})
    encoder: str | None = F(default=None, metadata={"help": "encoder (default: the one the index records)"})
    method: MethodName = F(
        default="haif", metadata={"help": "gradient method for the token view (with --lm)"}
    )
    top: int = F(
        default=10,
        metadata={"help": "tokens listed per side in the summary", "flag": ("--top-tokens", "--top")},
    )
    method_config: MethodConfig = method_config_field("the options of the gradient token view's method")

    def validate(self) -> None:
        super().validate()
        require(bool(self.db), "db", "is required (the index directory)")
        require(bool(self.id), "id", "is required (the row to explain)")
        require(
            self.method in method_names() and (not self.lm or get_plugin(self.method).gradient),
            "method",
            "must be a gradient method",
        )
        require(self.top > 0, "top", "must be positive")
        require(
            self.precondition == "none" or bool(self.lm),
            "precondition",
            "preconditions the gradient token view, which needs --lm",
        )

    def gradient_method(self) -> MethodConfig | None:
        """The registry config of the gradient token view (``None`` without ``lm``)."""
        if not self.lm:
            return None
        return method_config_from(self, self.method)


@dataclasses.dataclass(kw_only=True)
class SelectConfig(CorpusReadOptions):
    """Select training data for a set of targets (AirRep App. G)."""

    db: str = F(metadata={"help": "LanceDB directory"})
    table: str | None = F(default=None, metadata={"help": "table name (default: the only table)"})
    targets: str = F(metadata={"help": "file of target examples (any corpus format)"})
    encoding: str = F(default=DEFAULT_ENCODING, metadata={"help": ENCODING_HELP + " (--targets)"})
    n: int | None = F(default=None, metadata={"help": "rows to select", "flag": ("-n", "--n")})
    fraction: float | None = F(default=None, metadata={"help": "fraction of the table to select"})
    strategy: Literal["best-rank", "sum"] = F(
        default="best-rank", metadata={"help": "best-rank (App. G: best rank over targets) or sum of scores"}
    )
    out: str = F(metadata={"help": "output file, .jsonl or .parquet"})
    where: str | None = F(default=None, metadata={"help": "SQL filter: select only among these rows"})
    encoder: str | None = F(default=None, metadata={"help": "encoder (default: the one the index records)"})
    runtime: Runtime | None = F(default=None, metadata={"help": QUERY_RUNTIME_HELP})
    quantize: Quantize | None = F(default=None, metadata={"help": QUERY_QUANTIZE_HELP})
    backend: Backend = F(default="auto", metadata={"help": "exact search backend"})
    block_size: int = F(default=65536, metadata={"help": "corpus rows scored per block"})

    def validate(self) -> None:
        require(bool(self.db), "db", "is required (the index directory)")
        require(bool(self.targets), "targets", "is required (a file of target examples)")
        require(bool(self.out), "out", "is required (a .jsonl or .parquet file)")
        require((self.n is None) != (self.fraction is None), "n", "give exactly one of n and fraction")
        require(self.n is None or self.n > 0, "n", "must be positive")
        require(self.fraction is None or 0 < self.fraction <= 1, "fraction", "must be in (0, 1]")
        require(self.out.endswith((".jsonl", ".parquet")), "out", "must end in .jsonl or .parquet")
        require(self.block_size > 0, "block_size", "must be positive")
        check_runtime(self.runtime or "onnx", self.quantize or "none")
        check_filter(self.where)
        check_encoding(self.encoding)


@dataclasses.dataclass(kw_only=True)
class InfoConfig(CommandConfig):
    """Describe an index directory."""

    db: str = F(metadata={"help": "LanceDB directory"})

    def validate(self) -> None:
        require(bool(self.db), "db", "is required (the index directory)")


@dataclasses.dataclass(kw_only=True)
class DeleteConfig(CommandConfig):
    """Delete rows from an index table by id and/or SQL filter."""

    db: str = F(metadata={"help": "LanceDB directory"})
    table: str | None = F(default=None, metadata={"help": "table name (default: the only table)"})
    ids: tuple[str, ...] = F(default=(), metadata={"help": "row id to delete (repeatable)", "flag": "--id"})
    where: str | None = F(
        default=None, metadata={"help": "SQL filter of rows to delete, e.g. \"task = 'x'\""}
    )
    dry_run: bool = F(default=False, metadata={"help": "count the rows that would go; delete nothing"})
    lock_timeout: float = lock_timeout_field()

    def validate(self) -> None:
        require(bool(self.db), "db", "is required (the index directory)")
        require(bool(self.ids) or bool(self.where), "ids", "give row ids and/or a where filter")
        check_filter(self.where)
        require(self.lock_timeout >= 0, "lock_timeout", "must be >= 0")


@dataclasses.dataclass(kw_only=True)
class RestoreConfig(CommandConfig):
    """Bring back an earlier version of an index table."""

    db: str = F(metadata={"help": "LanceDB directory"})
    table: str | None = F(default=None, metadata={"help": "table name (default: the only table)"})
    version: int | None = F(
        default=None, metadata={"help": "the version to bring back (see `airsearch info`)"}
    )
    before_last: bool = F(default=False, metadata={"help": "bring back the version before the newest one"})
    lock_timeout: float = lock_timeout_field()

    def validate(self) -> None:
        require(bool(self.db), "db", "is required (the index directory)")
        require(
            (self.version is not None) != self.before_last,
            "version",
            "give --version N or --before-last (one of them)",
        )
        require(self.version is None or self.version >= 1, "version", "must be >= 1")
        require(self.lock_timeout >= 0, "lock_timeout", "must be >= 0")
