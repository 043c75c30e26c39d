"""Method-column builds on Ray (``airsearch method-column ... --ray auto|ADDRESS|local``).

The driver reads the table's rows in the same fixed chunks as a single-process build and commits each
chunk's vectors to the side dataset in table order, as that build does, so a killed Ray build resumes
(on Ray or not) and gives the same column. Only the vectors are computed elsewhere: ``workers`` Ray
actors each build the method once from its :class:`~airsearch.methods.registry.MethodConfig` (the same
config, with the K-FAC / EK-FAC factors the driver fitted already in their folder) and compute
``train_features`` of one chunk at a time; at most two chunks per actor are in flight.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from airsearch.indexers.distributed import ray_session

from airsearch.data.example import Example


class _ColumnWorker:
    """One Ray actor: the method built once, then one chunk's row vectors per call."""

    def __init__(self, config: dict[str, Any]) -> None:
        from airsearch.methods.registry import MethodConfig, load_method

        self.method = load_method(MethodConfig.from_dict(config), show_progress=False)

    def vectors(self, chunk: list[Example]) -> np.ndarray:
        return self.method.train_features(chunk).detach().float().cpu().numpy()


def ray_vector_chunks(
    config: dict[str, Any],
    chunks: Iterable[list[Example]],
    address: str,
    workers: int | None,
    stats: dict[str, int] | None = None,
) -> Iterator[tuple[list[Example], np.ndarray]]:
    """``(chunk, its row vectors)`` for every chunk, in the order given, computed by Ray actors
    (``stats["workers"]``: how many)."""
    with ray_session(address, workers) as (ray, n_workers, gpus):
        if stats is not None:
            stats["workers"] = n_workers
        actor = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1)(_ColumnWorker)
        actors = [actor.remote(config) for _ in range(n_workers)]
        pending: deque[tuple[list[Example], Any]] = deque()
        for i, chunk in enumerate(chunks):
            pending.append((chunk, actors[i % n_workers].vectors.remote(chunk)))
            if len(pending) >= 2 * n_workers:
                done, ref = pending.popleft()
                yield done, ray.get(ref)
        while pending:
            done, ref = pending.popleft()
            yield done, ray.get(ref)
