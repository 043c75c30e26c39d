"""The ``airsearch eval`` subcommands: LDS, data classification, planted tracing and data selection
(equations.md §6). Imported only when one of them runs (:mod:`airsearch.cli.eval_cmd` is the group).

Each subcommand writes a results JSON, a Markdown table and PNG plots into ``--out`` and prints the
table (or the JSON with ``--json``).
"""

from __future__ import annotations

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option
from airsearch.trainers.evaluation.classify import EvalClassifyConfig, eval_classify
from airsearch.trainers.evaluation.common import EvalResult
from airsearch.trainers.evaluation.gold import TEACHER_ONLY, GoldConfig, GoldSummary, make_gold
from airsearch.trainers.evaluation.lds import EvalLdsConfig, eval_lds
from airsearch.trainers.evaluation.select import EvalSelectConfig, eval_select
from airsearch.trainers.evaluation.trace import EvalTraceConfig, eval_trace


def _show(result: EvalResult) -> str:
    where = f"\nresults: {result.files['json']}" if result.files else ""
    return result.table.rstrip() + where


@click.command("gold")
@click.argument("corpus", nargs=-1, type=click.Path())
@config_options(GoldConfig, skip=tuple(TEACHER_ONLY))  # gold labels retrain: no teacher options
@json_option
@handle_errors
def gold_cmd(config: GoldConfig, as_json: bool) -> None:
    """Gold labels for eval lds from CORPUS: subset retraining under --gold-protocol paper or local.

    paper: a warm-up model fine-tuned on --warmup-size rows set aside (gradient methods use it), gold
    fine-tunes from --lm on the other rows. local: gold fine-tunes from the model gradients use.

      airsearch eval gold eval.jsonl --lm lm/ --out gold/ --subset-size 64 --max-length 256
    """
    emit(make_gold(config), as_json, _gold_text)


def _gold_text(s: GoldSummary) -> str:
    r, m = s.record, s.record["movement"]

    def num(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4g}"

    return (
        f"gold ({s.protocol} protocol) in {s.out}: {s.labels.done_jobs}/{s.labels.total_jobs} fine-tunes, "
        f"{r['steps_per_finetune']} steps each, max_length {r['max_length']}\n"
        f"moved: parameter distance {num(m['param_distance'])} (relative {num(m['relative_distance'])}), "
        f"subset loss change {num(m['train_loss_change'])}, dev loss change {num(m['dev_loss_change'])}"
    )


@click.command("lds")
@config_options(EvalLdsConfig)
@json_option
@handle_errors
def lds_cmd(config: EvalLdsConfig, as_json: bool) -> None:
    """LDS against gold subset-retraining labels (--gold: an eval gold folder or a label store) on --corpus.

    The gold must be generated on evaluation data disjoint from the AirRep encoder's training labels.

      airsearch eval lds --gold gold/ --corpus eval.jsonl --encoder airrep/ --method airrep --method base
    """
    emit(eval_lds(config), as_json, _show)


@click.command("classify")
@config_options(EvalClassifyConfig)
@json_option
@handle_errors
def classify_cmd(config: EvalClassifyConfig, as_json: bool) -> None:
    """Share of queries whose top-1 / top-k attributed example has the query's --label-field."""
    emit(eval_classify(config), as_json, _show)


@click.command("trace")
@config_options(EvalTraceConfig)
@json_option
@handle_errors
def trace_cmd(config: EvalTraceConfig, as_json: bool) -> None:
    """Planted-ground-truth tracing: --benchmark entity-swap (AUC, R@k) or pii (top-1 accuracy)."""
    emit(eval_trace(config), as_json, _show)


@click.command("select")
@config_options(EvalSelectConfig)
@json_option
@handle_errors
def select_cmd(config: EvalSelectConfig, as_json: bool) -> None:
    """Fine-tune on the top-N examples per method vs N random; compare dev loss (and unigram F1)."""
    emit(eval_select(config), as_json, _show)
