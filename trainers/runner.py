"""A resumable job runner: in-process, local worker processes, or Ray tasks.

Long label-generation runs (one fine-tune per subset) and Daunce's K perturbed fine-tunes are sets of
independent jobs. A job is ``(job_id, payload)``; a module-level worker function ``fn(payload)``
returns a result dict. The *driver* (the process that called :func:`run_jobs`) writes each result as
one file ``<out_dir>/<job_id>.npz``, atomically (:func:`airsearch.atomic.atomic_path`: a temporary
file, fsync, rename, fsync of the folder), so that:

- a rerun skips every job whose result file exists;
- ``kill -9`` at any moment loses at most the jobs in flight; a result is either complete or absent,
  and a job is never written twice (one result file per job id; a driver lock refuses a second run
  writing into the same folder at the same time);
- stale temporary files left by a killed run are removed on restart and never read.

Result dicts hold numpy arrays (numeric or string arrays), lists of strings/numbers, and JSON-able
scalars; they are read back with ``np.load(allow_pickle=False)`` and JSON, never unpickled.

Backends: ``workers=1`` runs jobs in this process; ``workers=W>1`` uses W spawned local processes
(each with ``cpu_count // W`` torch threads); ``ray_address`` runs each job as a Ray task (one GPU per
task when the cluster has GPUs). Results come back to the driver, so Ray workers need no shared disk
for results (but whatever the payload names, e.g. a model folder, must be readable where they run).
Both pools keep about two jobs per worker in flight and submit the next as one finishes.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import fcntl
import itertools
import json
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from airsearch.atomic import atomic_path
from airsearch.errors import InputError, MissingDependency
from airsearch.jobfiles import JSON_KEY as _JSON_KEY
from airsearch.jobfiles import finished_job_ids, result_path
from airsearch.jobfiles import read_result as read_result  # the reading half lives in the core
from airsearch.progress import format_seconds, progress
from airsearch.results import Result

_LOCK_NAME = ".runner.lock"


_WORKER_LMS: dict[tuple[str, int | None], Any] = {}  # (model path, max_length) -> TargetLM, per process


def worker_lm(path: str, max_length: int | None) -> Any:
    """The base LM of this process for jobs that fine-tune copies of it: loaded once and kept between
    jobs (a worker runs many), or the driver's own copy while :func:`lend_lm` lends it."""
    key = (path, max_length)
    if key not in _WORKER_LMS:
        from airsearch.lm import load_lm

        _WORKER_LMS[key] = load_lm(path, max_length=max_length)
    return _WORKER_LMS[key]


@contextlib.contextmanager
def lend_lm(path: str, max_length: int | None, lm: Any) -> Iterator[None]:
    """In-process jobs get the driver's already loaded ``lm`` from :func:`worker_lm`; forgotten after."""
    _WORKER_LMS[(path, max_length)] = lm
    try:
        yield
    finally:
        _WORKER_LMS.pop((path, max_length), None)


@dataclasses.dataclass(frozen=True)
class Job:
    """One independent unit of work: a file-name-safe id and a picklable payload for the worker.

    A job with ``parts`` (file-name-safe result ids) is a batch of several results computed in one
    worker call (e.g. several subset fine-tunes on one loaded model): its worker returns
    ``{part_id: result}``, each part is committed as its own result file, and the job is done when
    every part is."""

    job_id: str
    payload: Any
    parts: tuple[str, ...] = ()

    def results(self) -> tuple[str, ...]:
        """The result ids this job commits: its parts, else its own id."""
        return self.parts or (self.job_id,)


@dataclasses.dataclass(frozen=True)
class RunSummary(Result):
    """What :func:`run_jobs` did: totals, how many were already done, time and throughput."""

    total: int
    skipped: int
    completed: int
    seconds: float
    backend: str

    @property
    def jobs_per_hour(self) -> float:
        return self.completed * 3600.0 / self.seconds if self.seconds > 0 else float("nan")


# ----------------------------------------------------------------------------- result files


def clean_stale_temp_files(out_dir: str | os.PathLike) -> int:
    """Remove temporary files left by a killed writer (``.<name>.tmp-*``); returns how many."""
    d = Path(out_dir)
    n = 0
    if d.is_dir():
        for p in d.iterdir():
            if p.name.startswith(".") and ".tmp-" in p.name and p.is_file():
                p.unlink(missing_ok=True)
                n += 1
    return n


def write_result(out_dir: str | os.PathLike, job_id: str, result: dict[str, Any]) -> Path:
    """Commit one job's result atomically: arrays as npz entries, everything else as one JSON entry."""
    _check_job_id(job_id)
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    for key, value in result.items():
        if key == _JSON_KEY:
            raise InputError(f"result key {_JSON_KEY!r} is reserved")
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                raise InputError(f"job {job_id}: result '{key}' is an object array; use numbers or str")
            arrays[key] = value
        else:
            meta[key] = value
    arrays[_JSON_KEY] = np.array(json.dumps(meta, default=_json_default))
    target = result_path(out_dir, job_id)
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    return target


# ----------------------------------------------------------------------------- running


def run_jobs(
    jobs: Sequence[Job],
    fn: Callable[[Any], dict[str, Any]],
    out_dir: str | os.PathLike,
    *,
    workers: int = 1,
    ray_address: str | None = None,
    progress_desc: str = "jobs",
    quiet: bool | None = None,
) -> RunSummary:
    """Run every job whose result is not yet in ``out_dir``; commit each result as it finishes.
    Totals and throughput count results (a batched job's parts each count once).

    ``fn`` must be a module-level function (it is pickled by reference for processes and Ray).
    ``ray_address``: ``"local"`` starts a local Ray with ``workers`` CPUs, ``"auto"`` or an address
    joins a running cluster. A failing job stops the run (finished results are kept) and re-raises.
    """
    ids = [j.job_id for j in jobs]
    parts = [p for j in jobs for p in j.results()]
    if len(set(ids)) != len(ids) or len(set(parts)) != len(parts):
        raise InputError("job ids must be unique")
    for i in {*ids, *parts}:
        _check_job_id(i)
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}", field="workers")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _driver_lock(out):
        clean_stale_temp_files(out)
        done = finished_job_ids(out)
        todo = [j for j in jobs if not done.issuperset(j.results())]
        skipped = len(parts) - sum(len(j.results()) for j in todo)
        batched = {j.job_id: j.parts for j in todo if j.parts}
        backend = (
            f"ray({ray_address})"
            if ray_address
            else ("in-process" if workers == 1 else f"processes({workers})")
        )
        t0 = time.perf_counter()
        bar = progress(
            desc=progress_desc,
            total=len(parts),
            unit="job",
            quiet=quiet,
            initial=skipped,
            bar_format=BAR_FORMAT,
        )
        completed = 0
        stream: Any = ()
        try:
            if ray_address:
                stream = _run_ray(todo, fn, ray_address, workers)
            elif workers == 1:
                stream = ((j.job_id, fn(j.payload)) for j in todo)
            else:
                stream = _run_processes(todo, fn, workers)
            for job_id, result in stream:
                results = {p: result[p] for p in batched[job_id]} if job_id in batched else {job_id: result}
                for part, r in results.items():
                    write_result(out, part, r)
                completed += len(results)
                bar.update(len(results))
                bar.set_postfix_str(_rate_text(completed, len(parts) - skipped, time.perf_counter() - t0))
        finally:
            if hasattr(stream, "close"):
                stream.close()
            bar.close()
        return RunSummary(
            total=len(parts),
            skipped=skipped,
            completed=completed,
            seconds=time.perf_counter() - t0,
            backend=backend,
        )


# tqdm's bar without its own time-left estimate: the one estimate shown is _rate_text's, from this run's
# finished jobs only (tqdm's would be a second, different one, smoothed over the bar's updates)
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


def _rate_text(completed: int, todo: int, elapsed: float) -> str:
    """Throughput and the time left, from the jobs this run finished (jobs done before are not timed)."""
    if completed == 0 or elapsed <= 0:
        return ""
    per_hour = completed * 3600.0 / elapsed
    eta = (todo - completed) * elapsed / completed
    return f"{per_hour:.1f} jobs/h, about {format_seconds(eta)} left"


def _run_processes(todo: Sequence[Job], fn: Callable, workers: int) -> Iterator[tuple[str, dict]]:
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_worker_init, initargs=(threads, os.getpid())
    ) as pool:
        queue = iter(todo)
        futures: dict[cf.Future, str] = {}
        try:
            # A bounded window of submitted jobs: payloads are pickled as they are needed.
            for j in itertools.islice(queue, 2 * workers):
                futures[pool.submit(fn, j.payload)] = j.job_id
            while futures:
                done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    jid = futures.pop(fut)
                    yield jid, fut.result()
                    nxt = next(queue, None)
                    if nxt is not None:
                        futures[pool.submit(fn, nxt.payload)] = nxt.job_id
        finally:
            for fut in futures:
                fut.cancel()


def _worker_init(threads: int, parent_pid: int) -> None:
    """Set torch threads; exit if the driver dies (so a killed run leaves no orphans computing)."""
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True).start()


def _run_ray(todo: Sequence[Job], fn: Callable, address: str, workers: int) -> Iterator[tuple[str, dict]]:
    try:
        import ray
    except ImportError:
        raise MissingDependency("ray", "distributed", "running jobs as Ray tasks") from None
    started = False
    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=workers if workers > 1 else None, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        started = True
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1, max_retries=0)(fn)
        # Keep about two tasks per slot in flight so payloads do not all sit in the object store.
        window = 2 * max(1, gpus or int(resources.get("CPU", 1)))
        queue = iter(todo)
        refs = {remote.remote(j.payload): j.job_id for j in itertools.islice(queue, window)}
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                for ref in ready:
                    jid = refs.pop(ref)
                    yield jid, ray.get(ref)
                    nxt = next(queue, None)
                    if nxt is not None:
                        refs[remote.remote(nxt.payload)] = nxt.job_id
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)
    finally:
        if started:
            ray.shutdown()


class _driver_lock:
    """An exclusive ``flock`` on ``<out_dir>/.runner.lock``; released by the OS if the driver dies."""

    def __init__(self, out: Path) -> None:
        self.path = out / _LOCK_NAME
        self.fd: int | None = None

    def __enter__(self) -> _driver_lock:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise InputError(
                "another run is writing results into this folder; wait for it or stop it",
                path=self.path.parent,
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)


def _check_job_id(job_id: str) -> None:
    if not job_id or job_id.startswith(".") or "/" in job_id or os.sep in job_id:
        raise InputError(f"job id {job_id!r} must be a non-empty file name not starting with '.'")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
