"""Shared pieces of the eval commands: the common options, building method adapters, gold checks."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

from airsearch.trainers.evaluation.attribution import WhiteboxDaunce
from airsearch.trainers.evaluation.methods import AGGREGATIONS, Method
from airsearch.trainers.evaluation.report import write_results
from airsearch.trainers.evaluation.specs import (
    DAUNCE_VARIANTS,
    SPEC_PARAMS,
    encoder_folder,
    is_whitebox_daunce,
    method_config,
    method_spec_options,
    run_label,
    spec_options,
)

from airsearch.atomic import write_json_atomic
from airsearch.config import CorpusReadOptions, require
from airsearch.data.corpus import Corpus
from airsearch.data.example import Example
from airsearch.errors import FingerprintMismatch, InputError
from airsearch.lm.model import TargetLM
from airsearch.methods.daunce_run import DaunceConfig
from airsearch.methods.plugin import method_names
from airsearch.results import Result, omitted_when_none
from airsearch.runtime import QUANTIZE_HELP, RUNTIME_HELP, Quantize, Runtime, check_runtime

DEFAULT_METHODS = ("airrep", "base", "bm25", "random")


@dataclasses.dataclass(kw_only=True)
class EvalConfig(CorpusReadOptions):
    """Options every eval command shares (the corpus is read like ``airsearch index`` reads it)."""

    corpus: list[str] = field(default_factory=list, metadata={"help": "Training corpus file(s)."})
    methods: tuple[str, ...] = field(
        default=DEFAULT_METHODS,
        metadata={
            "help": "Methods to compare: airrep, base, bm25, hybrid, random, an attribution method (tracin, "
            "gradcos, dda, haif, haif-t, repsim, daunce-bb, daunce-wb), 'airrep:FOLDER' (or base:, "
            "hybrid:) for one more encoder, options after a colon: 'dda:beta=0.5,debias=eq9', 'gradcos:proj_dim=384', "
            "'tracin:params=lora', 'bm25:text=response' (repeatable).",
            "flag": "--method",
        },
    )
    encoder: str | None = field(
        default=None, metadata={"help": "Trained AirRep encoder folder (method 'airrep')."}
    )
    base_encoder: str = field(
        default="default", metadata={"help": "Untrained base encoder (method 'base'): 'default' or a folder."}
    )
    lm: str | None = field(
        default=None, metadata={"help": "Target LM folder (gradient methods, fine-tuning)."}
    )
    aggregation: str = field(
        default="auto", metadata={"help": "Group aggregation: auto (per method), attention (Eq. 7) or sum."}
    )
    gold: str | None = field(default=None, metadata={"help": "Gold artefact (see the command's help)."})
    out: str | None = field(
        default=None, metadata={"help": "Output folder for results JSON, Markdown and PNGs."}
    )
    seed: int = field(default=0, metadata={"help": "Seed (random baseline, sampling, fine-tuning)."})
    block_size: int = field(default=4096, metadata={"help": "Training rows per score block."})
    device: str | None = field(
        default=None, metadata={"help": "torch device (default: cuda when available)."}
    )
    runtime: Runtime = field(
        default="torch", metadata={"help": RUNTIME_HELP + " of the encoder methods (airrep, base, hybrid)"}
    )
    quantize: Quantize = field(default="none", metadata={"help": QUANTIZE_HELP})
    proj_dim: int = field(
        default=0, metadata={"help": "JL projection dimension of gradient methods (0 = exact gradients)."}
    )
    params: str = field(
        default="all",
        metadata={
            "help": "Gradient parameters of gradient methods: all, lora (LoGra-style factored) or names:PAT."
        },
    )
    daunce_models: int = field(
        default=8, metadata={"help": "Daunce: K perturbed models (black-box fine-tunes on the training set)."}
    )
    daunce_lr: float = field(default=1e-3, metadata={"help": "Daunce: learning rate of the K fine-tunes."})
    daunce_run: str | None = field(
        default=None,
        metadata={
            "help": "Daunce: a finished white-box run (airsearch.trainers.daunce) instead of the K fine-tunes."
        },
    )

    def validate(self) -> None:
        require(bool(self.methods), "methods", "name at least one method")
        check_runtime(self.runtime, self.quantize)
        require(self.daunce_models >= 2, "daunce_models", "Daunce needs at least 2 perturbed models")
        require(self.proj_dim >= 0, "proj_dim", "must be >= 0")
        require(
            self.params in SPEC_PARAMS or self.params.startswith("names:"),
            "params",
            f"must be one of {list(SPEC_PARAMS)} or names:PAT[,PAT]",
        )
        for spec in self.methods:  # an unknown option is refused when the config is made
            method_spec_options(spec)
        require(
            self.aggregation == "auto" or self.aggregation in AGGREGATIONS,
            "aggregation",
            f"must be auto or one of {AGGREGATIONS}",
        )
        require(self.block_size >= 1, "block_size", "must be at least 1")


def build_methods(
    cfg: EvalConfig,
    *,
    lm: TargetLM | None = None,
    checkpoints: Sequence[TargetLM] = (),
    base_lm: TargetLM | None = None,
    batch_size: int = 8,
    workdir: str | Path | None = None,
) -> list[tuple[str, Method]]:
    """(row name, adapter) for every ``cfg.methods`` spec (:mod:`~airsearch.trainers.evaluation.specs`);
    encoders are loaded once per folder.

    Attribution methods are built by the registry on ``lm`` (and, for TracIn/DDA, ``checkpoints``
    and DDA's ``base_lm``), with ``batch_size`` examples per gradient batch and ``lm``'s token budget.
    The row names say what ran (:func:`~airsearch.trainers.evaluation.specs.run_label`); two specs that
    would run the same thing are refused. ``daunce-wb`` without a finished run trains one on the
    training set in ``prepare`` (under ``workdir``, else a temporary folder). Methods whose train vectors
    are the same (one manifest: DDA's beta and debias variants) compute them once.
    """
    from airsearch.encoder import AirRepEncoder

    encoders: dict[str, Any] = {}

    def encoder(path: str) -> Any:
        if path not in encoders:
            encoders[path] = AirRepEncoder.load(
                path, device=cfg.device, runtime=cfg.runtime, quantize=cfg.quantize
            )
        return encoders[path]

    out: list[tuple[str, Method]] = []
    shared: dict[str, Any] = {}  # train vectors of identical methods, computed once (DDA's sweep)
    known = (*method_names(), *DAUNCE_VARIANTS)
    for spec in cfg.methods:
        name = spec.partition(":")[0]
        if name not in known:
            raise InputError(f"unknown method {name!r}; known methods: {list(known)}", field="methods")
        max_length = lm.max_length if lm else None
        mcfg = method_config(cfg, spec, batch_size=batch_size, max_length=max_length)
        folder = f"{name}-{len(out)}"  # a search baseline's work folder (BM25's index)
        kw: dict[str, Any] = {"workdir": Path(workdir) / folder if workdir else None}
        if "encoder" in spec_options(name):  # an encoder method: the folder is loaded once
            path = encoder_folder(spec, cfg)
            if not path and name == "airrep" and tuple(cfg.methods) == DEFAULT_METHODS:
                continue  # the default list compares a trained encoder only when one is given
            if not path:
                raise InputError(
                    "method 'airrep' needs an encoder folder (the encoder field, or 'airrep:FOLDER')",
                    field="methods",
                )
            kw["encoder"] = encoder(path)
        elif is_whitebox_daunce(spec, cfg) and not cfg.daunce_run:
            run_dir = Path(workdir) / f"daunce-wb-{len(out)}" if workdir else None
            config = DaunceConfig(
                models=cfg.daunce_models, max_length=max_length or DaunceConfig.max_length, seed=cfg.seed
            )
            kw["whitebox"] = WhiteboxDaunce(config, run_dir)
        m = Method(mcfg, lm=lm, checkpoints=checkpoints, base_lm=base_lm, shared=shared, **kw)
        label = run_label(spec, cfg, mcfg, n_checkpoints=len(checkpoints), has_base=base_lm is not None)
        if label in dict(out):
            raise InputError(f"method {spec!r} runs the same as an earlier one ({label})", field="methods")
        m.name = label
        out.append((label, m))
    return out


def aggregation_for(cfg: EvalConfig, method: Method) -> str:
    return method.aggregation if cfg.aggregation == "auto" else cfg.aggregation


class Timer:
    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.t0


@dataclasses.dataclass(frozen=True)
class Cost(Result):
    """Time and storage of one method in one evaluation (equations.md §6, cost)."""

    prepare_seconds: float
    score_seconds: float
    seconds_per_query: float
    storage_bytes: int
    storage_bytes_per_train_example: float


def cost_entry(method: Method, score_seconds: float, n_queries: int) -> Cost:
    """Time and storage per attributed query (equations.md §6, cost)."""
    return Cost(
        prepare_seconds=round(method.prepare_seconds, 4),
        score_seconds=round(score_seconds, 4),
        seconds_per_query=score_seconds / max(1, n_queries),
        storage_bytes=int(method.storage_bytes),
        storage_bytes_per_train_example=method.storage_bytes / max(1, method.n_train),
    )


M = TypeVar("M", bound=Result)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalResult(Result, Generic[M]):
    """What every eval command returns: its config, the fingerprints of what it measured, one score
    entry per method, the Markdown table, and the files it wrote (with ``out``).

    ``<name>.json`` in ``out`` holds :meth:`to_dict` without ``files``."""

    command: str
    config: dict[str, Any]
    fingerprints: dict[str, Any]
    methods: dict[str, M]
    table: str
    files: dict[str, str] | None = omitted_when_none()

    def written(self, out: Path | None, name: str, plots: Callable[[Path], dict[str, Path]]) -> Self:
        """Write ``<name>.json``/``<name>.md`` and the ``plots(out)`` into ``out`` (when given); the
        result with their paths in ``files``."""
        if out is None:
            return self
        files = write_results(out, name, self.to_dict(), self.table)
        files.update({k: str(p) for k, p in plots(out).items()})
        return dataclasses.replace(self, files=files)


def check_or_write_gold(
    path: str | Path, record: dict[str, Any], *, keys: tuple[str, ...], what: str
) -> None:
    """Tie an output folder (or a given gold file) to the data it was made from.

    If ``path`` exists, every fingerprint in ``keys`` must equal ``record``'s, else
    :class:`FingerprintMismatch` names both; if not, ``record`` is written there.
    """
    path = Path(path)
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"cannot parse the gold record: {e}", path=path) from None
        for k in keys:
            if old.get(k) != record.get(k):
                raise FingerprintMismatch(
                    f"gold/corpus fingerprint mismatch: the gold ({what}) was made with {k} "
                    f"{old.get(k)}, but {record.get(k)} is in use. Use the corpus the gold was made "
                    "from, or a new output folder.",
                    path=path,
                )
        return
    write_json_atomic(path, record)


def corpus_from(cfg: EvalConfig, corpus: Corpus | None = None) -> Corpus:
    """The training corpus given in Python, else loaded from ``cfg.corpus``."""
    if corpus is not None:
        return corpus
    if not cfg.corpus:
        raise InputError("a training corpus is needed", field="corpus")
    from airsearch.data.corpus import load_corpus

    return load_corpus(list(cfg.corpus), **cfg.read_options())


def queries_from(
    paths: Sequence[str], queries: Corpus | Sequence[Example] | None = None, *, what: str = "a query file"
) -> list[Example]:
    """The queries given in Python, else loaded from ``paths`` (the config's ``queries``)."""
    if queries is None:
        if not paths:
            raise InputError(f"{what} is needed", field="queries")
        from airsearch.data.corpus import load_queries

        queries = load_queries(list(paths))
    return list(queries.examples if isinstance(queries, Corpus) else queries)
