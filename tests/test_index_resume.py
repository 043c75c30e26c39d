"""Resumable, interruptible indexing: a build stopped by ``kill -9`` or Ctrl-C leaves the table as it
was (no table at all for a new one), and rerunning the same command encodes only the rows left."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from airsearch.indexers.build import build_index
from airsearch.indexers.config import IndexConfig
from airsearch.indexers.staging import BUILDING_PREFIX
from airsearch.indexers.store import IndexStore

from airsearch.data.corpus import load_corpus
from airsearch.encoder import AirRepEncoder
from tests.helpers.cli import run
from tests.helpers.corpora import make_rows, write_corpus

ROWS = 3000
CHUNK = 64


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("resume") / "big.jsonl", make_rows(ROWS))


def _start_index(corpus: Path, db: Path, encoder: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "AIRSEARCH_QUIET": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    argv = [sys.executable, "-m", "airsearch.cli.main", "index", str(corpus), "--db", str(db)]
    argv += ["--encoder", str(encoder), "--chunk-size", str(CHUNK), "--batch-size", "16", *extra]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_default_sigint
    )


def _default_sigint() -> None:
    """Ctrl-C as in a terminal: a shell without job control starts background jobs (this test run,
    perhaps) with SIGINT ignored, and children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def sigint_raises():
    """Ctrl-C raises KeyboardInterrupt in this process during the test, however pytest was started."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _wait_for_committed_rows(db: Path, proc: subprocess.Popen, timeout: float = 600.0) -> int:
    """Rows the build has committed to its staging table, once there are some."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for state in db.glob(f"{BUILDING_PREFIX}*.json"):
            try:
                rows = json.loads(state.read_text())["rows"]
            except (json.JSONDecodeError, KeyError, OSError):
                continue
            if rows > 0:
                return rows
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the build committed nothing in time")


def _assert_resumed_and_whole(db: Path, corpus: Path, encoder: Path, stopped_at: int) -> None:
    """The rerun resumes (encoding only the rest) and the table is exactly the corpus, encoded."""
    summary = json.loads(
        run("index", corpus, "--db", db, "--encoder", encoder, "--chunk-size", CHUNK, "--json").stdout
    )
    assert summary["resumed_rows"] >= stopped_at and summary["resumed_rows"] % CHUNK == 0
    assert summary["rows_added"] == summary["rows_total"] == ROWS
    assert summary["corpus_fingerprint"] == load_corpus(corpus).fingerprint
    table = IndexStore(db).open("corpus")  # the db may hold other tables too
    row_ids = [rid for ids, _, _ in table.iter_blocks() for rid in ids]
    examples = load_corpus(corpus).examples
    assert table.take(row_ids) == examples  # every row once, in corpus order
    enc = AirRepEncoder.load(encoder)
    some = [0, CHUNK - 1, summary["resumed_rows"], ROWS - 1]  # rows from both runs
    np.testing.assert_allclose(
        table.take_vectors([row_ids[i] for i in some]),
        enc.encode([examples[i] for i in some]),
        rtol=1e-4,
        atol=1e-5,
    )
    assert not list(db.glob(f"{BUILDING_PREFIX}*"))  # the staging table is gone


def test_kill_9_keeps_the_db_clean_and_the_rerun_resumes(tmp_path, big_corpus, tiny_encoder_dir):
    db = tmp_path / "db"
    proc = _start_index(big_corpus, db, tiny_encoder_dir)
    stopped_at = _wait_for_committed_rows(db, proc)
    proc.kill()  # SIGKILL: no cleanup at all
    proc.wait()
    assert IndexStore(db).table_names() == []  # no half-built table
    _assert_resumed_and_whole(db, big_corpus, tiny_encoder_dir, stopped_at)


def test_ctrl_c_exits_130_cleanly_and_the_rerun_resumes(tmp_path, big_corpus, tiny_encoder_dir):
    db = tmp_path / "db"
    run("index", write_corpus(tmp_path / "first.jsonl", make_rows(5, start=ROWS)), "--db", db,
        "--encoder", tiny_encoder_dir, "--table", "other")  # fmt: skip
    other_version = IndexStore(db).open("other").version
    proc = _start_index(big_corpus, db, tiny_encoder_dir)
    stopped_at = _wait_for_committed_rows(db, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "rerun the same command to resume" in err
    assert "Traceback" not in err and "terminate called" not in err
    store = IndexStore(db)
    assert store.table_names() == ["other"] and store.open("other").version == other_version
    _assert_resumed_and_whole(db, big_corpus, tiny_encoder_dir, stopped_at)


def _interrupt_after_first_commit(db: Path) -> threading.Thread:
    """Ctrl-C for this process (a real SIGINT) once the build has committed a chunk."""

    def watch() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            for state in db.glob(f"{BUILDING_PREFIX}*.json"):
                with contextlib.suppress(json.JSONDecodeError, KeyError, OSError):
                    if json.loads(state.read_text())["rows"] > 0:
                        os.kill(os.getpid(), signal.SIGINT)
                        return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_resume_only_for_the_same_corpus(tmp_path, tiny_encoder_dir, sigint_raises):
    """An interrupted build resumes for the corpus it was reading; a changed corpus starts over."""
    rows = make_rows(ROWS)
    corpus = write_corpus(tmp_path / "c.jsonl", rows)
    db = tmp_path / "db"
    cfg = IndexConfig(corpus=[str(corpus)], db=str(db), encoder=str(tiny_encoder_dir), chunk_size=CHUNK)
    for expect_resume in (True, False):
        watcher = _interrupt_after_first_commit(db)
        with pytest.raises(KeyboardInterrupt):
            build_index(cfg)
        watcher.join()
        assert IndexStore(db).table_names() == []
        if not expect_resume:  # the first row changes: the committed rows are not this corpus's
            write_corpus(corpus, [{**rows[0], "response": "changed"}, *rows[1:]])
        s = build_index(cfg)
        assert (s.resumed_rows > 0) == expect_resume and s.rows_total == ROWS
        assert s.corpus_fingerprint == load_corpus(corpus).fingerprint
        IndexStore(db).drop("corpus")
