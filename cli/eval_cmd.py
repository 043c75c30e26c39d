"""``airsearch eval``: LDS, data classification, planted tracing and data selection (methods.md §6).

Each subcommand writes a results JSON, a Markdown table and PNG plots into ``--out`` and prints the
table (or the JSON with ``--json``).
"""

from __future__ import annotations

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option
from airsearch.trainers.evaluation.classify import EvalClassifyConfig, eval_classify
from airsearch.trainers.evaluation.common import EvalResult
from airsearch.trainers.evaluation.lds import EvalLdsConfig, eval_lds
from airsearch.trainers.evaluation.select import EvalSelectConfig, eval_select
from airsearch.trainers.evaluation.trace import EvalTraceConfig, eval_trace


@click.group("eval")
def eval_group() -> None:
    """Evaluate attribution methods side by side (LDS, classification, tracing, selection)."""


def _show(result: EvalResult) -> str:
    where = f"\nresults: {result.files['json']}" if result.files else ""
    return result.table.rstrip() + where


@eval_group.command("lds")
@config_options(EvalLdsConfig)
@json_option
@handle_errors
def lds_cmd(config: EvalLdsConfig, as_json: bool) -> None:
    """LDS against gold subset-retraining labels (--gold LABEL_STORE) on --corpus.

    The gold must be generated on evaluation data disjoint from the AirRep encoder's training labels.

      airsearch eval lds --gold gold/ --corpus eval.jsonl --encoder airrep/ --method airrep --method base
    """
    emit(eval_lds(config), as_json, _show)


@eval_group.command("classify")
@config_options(EvalClassifyConfig)
@json_option
@handle_errors
def classify_cmd(config: EvalClassifyConfig, as_json: bool) -> None:
    """Share of queries whose top-1 / top-k attributed example has the query's --label-field."""
    emit(eval_classify(config), as_json, _show)


@eval_group.command("trace")
@config_options(EvalTraceConfig)
@json_option
@handle_errors
def trace_cmd(config: EvalTraceConfig, as_json: bool) -> None:
    """Planted-ground-truth tracing: --benchmark entity-swap (AUC, R@k) or pii (top-1 accuracy)."""
    emit(eval_trace(config), as_json, _show)


@eval_group.command("select")
@config_options(EvalSelectConfig)
@json_option
@handle_errors
def select_cmd(config: EvalSelectConfig, as_json: bool) -> None:
    """Fine-tune on the top-N examples per method vs N random; compare dev loss (and unigram F1)."""
    emit(eval_select(config), as_json, _show)
