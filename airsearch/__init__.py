"""airsearch: training-data attribution search. ``from airsearch import ...`` is the whole product.

Every CLI command is a thin layer over one function here that takes the command's config dataclass:
``build_index(IndexConfig)``, ``query(QueryConfig)`` / ``Searcher``, ``select(SelectConfig)``,
``delete_rows(DeleteConfig)``, ``info``, ``generate_labels(LabelConfig)`` / ``LabelStore``,
``train_encoder(TrainConfig)``, ``attribute(AttributeConfig)`` / ``load_method(MethodConfig)`` (a
method added in one module: ``MethodPlugin``, ``register_module``),
``make_gold(GoldConfig)`` (the LDS gold, either protocol), ``eval_lds`` / ``eval_classify`` /
``eval_trace`` / ``eval_select`` with their ``Eval*Config``. Hessian-aware influence: the
``PreconditionOptions`` of every gradient command's config, ``Precondition`` / ``Preconditioner`` and
the K-FAC / EK-FAC factors of a ``ParamSet`` (``linear_blocks``, ``fit_factors``, ``KroneckerFactors``,
``save_factors`` / ``open_factors``);
token-level scores: ``AttributionMethod.token_scores`` -> ``TokenScores`` (``attribute(per_token=True)``
-> ``TokenShare``).

The building blocks the benchmarks and studies use are public too: the index store
(``IndexStore``, ``IndexTable``, ``TableMeta``, ``build_ann_index`` with ``AnnConfig``,
``build_text_index``, ``select_best_rank``), method columns (``MethodColumnConfig``,
``add_method_column``, ``find_column``, ``column_specs``, ``ColumnSpec``, ``build_column_index``,
``ColumnSearcher``, ``StoredReranker``), the label jobs (``sample_splits``, ``subset_jobs``, ``run_subset_job``), the
metrics and reports (``lds_per_example``, ``predict_split_scores``, ``paired_difference``,
``DevClusters``, ``cluster_keys``, ``fmt``, ``markdown_table``, ``curve_plot``, ``pareto_frontier``,
``pareto_plot``) and small utilities (``write_json_atomic``, ``write_text_atomic``,
``fingerprint_json``, ``random_word_examples``, ``batch_loss``, ``packaged_gguf``).

Names are imported lazily (module ``__getattr__``, PEP 562) so that ``import airsearch`` stays cheap
and the core imports no higher layer at import time; the ``if TYPE_CHECKING:`` block gives type
checkers and IDEs every name with its real signature (docs/architecture.md, "the front door").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from airsearch.atomic import write_json_atomic, write_text_atomic
    from airsearch.config import CommandConfig
    from airsearch.data import sample_corpus_path, sample_queries_path
    from airsearch.data.corpus import Corpus, iter_corpus, load_corpus, load_queries, write_rows
    from airsearch.data.example import Example
    from airsearch.data.synthetic import random_word_examples
    from airsearch.encoder import AirRepEncoder, EncoderInfo
    from airsearch.encoder_export import ExportConfig, ExportSummary, export_airrep
    from airsearch.errors import AirsearchError, FingerprintMismatch, InputError
    from airsearch.explain import AirRepExplanation, explain_airrep
    from airsearch.fingerprint import fingerprint_json
    from airsearch.fusion import reciprocal_rank_fusion
    from airsearch.indexers.ann import AnnConfig, build_ann_index
    from airsearch.indexers.build import IndexSummary, build_index
    from airsearch.indexers.column_config import MethodColumnConfig
    from airsearch.indexers.column_spec import ColumnSpec, column_specs
    from airsearch.indexers.config import (
        DeleteConfig,
        ExplainConfig,
        IndexConfig,
        InfoConfig,
        QueryConfig,
        RestoreConfig,
        SelectConfig,
    )
    from airsearch.indexers.explain import RowExplanation, explain_score
    from airsearch.indexers.fts import build_text_index
    from airsearch.indexers.method_columns import add_method_column, build_column_index, find_column
    from airsearch.indexers.method_search import ColumnSearcher, StoredReranker
    from airsearch.indexers.query import Candidate, GroupScore, QueryResult, Searcher, query
    from airsearch.indexers.restore import RestoreSummary, restore_table
    from airsearch.indexers.select import SelectSummary, select, select_best_rank
    from airsearch.indexers.serve import ServeConfig, create_app
    from airsearch.indexers.store import IndexStore, delete_rows, info
    from airsearch.indexers.table import IndexTable, TableMeta
    from airsearch.labels import SplitLabels, normalise_losses
    from airsearch.lm.finetune import FinetuneConfig, finetune
    from airsearch.lm.gguf import import_gguf, packaged_gguf
    from airsearch.lm.info import lm_info
    from airsearch.lm.loss import batch_loss, example_losses, masked_token_nll
    from airsearch.lm.model import TargetLM, encode_examples, load_lm, save_lm
    from airsearch.lm.tiny import TinyLMConfig, build_tiny_lm
    from airsearch.methods.base import AttributionMethod, TokenScores
    from airsearch.methods.daunce_run import DaunceConfig, DaunceRun, load_daunce
    from airsearch.methods.factor_store import FactorManifest, open_factors, save_factors
    from airsearch.methods.gradients import ParamSet
    from airsearch.methods.kfac import KroneckerFactors, fit_factors
    from airsearch.methods.linear_layers import LinearBlock, linear_blocks
    from airsearch.methods.plugin import MethodModels, MethodPlugin, register_module
    from airsearch.methods.precondition import Precondition, Preconditioner, fitting_sample
    from airsearch.methods.registry import MethodConfig, PreconditionOptions, Reranker, load_method
    from airsearch.metrics import lds, lds_per_example
    from airsearch.scoring import StreamingGroupScore, blocked_dot_topk, group_score
    from airsearch.trainers.attribute import AttributeConfig, AttributeResult, TokenShare, attribute
    from airsearch.trainers.daunce import run_daunce
    from airsearch.trainers.encoder_training.config import TrainConfig, TrainResult
    from airsearch.trainers.encoder_training.evaluate import predict_split_scores
    from airsearch.trainers.encoder_training.trainer import train_encoder
    from airsearch.trainers.evaluation.classify import EvalClassifyConfig, eval_classify
    from airsearch.trainers.evaluation.gold import GoldConfig, GoldSummary, make_gold
    from airsearch.trainers.evaluation.lds import DevClusters, EvalLdsConfig, cluster_keys, eval_lds
    from airsearch.trainers.evaluation.metrics import paired_difference
    from airsearch.trainers.evaluation.report import (
        curve_plot,
        fmt,
        markdown_table,
        pareto_frontier,
        pareto_plot,
    )
    from airsearch.trainers.evaluation.select import EvalSelectConfig, eval_select
    from airsearch.trainers.evaluation.trace import EvalTraceConfig, eval_trace
    from airsearch.trainers.labels.config import LabelConfig
    from airsearch.trainers.labels.generate import LabelSummary, generate_labels, run_subset_job, subset_jobs
    from airsearch.trainers.labels.info import label_store_info
    from airsearch.trainers.labels.sampling import sample_splits
    from airsearch.trainers.labels.store import LabelStore

# module -> the public names it defines (must match the TYPE_CHECKING block; tests/test_front_door.py)
_MODULES: dict[str, tuple[str, ...]] = {
    # layer 0, the core
    "airsearch.atomic": ("write_json_atomic", "write_text_atomic"),
    "airsearch.config": ("CommandConfig",),
    "airsearch.data": ("sample_corpus_path", "sample_queries_path"),
    "airsearch.data.corpus": ("Corpus", "iter_corpus", "load_corpus", "load_queries", "write_rows"),
    "airsearch.data.example": ("Example",),
    "airsearch.data.synthetic": ("random_word_examples",),
    "airsearch.encoder": ("AirRepEncoder", "EncoderInfo"),
    "airsearch.encoder_export": ("ExportConfig", "ExportSummary", "export_airrep"),
    "airsearch.errors": ("AirsearchError", "FingerprintMismatch", "InputError"),
    "airsearch.explain": ("AirRepExplanation", "explain_airrep"),
    "airsearch.fingerprint": ("fingerprint_json",),
    "airsearch.fusion": ("reciprocal_rank_fusion",),
    "airsearch.labels": ("SplitLabels", "normalise_losses"),
    "airsearch.lm.finetune": ("FinetuneConfig", "finetune"),
    "airsearch.lm.gguf": ("import_gguf", "packaged_gguf"),
    "airsearch.lm.info": ("lm_info",),
    "airsearch.lm.loss": ("batch_loss", "example_losses", "masked_token_nll"),
    "airsearch.lm.model": ("TargetLM", "encode_examples", "load_lm", "save_lm"),
    "airsearch.lm.tiny": ("TinyLMConfig", "build_tiny_lm"),
    "airsearch.methods.base": ("AttributionMethod", "TokenScores"),
    "airsearch.methods.daunce_run": ("DaunceConfig", "DaunceRun", "load_daunce"),
    "airsearch.methods.factor_store": ("FactorManifest", "open_factors", "save_factors"),
    "airsearch.methods.gradients": ("ParamSet",),
    "airsearch.methods.kfac": ("KroneckerFactors", "fit_factors"),
    "airsearch.methods.linear_layers": ("LinearBlock", "linear_blocks"),
    "airsearch.methods.plugin": ("MethodModels", "MethodPlugin", "register_module"),
    "airsearch.methods.precondition": ("Precondition", "Preconditioner", "fitting_sample"),
    "airsearch.methods.registry": ("MethodConfig", "PreconditionOptions", "Reranker", "load_method"),
    "airsearch.metrics": ("lds", "lds_per_example"),
    "airsearch.scoring": ("StreamingGroupScore", "blocked_dot_topk", "group_score"),
    # layer 1, the index
    "airsearch.indexers.ann": ("AnnConfig", "build_ann_index"),
    "airsearch.indexers.build": ("IndexSummary", "build_index"),
    "airsearch.indexers.column_config": ("MethodColumnConfig",),
    "airsearch.indexers.column_spec": ("ColumnSpec", "column_specs"),
    "airsearch.indexers.config": (
        "DeleteConfig",
        "ExplainConfig",
        "IndexConfig",
        "InfoConfig",
        "QueryConfig",
        "RestoreConfig",
        "SelectConfig",
    ),
    "airsearch.indexers.explain": ("RowExplanation", "explain_score"),
    "airsearch.indexers.fts": ("build_text_index",),
    "airsearch.indexers.method_columns": ("add_method_column", "build_column_index", "find_column"),
    "airsearch.indexers.method_search": ("ColumnSearcher", "StoredReranker"),
    "airsearch.indexers.query": ("Candidate", "GroupScore", "QueryResult", "Searcher", "query"),
    "airsearch.indexers.restore": ("RestoreSummary", "restore_table"),
    "airsearch.indexers.select": ("SelectSummary", "select", "select_best_rank"),
    "airsearch.indexers.serve": ("ServeConfig", "create_app"),
    "airsearch.indexers.store": ("IndexStore", "delete_rows", "info"),
    "airsearch.indexers.table": ("IndexTable", "TableMeta"),
    # layer 2, long jobs and the evaluation harness
    "airsearch.trainers.attribute": ("AttributeConfig", "AttributeResult", "TokenShare", "attribute"),
    "airsearch.trainers.daunce": ("run_daunce",),
    "airsearch.trainers.encoder_training.config": ("TrainConfig", "TrainResult"),
    "airsearch.trainers.encoder_training.evaluate": ("predict_split_scores",),
    "airsearch.trainers.encoder_training.trainer": ("train_encoder",),
    "airsearch.trainers.evaluation.classify": ("EvalClassifyConfig", "eval_classify"),
    "airsearch.trainers.evaluation.gold": ("GoldConfig", "GoldSummary", "make_gold"),
    "airsearch.trainers.evaluation.lds": ("DevClusters", "EvalLdsConfig", "cluster_keys", "eval_lds"),
    "airsearch.trainers.evaluation.metrics": ("paired_difference",),
    "airsearch.trainers.evaluation.report": (
        "curve_plot",
        "fmt",
        "markdown_table",
        "pareto_frontier",
        "pareto_plot",
    ),
    "airsearch.trainers.evaluation.select": ("EvalSelectConfig", "eval_select"),
    "airsearch.trainers.evaluation.trace": ("EvalTraceConfig", "eval_trace"),
    "airsearch.trainers.labels.config": ("LabelConfig",),
    "airsearch.trainers.labels.generate": (
        "LabelSummary",
        "generate_labels",
        "run_subset_job",
        "subset_jobs",
    ),
    "airsearch.trainers.labels.info": ("label_store_info",),
    "airsearch.trainers.labels.sampling": ("sample_splits",),
    "airsearch.trainers.labels.store": ("LabelStore",),
}
_EXPORTS: dict[str, str] = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "AirRepEncoder",
    "AirRepExplanation",
    "AirsearchError",
    "AnnConfig",
    "AttributeConfig",
    "AttributeResult",
    "AttributionMethod",
    "Candidate",
    "ColumnSearcher",
    "ColumnSpec",
    "CommandConfig",
    "Corpus",
    "DaunceConfig",
    "DaunceRun",
    "DeleteConfig",
    "DevClusters",
    "EncoderInfo",
    "EvalClassifyConfig",
    "EvalLdsConfig",
    "EvalSelectConfig",
    "EvalTraceConfig",
    "Example",
    "ExplainConfig",
    "ExportConfig",
    "ExportSummary",
    "FactorManifest",
    "FinetuneConfig",
    "FingerprintMismatch",
    "GoldConfig",
    "GoldSummary",
    "GroupScore",
    "IndexConfig",
    "IndexStore",
    "IndexSummary",
    "IndexTable",
    "InfoConfig",
    "InputError",
    "KroneckerFactors",
    "LabelConfig",
    "LabelStore",
    "LabelSummary",
    "LinearBlock",
    "MethodColumnConfig",
    "MethodConfig",
    "MethodModels",
    "MethodPlugin",
    "ParamSet",
    "Precondition",
    "PreconditionOptions",
    "Preconditioner",
    "QueryConfig",
    "QueryResult",
    "Reranker",
    "RestoreConfig",
    "RestoreSummary",
    "RowExplanation",
    "Searcher",
    "SelectConfig",
    "SelectSummary",
    "ServeConfig",
    "SplitLabels",
    "StoredReranker",
    "StreamingGroupScore",
    "TableMeta",
    "TargetLM",
    "TinyLMConfig",
    "TokenScores",
    "TokenShare",
    "TrainConfig",
    "TrainResult",
    "add_method_column",
    "attribute",
    "batch_loss",
    "blocked_dot_topk",
    "build_ann_index",
    "build_column_index",
    "build_index",
    "build_text_index",
    "build_tiny_lm",
    "cluster_keys",
    "column_specs",
    "create_app",
    "curve_plot",
    "delete_rows",
    "encode_examples",
    "eval_classify",
    "eval_lds",
    "eval_select",
    "eval_trace",
    "example_losses",
    "explain_airrep",
    "explain_score",
    "export_airrep",
    "find_column",
    "finetune",
    "fingerprint_json",
    "fit_factors",
    "fitting_sample",
    "fmt",
    "generate_labels",
    "group_score",
    "import_gguf",
    "info",
    "iter_corpus",
    "label_store_info",
    "lds",
    "lds_per_example",
    "linear_blocks",
    "lm_info",
    "load_corpus",
    "load_daunce",
    "load_lm",
    "load_method",
    "load_queries",
    "make_gold",
    "markdown_table",
    "masked_token_nll",
    "normalise_losses",
    "open_factors",
    "packaged_gguf",
    "paired_difference",
    "pareto_frontier",
    "pareto_plot",
    "predict_split_scores",
    "query",
    "random_word_examples",
    "reciprocal_rank_fusion",
    "register_module",
    "restore_table",
    "run_daunce",
    "run_subset_job",
    "sample_corpus_path",
    "sample_queries_path",
    "sample_splits",
    "save_factors",
    "save_lm",
    "select",
    "select_best_rank",
    "subset_jobs",
    "train_encoder",
    "write_json_atomic",
    "write_rows",
    "write_text_atomic",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use, then keep it in this module's namespace."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'airsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
