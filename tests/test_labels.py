"""Subset-retraining labels: sampling, determinism, resume after kill -9, refusals, backends, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from airsearch.trainers.labels import (
    LabelConfig,
    LabelStore,
    generate_labels,
    label_store_info,
    make_manifest,
    sample_splits,
)
from airsearch.trainers.labels.results import SplitProgress
from airsearch.trainers.runner import finished_job_ids
from click.testing import CliRunner

from airsearch.data.corpus import load_corpus, write_rows
from airsearch.data.example import Example
from airsearch.errors import FingerprintMismatch, InputError
from airsearch.labels import normalise_losses

REPO = Path(__file__).resolve().parents[1]
N_EXAMPLES = 36


def synthetic_examples(n: int = N_EXAMPLES) -> list[Example]:
    """Question/answer rows in the tiny LM's vocabulary (tests/conftest.py), with metadata."""
    things = ["apple", "river", "stone", "cloud", "tiger", "lemon", "ocean", "grass"]
    colours = ["red", "blue", "green", "grey", "gold", "white"]
    return [
        Example(
            f"ex{i:03d}",
            f"What colour is the {things[i % 8]}?",
            f"The {things[i % 8]} is {colours[i % 6]}.",
            {"task": f"t{i % 3}"},
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    return write_rows(tmp_path_factory.mktemp("corpus") / "train.jsonl", synthetic_examples())


@pytest.fixture(scope="module")
def lm_dir(tiny_lm_dir) -> Path:
    return tiny_lm_dir


@pytest.fixture(scope="module")
def base_cfg(corpus_file, lm_dir, tmp_path_factory) -> LabelConfig:
    return LabelConfig(
        corpus=[str(corpus_file)],
        lm=str(lm_dir),
        out=str(tmp_path_factory.mktemp("base") / "labels"),  # each test replaces it
        splits=2,
        dev_size=6,
        pool_size=16,
        subset_size=5,
        subsets_per_split=6,
        epochs=1,
        lr=1e-2,
        batch_size=4,
        max_length=48,
        eval_batch_size=4,
        seed=3,
    )


@pytest.fixture(scope="module")
def reference(base_cfg, tmp_path_factory) -> LabelStore:
    """One uninterrupted in-process run that the other backends and the resumed run must equal."""
    out = tmp_path_factory.mktemp("ref") / "labels"
    generate_labels(base_cfg.replace(out=str(out)))
    return LabelStore.open(out)


def assert_same_labels(a: LabelStore, b: LabelStore, *, exact: bool = True) -> None:
    sa, sb = a.splits(), b.splits()
    assert [s.split for s in sa] == [s.split for s in sb]
    for x, y in zip(sa, sb, strict=True):
        assert x.dev_ids == y.dev_ids and x.subset_ids == y.subset_ids and x.members == y.members
        if exact:
            assert np.array_equal(x.losses, y.losses)
        else:
            assert np.allclose(x.losses, y.losses, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- sampling


def test_sampling_is_deterministic_disjoint_and_never_repeats():
    ids = [f"id{i}" for i in range(40)]
    kw = dict(splits=3, dev_size=8, pool_size=12, subset_size=4, subsets_per_split=20, seed=7)
    plans = sample_splits(ids, **kw)
    assert plans == sample_splits(list(reversed(ids)), **kw)  # content, not row order, decides
    assert plans != sample_splits(ids, **{**kw, "seed": 8})
    for p in plans:
        assert len(p.dev_ids) == 8 and len(p.pool_ids) == 12 and not set(p.dev_ids) & set(p.pool_ids)
        keys = [tuple(sorted(s)) for s in p.subsets]
        assert len(set(keys)) == len(keys) == 20
        assert all(len(set(s)) == 4 and set(s) <= set(p.pool_ids) for s in p.subsets)
    # Adding splits keeps the earlier ones.
    assert sample_splits(ids, **{**kw, "splits": 4})[:3] == plans


def test_sampling_exhausts_every_distinct_subset_then_refuses():
    ids = [f"id{i}" for i in range(10)]
    plans = sample_splits(ids, splits=1, dev_size=2, pool_size=5, subset_size=4, subsets_per_split=5, seed=0)
    assert len({tuple(sorted(s)) for s in plans[0].subsets}) == 5  # all C(5, 4) subsets
    with pytest.raises(InputError, match="distinct subsets"):
        sample_splits(ids, splits=1, dev_size=2, pool_size=5, subset_size=4, subsets_per_split=6, seed=0)
    with pytest.raises(InputError, match="corpus size"):
        sample_splits(ids, splits=1, dev_size=6, pool_size=5, subset_size=2, subsets_per_split=1, seed=0)


# ----------------------------------------------------------------------------- generation


def test_generation_is_deterministic_and_store_is_complete(reference, base_cfg, tmp_path):
    summary = generate_labels(base_cfg.replace(out=str(tmp_path / "again")))
    assert (summary.total_jobs, summary.completed_jobs) == (12, 12)
    again = LabelStore.open(tmp_path / "again")
    assert_same_labels(reference, again, exact=True)
    m = reference.manifest
    assert m["teacher"] == "retrain" and m["config"]["lr"] == base_cfg.lr
    assert m["corpus_fingerprint"] == load_corpus(base_cfg.corpus).fingerprint
    assert m["code_version"]["airsearch"]
    splits = reference.splits()
    assert [s.split for s in splits] == [0, 1] and all(s.losses.shape == (6, 6) for s in splits)
    assert np.isfinite(splits[0].losses).all() and splits[0].losses.std(axis=0).min() > 0
    assert splits[0].targets().shape == (6, 6)
    ex = reference.examples()
    used = {i for s in m["splits"] for i in s["dev_ids"] + s["pool_ids"]}
    assert set(ex) == used
    source = {e.id: e for e in synthetic_examples()}
    assert all(ex[i].response == source[i].response and ex[i].metadata == source[i].metadata for i in ex)
    assert reference.progress().complete and reference.stats().labels == 72


def test_batched_subset_jobs_give_the_same_labels_and_resume(reference, base_cfg, tmp_path):
    """Several fine-tunes per worker task on one working copy (reset between them) = one task each."""
    out = tmp_path / "batched"
    store = LabelStore.create(out, reference.manifest, reference.examples().values())
    for s, k in ((0, 1), (1, 4)):  # two subsets already done: batches are made from the rest
        res = np.load(reference.results_dir / f"s{s:05d}-k{k:06d}.npz")
        store.write_job_result(s, k, list(res["member_ids"]), res["losses"])
    summary = generate_labels(base_cfg.replace(out=str(out), subsets_per_job=4))
    assert (summary.total_jobs, summary.skipped_jobs, summary.completed_jobs) == (12, 2, 10)
    assert_same_labels(reference, LabelStore.open(out), exact=True)
    assert generate_labels(base_cfg.replace(out=str(out), subsets_per_job=4)).completed_jobs == 0
    with pytest.raises(InputError, match="full fine-tuning"):
        base_cfg.replace(subsets_per_job=2, lora_rank=4).validate()


def test_mismatched_rerun_is_refused(reference, base_cfg, tmp_path):
    out = str(reference.root)
    with pytest.raises(FingerprintMismatch, match="lr"):
        generate_labels(base_cfg.replace(out=out, lr=5e-3))
    with pytest.raises(FingerprintMismatch, match="subset_size"):
        generate_labels(base_cfg.replace(out=out, subset_size=4))
    rows = synthetic_examples()
    rows[0] = Example(rows[0].id, rows[0].prompt, "a different answer", rows[0].metadata)
    other = write_rows(tmp_path / "other.jsonl", rows)
    with pytest.raises(FingerprintMismatch, match="corpus fingerprint"):
        generate_labels(base_cfg.replace(out=out, corpus=[str(other)]))
    # Execution knobs may change: nothing is left to run.
    summary = generate_labels(base_cfg.replace(out=out, workers=2, eval_batch_size=3))
    assert (summary.skipped_jobs, summary.completed_jobs) == (12, 0)
    # A store made before a config field existed resumes when the field keeps its default.
    manifest_path = reference.root / "manifest.json"
    saved = manifest_path.read_text()
    manifest = json.loads(saved)
    del manifest["config"]["teacher_checkpoints"]
    manifest_path.write_text(json.dumps(manifest))
    try:
        assert generate_labels(base_cfg.replace(out=out)).completed_jobs == 0
        # ... and one saved with the old field spellings (model, lora, teacher_checkpoint, ...) too
        old = json.loads(saved)
        for new_name, old_name in (
            ("lm", "model"),
            ("lora_rank", "lora"),
            ("teacher_checkpoints", "teacher_checkpoint"),
            ("teacher_base_lm", "teacher_base_model"),
        ):
            old["config"][old_name] = old["config"].pop(new_name)
        manifest_path.write_text(json.dumps(old))
        with pytest.warns(DeprecationWarning) as caught:
            assert generate_labels(base_cfg.replace(out=out)).completed_jobs == 0
        assert {str(w.message).split("field ")[1].split(" is")[0] for w in caught} == {
            "'model'",
            "'lora'",
            "'teacher_checkpoint'",
            "'teacher_base_model'",
        }
        with pytest.warns(DeprecationWarning):
            info = label_store_info(out)
        assert info.config["lora_rank"] == base_cfg.lora_rank and "lora" not in info.config
    finally:
        manifest_path.write_text(saved)


@pytest.mark.slow
def test_two_workers_equal_one(reference, base_cfg, tmp_path):
    summary = generate_labels(base_cfg.replace(out=str(tmp_path / "w2"), workers=2))
    assert summary.backend == "processes(2)" and summary.done_jobs == 12
    assert_same_labels(reference, LabelStore.open(tmp_path / "w2"), exact=False)


@pytest.mark.slow
def test_ray_backend_equals_local(reference, base_cfg, tmp_path):
    pytest.importorskip("ray")
    cfg = base_cfg.replace(out=str(tmp_path / "ray"), splits=1, ray="local", workers=2)
    summary = generate_labels(cfg)
    assert summary.backend == "ray(local)" and summary.done_jobs == 6
    ray_split = LabelStore.open(tmp_path / "ray").splits()
    ref = reference.splits()[0]
    assert len(ray_split) == 1 and ray_split[0].members == ref.members
    assert np.allclose(ray_split[0].losses, ref.losses, rtol=1e-6, atol=1e-8)


@pytest.mark.slow
def test_resume_after_kill_9(reference, base_cfg, tmp_path):
    out = tmp_path / "killed"
    c = base_cfg
    args = [
        sys.executable,
        "-m",
        "airsearch.cli.main",
        "labels",
        "generate",
        *c.corpus,
        "--lm",
        c.lm,
        "--out",
        str(out),
        "--splits",
        str(c.splits),
        "--dev-size",
        str(c.dev_size),
        "--pool-size",
        str(c.pool_size),
        "--subset-size",
        str(c.subset_size),
        "--subsets-per-split",
        str(c.subsets_per_split),
        "--epochs",
        str(c.epochs),
        "--lr",
        str(c.lr),
        "--batch-size",
        str(c.batch_size),
        "--max-length",
        str(c.max_length),
        "--eval-batch-size",
        str(c.eval_batch_size),
        "--seed",
        str(c.seed),
    ]
    env = {**os.environ, "AIRSEARCH_QUIET": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not finished_job_ids(out / "results"):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = finished_job_ids(out / "results")
    assert len(at_kill) >= 1, proc.stderr.read().decode()[-2000:]
    for jid in at_kill:  # every committed result is whole
        LabelStore.open(out).read_job(jid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        partial = LabelStore.open(out).progress().done
    assert partial == len(at_kill)

    rerun = subprocess.run([*args, "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout)
    assert summary["skipped_jobs"] == len(at_kill) and summary["done_jobs"] == 12
    assert summary["skipped_jobs"] + summary["completed_jobs"] == 12
    files = sorted(p.name for p in (out / "results").iterdir() if not p.name.startswith("."))
    assert len(files) == len(set(files)) == 12
    assert_same_labels(reference, LabelStore.open(out), exact=True)


# ----------------------------------------------------------------------------- store API and CLI


def test_teacher_writer_api_round_trips(reference, tmp_path):
    """A gradient teacher writes losses = -group score; Eq. 8 then ranks high scores high."""
    plans = sample_splits(
        [f"id{i}" for i in range(20)],
        splits=2,
        dev_size=3,
        pool_size=8,
        subset_size=3,
        subsets_per_split=4,
        seed=0,
    )
    examples = [Example(f"id{i}", f"p{i}", f"r{i}") for i in range(20)]
    manifest = make_manifest(
        {"seed": 0}, plans, teacher="gradcos", corpus_fingerprint="c", model_fingerprint="m"
    )
    store = LabelStore.create(tmp_path / "t", manifest, examples)
    rng = np.random.default_rng(0)
    scores = {p.split: rng.normal(size=(4, 3)) for p in plans}
    for p in plans:
        for k in reversed(range(4)):  # any write order
            store.write_job_result(p.split, k, p.subsets[k], -scores[p.split][k])
    with pytest.raises(InputError, match="one value per dev"):
        store.write_job_result(0, 0, plans[0].subsets[0], np.zeros(2))
    read = LabelStore.open(tmp_path / "t")
    assert read.teacher == "gradcos" and read.progress().complete
    for p, sl in zip(plans, read.splits(), strict=True):
        assert sl.members == p.subsets and sl.subset_ids == [0, 1, 2, 3]
        assert np.allclose(sl.targets(), normalise_losses(-scores[p.split]))
    with pytest.raises(FingerprintMismatch, match="teacher"):
        LabelStore.create(tmp_path / "t", {**manifest, "teacher": "dda"}, examples)


def test_incomplete_store_reports_and_uses_finished_jobs(reference, tmp_path):
    import shutil

    shutil.copytree(reference.root, tmp_path / "copy")
    (tmp_path / "copy" / "results" / "s00001-k000002.npz").unlink()
    store = LabelStore.open(tmp_path / "copy")
    with pytest.warns(UserWarning, match="1 of 12 jobs are unfinished"):
        splits = store.splits()
    assert splits[1].subset_ids == [0, 1, 3, 4, 5] and splits[1].losses.shape == (5, 6)
    assert store.progress().per_split[1] == SplitProgress(split=1, done=5, total=6)
    assert store.progress().to_dict()["per_split"][1] == {"split": 1, "done": 5, "total": 6}


def test_cli_generate_and_info(base_cfg, reference, tmp_path):
    from airsearch.cli.main import app

    runner = CliRunner()
    out = tmp_path / "cli"
    generate = ["labels", "generate", *base_cfg.corpus, "--lm", base_cfg.lm, "--out", str(out),
                "--splits", "1", "--dev-size", "6", "--pool-size", "16", "--subset-size", "5",
                "--subsets-per-split", "3"]  # fmt: skip
    res = runner.invoke(
        app,
        [
            *generate,
            "--epochs",
            "1",
            "--lr",
            "0.01",
            "--batch-size",
            "4",
            "--max-length",
            "48",
            "--seed",
            "3",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["done_jobs"] == 3
    res = runner.invoke(app, ["labels", "info", str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["progress"] == {
        "done": 3,
        "total": 3,
        "complete": True,
        "per_split": [{"split": 0, "done": 3, "total": 3}],
    }
    assert info["config"]["subset_size"] == 5 and info["teacher"] == "retrain"
    assert info["stats"]["labels"] == 18 and info["stats"]["per_split"][0]["subsets"] == 3
    text = runner.invoke(app, ["labels", "info", str(reference.root)])
    assert text.exit_code == 0 and "12/12 jobs" in text.output
    bad = runner.invoke(app, [*generate, "--lr", "0.5"])
    assert bad.exit_code == 2 and "config mismatch" in bad.output and "Traceback" not in bad.output


def test_labels_without_signal_are_reported_early(base_cfg, reference, tmp_path, capsys):
    """Issue 28: at the default lr (2e-5) fine-tuning barely moves the tiny LM; the run warns after the
    first PROBE_JOBS subsets and its summary reports the spread; a learning rate that suits the tiny LM
    (the reference's 1e-2) gives labels well above the floor and no warning."""
    from airsearch.cli.labels_cmd import _generate_text
    from airsearch.trainers.labels.config import LabelConfig
    from airsearch.trainers.labels.generate import PROBE_JOBS, SPREAD_FLOOR

    cfg = base_cfg.replace(out=str(tmp_path / "flat"), splits=1, subsets_per_split=PROBE_JOBS + 1)
    cfg = cfg.replace(lr=LabelConfig.__dataclass_fields__["lr"].default)
    summary = generate_labels(cfg, quiet=False)
    err = capsys.readouterr().err
    assert summary.low_signal and summary.spread < SPREAD_FLOOR and summary.completed_jobs == PROBE_JOBS + 1
    assert "warning: the labels hold almost no signal" in err and "Raise --lr (now 2e-05" in err
    assert "the labels hold almost no signal" in _generate_text(summary)
    assert f"label spread {summary.spread:.4f} nats" in _generate_text(summary)
    assert reference.stats().spread_mean > SPREAD_FLOOR
    again = generate_labels(cfg, quiet=False)  # a finished store: nothing runs, the spread is kept
    assert (
        again.completed_jobs == 0 and again.skipped_jobs == PROBE_JOBS + 1 and again.spread == summary.spread
    )
