"""The resumable job runner: skip finished jobs, atomic result files, stale temp files, backends."""

from __future__ import annotations

import builtins
import os
import sys

import numpy as np
import pytest
from airsearch.trainers import runner
from airsearch.trainers.runner import (
    Job,
    clean_stale_temp_files,
    finished_job_ids,
    read_result,
    result_path,
    run_jobs,
    write_result,
)

from airsearch.errors import InputError, MissingDependency


def square_job(payload: dict) -> dict:
    """Module-level (picklable) worker: deterministic arrays, strings and JSON fields from the payload."""
    x = np.arange(payload["n"], dtype=np.float64)
    return {
        "n": payload["n"],
        "squares": x**2,
        "names": np.array([f"e{i}" for i in range(payload["n"])]),
        "pid": os.getpid(),
        "note": {"k": [1, 2]},
    }


def failing_job(payload: dict) -> dict:
    if payload["n"] == 3:
        raise RuntimeError("job 3 fails")
    return square_job(payload)


def never_called(payload: dict) -> dict:
    raise AssertionError("a finished job was run again")


def make_jobs(n: int = 5) -> list[Job]:
    return [Job(f"job{i:02d}", {"n": i + 1}) for i in range(n)]


def test_runs_every_job_then_skips_finished(tmp_path):
    out = tmp_path / "results"
    summary = run_jobs(make_jobs(), square_job, out)
    assert (summary.total, summary.skipped, summary.completed) == (5, 0, 5)
    assert finished_job_ids(out) == {f"job{i:02d}" for i in range(5)}
    r = read_result(out, "job02")
    assert r["n"] == 3 and r["note"] == {"k": [1, 2]}
    assert np.array_equal(r["squares"], [0.0, 1.0, 4.0]) and list(r["names"]) == ["e0", "e1", "e2"]
    again = run_jobs(make_jobs(), never_called, out)
    assert (again.skipped, again.completed) == (5, 0)
    # A partial earlier run: only the missing job runs.
    result_path(out, "job04").unlink()
    third = run_jobs(make_jobs(), square_job, out)
    assert (third.skipped, third.completed) == (4, 1)


def squares_batch(payload: dict) -> dict:
    """A batched job: one result per part."""
    return {part: square_job({"n": n}) for part, n in payload.items()}


def test_batched_jobs_commit_each_part_and_count_parts(tmp_path):
    out = tmp_path / "results"
    jobs = [Job("b0", {"p0": 1, "p1": 2}, ("p0", "p1")), Job("b1", {"p2": 3}, ("p2",))]
    summary = run_jobs(jobs, squares_batch, out)
    assert (summary.total, summary.skipped, summary.completed) == (3, 0, 3)
    assert finished_job_ids(out) == {"p0", "p1", "p2"}
    assert read_result(out, "p1")["n"] == 2
    assert run_jobs(jobs, never_called, out).skipped == 3  # a job is done when all its parts are
    result_path(out, "p1").unlink()
    third = run_jobs(jobs, squares_batch, out)
    assert (third.skipped, third.completed) == (1, 2)  # a batch missing a part runs again, whole
    with pytest.raises(InputError, match="unique"):
        run_jobs([Job("a", {}, ("x",)), Job("b", {}, ("x",))], squares_batch, out)


def test_results_load_without_pickle(tmp_path):
    write_result(tmp_path, "a", {"losses": np.array([1.5, -2.0]), "ids": np.array(["x", "yy"]), "split": 3})
    with np.load(result_path(tmp_path, "a"), allow_pickle=False) as z:
        assert set(z.files) == {"losses", "ids", "__json__"}
    r = read_result(tmp_path, "a")
    assert r["split"] == 3 and r["losses"].tolist() == [1.5, -2.0] and r["ids"].tolist() == ["x", "yy"]
    with pytest.raises(InputError, match="object array"):
        write_result(tmp_path, "b", {"bad": np.array([{"a": 1}], dtype=object)})
    assert not result_path(tmp_path, "b").exists()


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    """A crash in the middle of writing leaves neither the result nor a temporary file."""

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(runner.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        write_result(tmp_path, "a", {"x": np.ones(3)})
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_files_are_ignored_and_cleaned(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    stale = out / ".job00.npz.tmp-999-1"
    stale.write_bytes(b"PK\x03\x04 truncated by kill -9")
    (out / "notes.txt").write_text("not a result")
    assert finished_job_ids(out) == set()
    summary = run_jobs(make_jobs(2), square_job, out)
    assert summary.completed == 2 and not stale.exists()
    assert finished_job_ids(out) == {"job00", "job01"}
    assert clean_stale_temp_files(out) == 0


def test_failing_job_keeps_finished_results(tmp_path):
    out = tmp_path / "results"
    with pytest.raises(RuntimeError, match="job 3 fails"):
        run_jobs(make_jobs(), failing_job, out)
    assert finished_job_ids(out) == {"job00", "job01"}
    summary = run_jobs(make_jobs(), square_job, out)
    assert (summary.skipped, summary.completed) == (2, 3)


@pytest.mark.slow
def test_worker_processes_equal_in_process(tmp_path):
    run_jobs(make_jobs(4), square_job, tmp_path / "one")
    summary = run_jobs(make_jobs(4), square_job, tmp_path / "two", workers=2)
    assert summary.backend == "processes(2)" and summary.completed == 4
    pids = set()
    for i in range(4):
        a, b = read_result(tmp_path / "one", f"job{i:02d}"), read_result(tmp_path / "two", f"job{i:02d}")
        assert np.array_equal(a["squares"], b["squares"]) and a["names"].tolist() == b["names"].tolist()
        pids.add(b["pid"])
    assert os.getpid() not in pids


def test_second_driver_on_same_folder_is_refused(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    with runner._driver_lock(out), pytest.raises(InputError, match="another run"):
        run_jobs(make_jobs(1), square_job, out)
    assert run_jobs(make_jobs(1), square_job, out).completed == 1  # released afterwards


def test_bad_job_ids_are_refused(tmp_path):
    with pytest.raises(InputError, match="unique"):
        run_jobs([Job("a", {"n": 1}), Job("a", {"n": 2})], square_job, tmp_path)
    with pytest.raises(InputError, match="file name"):
        run_jobs([Job("../x", {"n": 1})], square_job, tmp_path)


def test_ray_backend_without_ray_says_how_to_install(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(MissingDependency, match=r"airsearch\[distributed\]"):
        run_jobs(make_jobs(1), square_job, tmp_path, ray_address="local")
    assert finished_job_ids(tmp_path) == set()


def test_progress_bar_shows_one_time_left(tmp_path, capsys):
    """Issue 28: the jobs bar carries one estimate of the time left (ours, not tqdm's as well)."""
    run_jobs(make_jobs(2), square_job, tmp_path / "first", quiet=False)  # jobs done before are skipped
    run_jobs(make_jobs(6), square_job, tmp_path / "first", quiet=False, progress_desc="fine-tunes")
    err = capsys.readouterr().err
    final = [
        seg for seg in err.replace("\r", "\n").split("\n") if seg.startswith("fine-tunes") and "6/6" in seg
    ]
    assert final, err
    for seg in final:
        assert seg.count("left") == 1 and "<" not in seg and "ETA" not in seg, seg
        assert "jobs/h, about " in seg


def test_worker_lm_loads_once_per_process_and_lend_lm_lends_the_drivers_copy(tiny_lm_dir):
    """The one base-LM cache of subset and Daunce jobs: loaded once per (path, max_length), and the
    driver's own copy while lent (in-process jobs), forgotten after."""
    from airsearch.trainers.runner import lend_lm, worker_lm

    from airsearch.lm import load_lm

    path = str(tiny_lm_dir)
    first = worker_lm(path, 24)
    assert worker_lm(path, 24) is first  # kept between jobs
    assert worker_lm(path, 16) is not first and worker_lm(path, 16).max_length == 16
    driver = load_lm(path, max_length=32)
    with lend_lm(path, 32, driver):
        assert worker_lm(path, 32) is driver
    assert worker_lm(path, 32) is not driver  # the lent copy is forgotten: a fresh load
