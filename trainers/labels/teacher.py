"""Gradient / Daunce label teachers: the same label store as subset retraining, from one scoring pass.

``airsearch labels generate ... --teacher tracin|gradcos|dda|haif|haif-t|daunce|repsim``: the label of
(subset S, dev example z) is the teacher's group score ``sum_{i in S} tau(i, z)`` (sum aggregation),
written as ``losses = -score`` so the store's Eq. 8 normalisation (per dev example, over the split's
subsets) applies unchanged and ``airsearch train`` consumes it as it is. Cost: one feature pass over
every pool and dev example (plus, for Daunce, K short perturbed fine-tunes on the union of the pools)
instead of one fine-tune per subset. The store manifest records the teacher (``LabelStore.create``).

DDA/TracIn checkpoints and DDA's base model come from ``--teacher-checkpoint DIR`` (repeatable;
default: ``--lm`` alone) and ``--teacher-base-lm DIR`` (default: none, no debias term); both
are recorded in the store manifest with the rest of the config. ``--teacher-params`` picks the
gradient parameters and ``--precondition kfac|ekfac`` (with ``--damping``, ``--factors``, ...: the
options of every gradient command) makes the teacher's scores K-FAC / EK-FAC influence. The method
itself comes from the one registry, :func:`airsearch.methods.registry.load_method`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from airsearch.trainers.labels.config import LabelConfig
from airsearch.trainers.labels.sampling import SplitPlan
from airsearch.trainers.labels.store import LabelStore

from airsearch.data.corpus import Corpus
from airsearch.data.example import Example
from airsearch.lm.model import TargetLM
from airsearch.methods.base import AttributionMethod


def teacher_method(
    name: str,
    lm: TargetLM,
    cfg: LabelConfig,
    store: LabelStore,
    examples: Sequence[Example],
    fit_sample: Sequence[Example] | None = None,
) -> AttributionMethod:
    """The method behind a teacher name (gradient parameters ``cfg.teacher_params``; exact
    gradients). The Daunce teacher first runs (or resumes) its perturbed fine-tunes into the store's
    ``daunce/`` folder. A preconditioned teacher (``cfg.precondition``) fits its K-FAC / EK-FAC
    factors on ``fit_sample`` (default ``examples``) unless ``cfg.factors_sample`` names a file, and
    keeps them in ``cfg.factors``, by default the store's ``factors/`` folder."""
    from airsearch.trainers.daunce import DaunceConfig, run_daunce

    from airsearch.methods.registry import MethodConfig, load_method

    daunce_run = None
    if name == "daunce":
        daunce_run = store.root / "daunce"
        dcfg = DaunceConfig(max_length=cfg.max_length, seed=cfg.seed)
        run_daunce(lm.source, list(examples), [], dcfg, daunce_run, workers=cfg.workers, ray_address=cfg.ray)
    mcfg = MethodConfig(
        method=name,  # type: ignore[arg-type]  # a teacher name is a method name (TEACHERS)
        lm=lm.source,
        checkpoints=list(cfg.teacher_checkpoints),
        base_lm=cfg.teacher_base_lm,
        max_length=cfg.max_length,
        daunce_run=str(daunce_run) if daunce_run else None,
        params=cfg.teacher_params,
        **{**cfg.precondition_options(), "factors": cfg.factors or str(store.root / "factors")},
    )
    if cfg.teacher_db:  # a method column made by the same settings: read its row vectors
        from airsearch.indexers.method_columns import matching_column
        from airsearch.indexers.method_search import stored_rows
        from airsearch.indexers.store import IndexStore

        if matching_column(IndexStore(cfg.teacher_db).open(), mcfg) is not None:
            return stored_rows(cfg.teacher_db, mcfg, None)
    fit = list(fit_sample) if fit_sample is not None else list(examples)
    return load_method(mcfg, lm=lm, fit_sample=fit, show_progress=True)


def write_teacher_labels(
    cfg: LabelConfig,
    store: LabelStore,
    plans: Sequence[SplitPlan],
    corpus: Corpus,
    lm: TargetLM,
    method: AttributionMethod | None = None,
) -> None:
    """Write every not-yet-done (split, subset) job of ``store`` from ``method``'s scores."""
    from airsearch.trainers.labels.sampling import job_id

    by_id = {e.id: e for e in corpus.examples}
    needed_ids = sorted({i for p in plans for i in (*p.pool_ids, *p.dev_ids)})
    examples = [by_id[i] for i in needed_ids]
    pools = sorted({i for p in plans for i in p.pool_ids})  # the train side: the factors' fitting sample
    method = method or teacher_method(cfg.teacher, lm, cfg, store, examples, [by_id[i] for i in pools])
    done = set(store.done_job_ids())
    devs = sorted({i for p in plans for i in p.dev_ids})
    scores = None
    for plan in plans:
        todo = [k for k in range(len(plan.subsets)) if job_id(plan.split, k) not in done]
        if not todo:
            continue
        if scores is None:  # one score matrix over every pool and dev example, shared by all splits
            scores = teacher_scores(method, [by_id[i] for i in pools], [by_id[i] for i in devs])
            pool_row, dev_col = {i: r for r, i in enumerate(pools)}, {i: c for c, i in enumerate(devs)}
        dev = scores[:, [dev_col[i] for i in plan.dev_ids]]
        for k in todo:
            members = plan.subsets[k]
            group = dev[[pool_row[i] for i in members]].sum(dim=0)  # sum_{i in S} tau(i, z)
            store.write_job_result(
                plan.split, k, members, -group.double().numpy().astype(np.float64), teacher=cfg.teacher
            )


# Feature rows held at once by teacher_scores: about this many bytes per side (query and train).
TEACHER_BLOCK_BYTES = 2 * 1024**3


def teacher_scores(
    method: AttributionMethod,
    pool: Sequence[Example],
    dev: Sequence[Example],
    block_bytes: int = TEACHER_BLOCK_BYTES,
) -> torch.Tensor:
    """``tau(i, z)`` for every pool row i and dev row z: ``[n_pool, n_dev]``, in blocks of feature rows
    of about ``block_bytes`` per side, so exact gradients of a larger target LM (12.6M parameters:
    50 MB per row) fit in memory. The train rows are featurised once per dev block."""
    if not pool or not dev:
        return torch.zeros(len(pool), len(dev))
    first = method.test_features(dev[:1])
    rows = max(1, block_bytes // (first.element_size() * first.shape[1]))
    out = torch.zeros(len(pool), len(dev))
    for j in range(0, len(dev), rows):
        queries = first if rows == 1 and j == 0 else method.test_features(dev[j : j + rows])
        for i in range(0, len(pool), rows):
            out[i : i + rows, j : j + rows] = method.score_against(pool[i : i + rows], queries)
    return out
