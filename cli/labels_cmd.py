"""``airsearch labels``: generate subset-loss labels (AirRep Eq. 8) and inspect a label store."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from airsearch.cli.common import config_options, emit, handle_errors, json_option
from airsearch.trainers.labels.config import LabelConfig

if TYPE_CHECKING:
    from airsearch.trainers.labels.generate import LabelSummary
    from airsearch.trainers.labels.info import LabelStoreInfo


@click.group("labels")
def labels() -> None:
    """Subset-retraining labels for AirRep encoder training."""


@labels.command("generate")
@click.argument("corpus", nargs=-1, type=click.Path())
@config_options(LabelConfig)
@json_option
@handle_errors
def generate(config: LabelConfig, as_json: bool) -> None:
    """Fine-tune the target LM on sampled subsets of CORPUS and record dev losses (resumable).

    Each subset is one job, committed atomically into OUT/results/; rerun the same command to
    continue after an interruption. Example:

      airsearch labels generate train.jsonl --lm lm/ --out labels/ --splits 4 --workers 2
    """
    from airsearch.trainers.labels.generate import generate_labels

    emit(generate_labels(config), as_json, _generate_text)


def _generate_text(s: LabelSummary) -> str:
    if s.backend == "teacher":  # one scoring pass wrote every job: no per-job runs or rates
        how = f"all written by the {s.teacher} teacher in one scoring pass, {s.seconds:.1f}s"
    elif s.completed_jobs:
        how = (
            f"{s.completed_jobs} run now, {s.skipped_jobs} already done; {s.seconds:.1f}s, "
            f"{s.jobs_per_hour:.0f} jobs/h, {s.backend}"
        )
    else:
        how = f"nothing to run: all {s.skipped_jobs} were already done"
    out = (
        f"labels: {s.done_jobs}/{s.total_jobs} jobs done in {s.out} ({how})\n"
        f"teacher {s.teacher}, corpus {s.corpus_fingerprint}, model {s.model_fingerprint}"
    )
    if s.spread is not None:
        out += f"\nlabel spread {s.spread:.4f} nats (a dev example's loss std across subsets, mean)"
    if s.low_signal:
        from airsearch.trainers.labels.generate import low_signal_warning

        out += "\n" + low_signal_warning(s.spread)  # type: ignore[arg-type]
    return out


@labels.command("info")
@click.argument("store_dir", type=click.Path(exists=True, file_okay=False))
@json_option
@handle_errors
def info(store_dir: str, as_json: bool) -> None:
    """Show a label store's config, progress and label statistics."""
    from airsearch.trainers.labels.info import label_store_info

    emit(label_store_info(store_dir), as_json, _info_text)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _info_text(d: LabelStoreInfo) -> str:
    c, p, st = d.config, d.progress, d.stats  # config: the recorded LabelConfig, a mapping
    code = d.code_version or {}
    lines = [
        f"label store {d.dir} (teacher {d.teacher}, created {d.created})",
        f"  corpus {d.corpus_fingerprint}, model {d.model_fingerprint}, "
        f"code {code.get('airsearch')}@{(code.get('git_commit') or '?')[:10]}",
        f"  {c.get('splits')} splits x {c.get('subsets_per_split')} subsets of {c.get('subset_size')} "
        f"from pools of {c.get('pool_size')}, dev {c.get('dev_size')}; epochs {c.get('epochs')}, "
        f"lr {c.get('lr')}, batch {c.get('batch_size')}, lora rank {c.get('lora_rank')}, seed {c.get('seed')}",
        f"  progress: {p.done}/{p.total} jobs" + ("" if p.complete else " (incomplete: rerun generate)"),
        f"  losses: {st.labels} values, mean {_fmt(st.loss_mean)}, std {_fmt(st.loss_std)}; "
        f"mean spread across subsets {_fmt(st.spread_mean)}",
    ]
    for s in st.per_split:
        lines.append(
            f"    split {s.split}: {s.subsets} subsets x {s.dev} dev, loss "
            f"{_fmt(s.loss_mean)} +- {_fmt(s.loss_std)}, spread {_fmt(s.spread_mean)} "
            f"[{_fmt(s.spread_min)}, {_fmt(s.spread_max)}]"
        )
    return "\n".join(lines)
