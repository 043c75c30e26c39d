"""Subset-retraining label generation (AirRep §3.2, Eq. 8; methods.md §1).

For every sampled (split, subset) one job fine-tunes a fresh copy of the target LM on the subset and
records the mean response-token loss of each dev example of the split. Jobs run through
:func:`airsearch.trainers.runner.run_jobs` (in-process, local processes or Ray) and are committed one file
each into the label store, so a run can be killed and resumed.

Gradient teachers (issue 4) plug in through :data:`TEACHERS`: ``"name": "module:function"`` where
``function(cfg, store, plans, corpus, lm) -> None`` writes every job with
:meth:`LabelStore.write_job_result` (``losses = -group score``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from pathlib import Path
from typing import Any

from airsearch.trainers.labels.config import LabelConfig
from airsearch.trainers.labels.sampling import SplitPlan, job_id, job_seed, sample_splits
from airsearch.trainers.labels.store import LabelStore, job_result, make_manifest
from airsearch.trainers.runner import Job, RunSummary, lend_lm, run_jobs, worker_lm

from airsearch.data.corpus import Corpus
from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.progress import announce
from airsearch.results import Result

# teacher name -> "module:function" (see the module docstring); "retrain" is built in.
TEACHERS: dict[str, str] = {
    t: "airsearch.trainers.labels.teacher:write_teacher_labels"
    for t in ("tracin", "gradcos", "dda", "haif", "haif-t", "daunce", "repsim")
}

# The signal check: the first PROBE_JOBS subsets of the first split run before the others, and when the
# spread of their dev losses (each dev example's loss std across subsets, nats, averaged) is under
# SPREAD_FLOOR the labels would hold almost no signal (a learning rate too small for the model: 2e-5
# gave 0.0098 on the tiny LM where 1e-3 gave 0.29), so the run says so before spending the rest.
PROBE_JOBS = 4
SPREAD_FLOOR = 0.05


@dataclasses.dataclass(frozen=True)
class LabelSummary(Result):
    """What :func:`generate_labels` did."""

    out: str
    teacher: str
    total_jobs: int
    done_jobs: int
    skipped_jobs: int
    completed_jobs: int
    seconds: float
    jobs_per_hour: float | None  # of the jobs run now; None when none ran
    backend: str
    corpus_fingerprint: str
    model_fingerprint: str
    spread: float | None = None  # mean over dev examples of the loss std across subsets (nats)

    @property
    def low_signal(self) -> bool:
        """The subsets barely change the dev losses: labels with almost no signal (:data:`SPREAD_FLOOR`)."""
        return self.spread is not None and self.spread < SPREAD_FLOOR


def low_signal_warning(spread: float, cfg: LabelConfig | None = None) -> str:
    """What to tell a user whose labels have a spread under :data:`SPREAD_FLOOR`."""
    lr = f" (now {cfg.lr:g}, {cfg.epochs} epoch(s))" if cfg is not None else ""
    return (
        f"warning: the labels hold almost no signal: a dev example's loss varies by {spread:.4f} nats "
        f"across subsets (under {SPREAD_FLOOR}); fine-tuning barely moves this model. Raise --lr{lr} "
        "(1e-3 suits the tiny LMs of 'airsearch lm build-tiny') or --epochs, then generate into a new --out"
    )


def generate_labels(
    cfg: LabelConfig, *, corpus: Corpus | None = None, quiet: bool | None = None
) -> LabelSummary:
    """Sample splits and subsets, create (or resume) the label store at ``cfg.out``, run every job.

    ``corpus`` (a :class:`airsearch.data.corpus.Corpus`, or anything with ``.examples`` and
    ``.fingerprint``) overrides reading ``cfg.corpus``. A store made by another config, corpus, model
    or teacher is refused with :class:`airsearch.errors.FingerprintMismatch`.
    """
    if cfg.teacher != "retrain" and cfg.teacher not in TEACHERS:
        raise InputError(
            f"unknown teacher {cfg.teacher!r}; known: {['retrain', *sorted(TEACHERS)]}",
            field="teacher",
        )
    if corpus is None:
        if not cfg.corpus:
            raise InputError("no corpus given", field="corpus")
        from airsearch.data.corpus import load_corpus

        corpus = load_corpus(list(cfg.corpus), **cfg.read_options())
    from airsearch.lm import load_lm

    model_path = _model_source(cfg.lm)
    in_process = cfg.workers == 1 and not cfg.ray
    # Worker processes and Ray tasks load their own copy; the driver then needs the weights only
    # for the fingerprint, so it reads them onto the CPU. Teachers and in-process jobs use this copy.
    lm_here = in_process or cfg.teacher != "retrain"
    lm = load_lm(model_path, max_length=cfg.max_length, device=None if lm_here else "cpu")
    model_fingerprint = lm.fingerprint
    examples: list[Example] = list(corpus.examples)
    plans = sample_splits([e.id for e in examples], **cfg.sampling())
    manifest = make_manifest(
        cfg.to_dict(),
        plans,
        teacher=cfg.teacher,
        corpus_fingerprint=corpus.fingerprint,
        model_fingerprint=model_fingerprint,
    )
    store = LabelStore.create(cfg.out, manifest, examples)

    if cfg.teacher != "retrain":
        import time

        started = time.perf_counter()
        mod, _, fn = TEACHERS[cfg.teacher].partition(":")
        getattr(importlib.import_module(mod), fn)(cfg, store, plans, corpus, lm)
        done_now = store.progress().done
        teacher_run = RunSummary(
            total=done_now,
            skipped=0,
            completed=done_now,
            seconds=round(time.perf_counter() - started, 3),
            backend="teacher",
        )
        return _summary(cfg, store, teacher_run, corpus.fingerprint, model_fingerprint, with_rates=False)

    if not in_process:
        del lm
    jobs = subset_jobs(cfg, plans, {e.id: e for e in examples}, model_path)
    before = store.progress()
    where = (
        f"Ray ({cfg.ray})"
        if cfg.ray
        else f"{cfg.workers} local process(es)"
        if cfg.workers > 1
        else "this process"
    )
    announce(
        f"plan: {before.total - before.done} of {before.total} subset fine-tunes left ({cfg.splits} splits x "
        f"{cfg.subsets_per_split} subsets of {cfg.subset_size} rows, {cfg.epochs} epoch(s) each) on {where} "
        f"-> {store.root}; the progress bar shows the time left after the first jobs"
    )
    common = dict(workers=cfg.workers, ray_address=cfg.ray, progress_desc="subset fine-tunes", quiet=quiet)
    # in process, the jobs reuse the driver's copy (each job fine-tunes a clone)
    with lend_lm(model_path, cfg.max_length, lm) if in_process else contextlib.nullcontext():
        done = set(store.done_job_ids())
        probe = [j for j in jobs if j.payload["split"] == plans[0].split][:PROBE_JOBS]
        first = run_jobs(
            [j for j in probe if j.job_id not in done], run_subset_job, store.results_dir, **common
        )
        spread = store.stats().spread_mean
        if spread is not None and spread < SPREAD_FLOOR:
            announce(low_signal_warning(spread, cfg), quiet=quiet)
        if cfg.subsets_per_job > 1:
            jobs = batched_jobs(jobs, cfg.subsets_per_job, set(store.done_job_ids()))
        rest: RunSummary = run_jobs(
            jobs, run_subset_batch if cfg.subsets_per_job > 1 else run_subset_job, store.results_dir, **common
        )
    run = dataclasses.replace(
        rest,
        skipped=rest.skipped - first.completed,
        completed=rest.completed + first.completed,
        seconds=rest.seconds + first.seconds,
    )
    return _summary(cfg, store, run, corpus.fingerprint, model_fingerprint, with_rates=True)


def _summary(
    cfg: LabelConfig,
    store: LabelStore,
    run: RunSummary,
    corpus_fingerprint: str,
    model_fingerprint: str,
    *,
    with_rates: bool,
) -> LabelSummary:
    """The :class:`LabelSummary` of a finished run (``with_rates``: subset fine-tunes, so their
    throughput and the labels' spread; a gradient teacher reports neither)."""
    prog = store.progress()
    return LabelSummary(
        out=str(store.root),
        teacher=cfg.teacher,
        total_jobs=prog.total,
        done_jobs=prog.done,
        skipped_jobs=run.skipped,
        completed_jobs=run.completed,
        seconds=run.seconds,
        jobs_per_hour=run.jobs_per_hour if with_rates and run.completed else None,
        backend=run.backend,
        corpus_fingerprint=corpus_fingerprint,
        model_fingerprint=model_fingerprint,
        spread=store.stats().spread_mean if with_rates else None,
    )


def subset_jobs(
    cfg: LabelConfig, plans: list[SplitPlan], by_id: dict[str, Example], model_path: str
) -> list[Job]:
    """One :class:`Job` per (split, subset); the payload carries the examples (no shared disk needed)."""
    jobs = []
    for plan in plans:
        dev = [by_id[i] for i in plan.dev_ids]
        for k, members in enumerate(plan.subsets):
            finetune = {
                "epochs": cfg.epochs,
                "lr": cfg.lr,
                "batch_size": cfg.batch_size,
                "max_length": cfg.max_length,
                "seed": job_seed(cfg.seed, plan.split, k),
                "lora_rank": cfg.lora_rank,
                "lora_alpha": cfg.lora_alpha,
            }
            jobs.append(
                Job(
                    job_id(plan.split, k),
                    {
                        "lm": model_path,
                        "split": plan.split,
                        "subset": k,
                        "train": [by_id[i] for i in members],
                        "dev": dev,
                        "finetune": finetune,
                        "eval_batch_size": cfg.eval_batch_size,
                        "max_length": cfg.max_length,
                        "movement": cfg.movement,
                    },
                )
            )
    return jobs


def batched_jobs(jobs: list[Job], size: int, done: set[str]) -> list[Job]:
    """The subset jobs not yet ``done``, ``size`` at a time per split, each batch one :class:`Job` whose
    parts are the subsets' job ids (:func:`run_subset_batch` runs it); the done ones stay single (the
    runner counts them as skipped)."""
    by_split: dict[int, list[Job]] = {}
    for j in jobs:
        if j.job_id not in done:
            by_split.setdefault(j.payload["split"], []).append(j)
    out = [j for j in jobs if j.job_id in done]
    for group in by_split.values():
        for s in range(0, len(group), size):
            chunk = group[s : s + size]
            common = {k: v for k, v in chunk[0].payload.items() if k not in ("subset", "train", "finetune")}
            subsets = [{k: j.payload[k] for k in ("subset", "train", "finetune")} for j in chunk]
            out.append(
                Job(
                    f"{chunk[0].job_id}-n{len(chunk)}",
                    {**common, "subsets": subsets},
                    tuple(j.job_id for j in chunk),
                )
            )
    return out


def run_subset_batch(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Worker: several subset fine-tunes of one split on one working copy of the base LM, its weights
    reset to the base's before each (no reload, no copy per fine-tune); ``{job id: result}``, each result
    what :func:`run_subset_job` gives for that subset."""
    base = worker_lm(payload["lm"], payload["max_length"])
    work = base.clone()
    out = {}
    for item in payload["subsets"]:
        work.model.load_state_dict(base.model.state_dict())  # every fine-tune starts from th0
        out[job_id(payload["split"], item["subset"])] = run_subset_job({**payload, **item}, work=work)
    return out


def run_subset_job(payload: dict[str, Any], work: Any = None) -> dict[str, Any]:
    """Worker: fine-tune a fresh copy of the base LM on the subset, return the dev losses (Eq. 8's L_S(z))
    and, with ``movement``, how far the fine-tune moved (:func:`~airsearch.trainers.labels.movement.job_movement`).
    ``work``: a copy of the base LM (its weights equal to the base's) to fine-tune in place instead."""
    import time

    from airsearch.lm import example_losses
    from airsearch.lm.finetune import FinetuneConfig, finetune

    t0 = time.perf_counter()
    base = worker_lm(payload["lm"], payload["max_length"])
    ft = FinetuneConfig(**payload["finetune"])
    tuned = finetune(work or base, payload["train"], ft, show_progress=False, in_place=work is not None)
    losses = example_losses(
        tuned,
        payload["dev"],
        batch_size=payload["eval_batch_size"],
        max_length=payload["max_length"],
        show_progress=False,
    )
    moved: dict[str, float] = {}
    if payload.get("movement"):
        from airsearch.trainers.labels.movement import job_movement

        moved = job_movement(
            base,
            tuned,
            payload["train"],
            batch_size=payload["eval_batch_size"],
            max_length=payload["max_length"],
        )
    del tuned
    return job_result(
        payload["split"],
        payload["subset"],
        [e.id for e in payload["train"]],
        [e.id for e in payload["dev"]],
        losses,
        seconds=round(time.perf_counter() - t0, 3),
        teacher="retrain",
        **moved,
    )


def _model_source(lm: str) -> str:
    """An absolute path for a local model folder (workers may run elsewhere), else the hub name."""
    p = Path(lm).expanduser()
    return str(p.resolve()) if p.exists() else lm
