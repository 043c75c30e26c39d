"""The one skeleton every ``eval`` command runs: gold record, methods, a timed loop, report.

:func:`run_eval` holds the shared steps; a command supplies only what differs, as an :class:`EvalTask`:
its gold record, what it does before the methods run (fine-tunes, baselines), how one prepared method
is scored (the timed step, then its score entry) and how the scores are reported.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Generic, TypeVar

from airsearch.trainers.evaluation.common import (
    Cost,
    EvalConfig,
    EvalResult,
    Timer,
    build_methods,
    check_or_write_gold,
    cost_entry,
)
from airsearch.trainers.evaluation.methods import Method

from airsearch.data.example import Example
from airsearch.results import Result

S = TypeVar("S", bound=Result)
R = TypeVar("R", bound=EvalResult[Any])


class EvalTask(abc.ABC, Generic[S, R]):
    """What one evaluation command adds to :func:`run_eval`.

    ``name`` is the stem of the files written to ``cfg.out`` (``<name>.json``/``.md``, and
    ``<name>_gold.json`` when :attr:`gold` is set); every method is prepared on :attr:`train` and its
    cost is counted per :attr:`n_queries`."""

    name: str
    train: list[Example]
    n_queries: int
    #: (record, fingerprint keys that must match, what it is) checked against ``cfg.gold`` or written
    #: to ``<name>_gold.json`` in ``cfg.out``; ``None``: the command checks its gold itself.
    gold: tuple[dict[str, Any], tuple[str, ...], str] | None = None

    def start(self) -> dict[str, S]:
        """Work between the gold check and the methods (fine-tunes); returns rows shown first."""
        return {}

    def method_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`build_methods` beyond the config and the work folder."""
        return {}

    def row_name(self, label: str, method: Method) -> str | None:
        """The row name of a built method; ``None`` leaves it out."""
        return label

    def unscored(self) -> S | None:
        """An entry every method gets without running (nothing to score), else ``None``."""
        return None

    @abc.abstractmethod
    def answers(self, method: Method) -> Any:
        """The timed step: what a prepared method answers for the command's queries."""

    @abc.abstractmethod
    def score(self, method: Method, answers: Any, cost: Cost) -> S:
        """One method's entry from its answers and cost."""

    @abc.abstractmethod
    def report(self, results: dict[str, S], **common: Any) -> R:
        """The command's result; ``common`` holds the fields every command fills alike (config, methods)."""

    @abc.abstractmethod
    def plots(self, out: Path, results: dict[str, S]) -> dict[str, Path]:
        """The PNGs written beside the JSON."""


def run_eval(cfg: EvalConfig, task: EvalTask[S, R]) -> R:
    """Run ``task``: check or write its gold record, :meth:`~EvalTask.start`, then for every method of
    ``cfg.methods`` (:func:`build_methods`) prepare it on the training rows, time its answers and score
    them; report, and write ``<name>.json``/``.md``/PNGs to ``cfg.out`` (equations.md §6, cost)."""
    out = Path(cfg.out) if cfg.out else None
    if task.gold is not None:
        path = Path(cfg.gold) if cfg.gold else (out / f"{task.name}_gold.json" if out else None)
        if path:
            record, keys, what = task.gold
            check_or_write_gold(path, record, keys=keys, what=what)
    results = task.start()
    for label, method in build_methods(cfg, workdir=out / "work" if out else None, **task.method_options()):
        row = task.row_name(label, method)
        if row is None:
            continue
        fixed = task.unscored()
        if fixed is not None:
            results[row] = fixed
            continue
        method.prepare(task.train)
        with Timer() as t:
            answers = task.answers(method)
        results[row] = task.score(method, answers, cost_entry(method, t.seconds, task.n_queries))
    result = task.report(results, config=cfg.to_dict(), methods=results)
    return result.written(out, task.name, lambda d: task.plots(d, results))
