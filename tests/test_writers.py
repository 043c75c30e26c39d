"""Writers cannot corrupt a table (issue 27): concurrent ``index --upsert/--append/--overwrite`` and
``delete`` run as real processes serialise on the table's lock, ids stay unique, a server reading the
table meanwhile answers every request, and an overwrite is picked up even when the version number
does not grow. Undo: ``delete`` asks first, ``restore`` brings back a version, ``info`` lists them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from airsearch.indexers.build import build_index
from airsearch.indexers.config import IndexConfig
from airsearch.indexers.lock import lock_path, table_lock
from airsearch.indexers.query import Searcher
from airsearch.indexers.store import IndexStore

from airsearch.data.example import Example
from tests.helpers.cli import assert_one_line_error, run
from tests.helpers.corpora import make_rows, write_corpus

ENV = {**os.environ, "AIRSEARCH_QUIET": "1", "HF_HUB_OFFLINE": "1"}
WAIT = 300  # seconds any one process may take on a loaded 2-core machine


def _cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "airsearch.cli.main", "-q", *(str(a) for a in args)]


def _start(*args: object) -> subprocess.Popen:
    return subprocess.Popen(_cli(*args), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    out = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=WAIT)
            out.append((p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return out


def _ids(db: Path) -> list[str]:
    return IndexStore(db).open().ids().to_pylist()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Reader(threading.Thread):
    """Queries and row fetches against a running server until stopped; every status is counted."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base, self.stop, self.codes, self.bodies = base, threading.Event(), Counter(), []

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as c:
            while not self.stop.is_set():
                for r in (
                    c.post("/api/query", json={"prompt": "the cat", "response": "sat", "k": 3}),
                    c.get("/api/rows/r0010"),
                    c.get("/api/health"),
                ):
                    self.codes[r.status_code] += 1
                    if r.status_code >= 400:
                        self.bodies.append(r.text)


def test_two_writers_and_a_server_keep_ids_unique_and_the_server_answering(tmp_path, tiny_encoder_dir):
    db = tmp_path / "db"
    base = write_corpus(tmp_path / "base.jsonl", make_rows(30))
    a = write_corpus(tmp_path / "a.jsonl", make_rows(30, start=10))  # r0010..r0039
    b = write_corpus(tmp_path / "b.jsonl", make_rows(30, start=20))  # r0020..r0049
    fresh = write_corpus(tmp_path / "fresh.jsonl", make_rows(25, start=100))
    build_index(IndexConfig(corpus=[str(base)], db=str(db), encoder=str(tiny_encoder_dir)))
    port = _free_port()
    server = _start("serve", "--db", db, "--port", port)
    reader = _Reader(f"http://127.0.0.1:{port}")
    try:
        for _ in range(WAIT * 5):
            if server.poll() is not None:
                raise AssertionError(server.stderr.read())
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        reader.start()
        enc = ("--encoder", tiny_encoder_dir)
        writers = [
            _start("index", a, "--db", db, *enc, "--upsert", "--json"),
            _start("index", b, "--db", db, *enc, "--upsert", "--json"),
            _start("delete", "--db", db, "--where", "n >= 45", "--yes"),
        ]
        results = _finish(writers)
        for code, _, err in results:
            assert code == 0 and "Traceback" not in err, err
        ids = _ids(db)
        assert len(ids) == len(set(ids))  # unique under any interleaving
        assert {f"r{i:04d}" for i in range(45)} <= set(ids) <= {f"r{i:04d}" for i in range(50)}
        replaced = [
            json.loads(out)["rows_replaced"] for code, out, _ in results[:2] if out.strip().startswith("{")
        ]
        assert all(r >= 0 for r in replaced)
        # the overwrite replaces the folder; its version number does not grow past the old one
        before = IndexStore(db).open().version
        ((code, _, err),) = _finish([_start("index", fresh, "--db", db, *enc, "--overwrite")])
        assert code == 0, err
        assert IndexStore(db).open().version <= before
        seen = reader.codes.total()
        deadline = time.monotonic() + WAIT
        while reader.codes.total() < seen + 6 and time.monotonic() < deadline:
            time.sleep(0.2)
        health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=60).json()
        assert health["rows"] == 25
        row = httpx.get(f"http://127.0.0.1:{port}/api/rows/r0110", timeout=60)
        assert row.status_code == 200 and row.json()["id"] == "r0110"
    finally:
        reader.stop.set()
        reader.join(timeout=120)
        server.terminate()
        server.communicate(timeout=60)
    assert reader.codes[500] == 0 and reader.codes[503] == 0, reader.bodies[:3]
    assert set(reader.codes) <= {200, 404}, (reader.codes, reader.bodies[:3])  # r0010 goes with the overwrite
    assert not any(str(tmp_path) in body for body in reader.bodies)


def test_a_second_writer_waits_for_the_lock_then_gives_up_in_one_line(
    tmp_path, corpus_file, tiny_encoder_dir
):
    db = tmp_path / "db"
    build_index(IndexConfig(corpus=[str(corpus_file)], db=str(db), encoder=str(tiny_encoder_dir)))
    with table_lock(db, "corpus", what="a test holding the lock"):
        ((code, _, err),) = _finish(
            [_start("delete", "--db", db, "--id", "r0001", "--yes", "--lock-timeout", 1)]
        )
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err, err
    assert (
        lines[0].startswith("waiting for a test holding the lock (pid ") and "giving up after 1 s" in lines[0]
    )
    assert lines[-1].startswith("error: ") and "still being written by a test holding the lock" in lines[-1]
    assert len(_ids(db)) == 60 and not lock_path(db, "corpus").exists()
    # once the holder lets go, the waiting writer goes on
    holder = threading.Event()

    def hold() -> None:
        with table_lock(db, "corpus", what="a short holder"):
            holder.set()
            time.sleep(2)

    t = threading.Thread(target=hold)
    t.start()
    holder.wait(30)
    ((code, out, err),) = _finish([_start("delete", "--db", db, "--id", "r0001", "--yes", "--json")])
    t.join()
    assert code == 0 and json.loads(out)["deleted"] == 1, err


def test_a_reader_reopens_a_replaced_table_whose_version_did_not_grow(tmp_path, tiny_encoder_dir):
    db = tmp_path / "db"
    one = write_corpus(tmp_path / "one.jsonl", make_rows(12))
    two = write_corpus(tmp_path / "two.jsonl", make_rows(12, start=300))
    build_index(IndexConfig(corpus=[str(one)], db=str(db), encoder=str(tiny_encoder_dir)))
    searcher = Searcher(str(db), encoder=str(tiny_encoder_dir), auto_refresh=True)
    old = searcher.table.version
    build_index(IndexConfig(corpus=[str(two)], db=str(db), encoder=str(tiny_encoder_dir), overwrite=True))
    assert IndexStore(db).open().version == old  # the same number: only the folder tells
    (res,) = searcher.search([Example("q", "the cat", "sat")], 12)
    assert {c.id for c in res.proponents} == {f"r{i:04d}" for i in range(300, 312)}


def test_delete_counts_asks_and_restore_brings_the_rows_back(tmp_path, corpus_file, tiny_encoder_dir):
    db = tmp_path / "db"
    run("index", corpus_file, "--db", db, "--encoder", tiny_encoder_dir)
    dry = json.loads(run("delete", "--db", db, "--where", "true", "--dry-run", "--json").stdout)
    assert dry["dry_run"] and dry["deleted"] == 60 and dry["rows"] == 60
    from airsearch.cli.main import app
    from click.testing import CliRunner

    no = CliRunner().invoke(app, ["delete", "--db", str(db), "--where", "true"], input="n\n")
    assert no.exit_code == 1 and "delete 60 of 60 rows from table 'corpus'?" in no.output
    nobody = CliRunner().invoke(app, ["delete", "--db", str(db), "--where", "true"], input="")
    assert nobody.exit_code == 2 and "Pass --yes to confirm" in nobody.output
    assert len(_ids(db)) == 60
    yes = CliRunner().invoke(app, ["delete", "--db", str(db), "--where", "n < 10"], input="y\n")
    assert yes.exit_code == 0 and "deleted 10 rows" in yes.output and len(_ids(db)) == 50
    versions = json.loads(run("info", "--db", db, "--json").stdout)["tables"][0]["versions"]
    assert len(versions) >= 2 and versions[-1]["rows"] == 50 and versions[-2]["rows"] == 60
    back = json.loads(run("restore", "--db", db, "--before-last", "--json").stdout)
    assert back["restored"] == versions[-2]["version"] and back["rows"] == 60
    assert len(_ids(db)) == 60
    assert "brings one back" in run("info", "--db", db).stdout
    again = run("restore", "--db", db, "--version", 999, ok=False)
    assert_one_line_error(again, "option '--version'", "version 999 is not kept")


@pytest.mark.parametrize("part", ["data", "manifest", "bm25"])
def test_a_damaged_table_is_named_with_the_way_out(tmp_path, corpus_file, tiny_encoder_dir, part):
    db = tmp_path / "db"
    run("index", corpus_file, "--db", db, "--encoder", tiny_encoder_dir)
    folder = db / "corpus.lance"
    if part == "data":
        victim = next((folder / "data").glob("*.lance"))
    elif part == "manifest":
        victim = min((folder / "_versions").glob("*.manifest"), key=lambda p: p.name)  # the newest
    else:
        victim = next(folder.glob("_indices/*/part_0_invert.lance"))
    with open(victim, "r+b") as f:
        f.truncate(40)
    res = run("query", "--db", db, "--prompt", "the cat", "--response", "sat", "--mode", "hybrid", ok=False)
    assert_one_line_error(res, "table 'corpus' is damaged", "is truncated or unreadable")
    named = victim.name if part != "bm25" else victim.parent.name
    assert named in res.output
    if part == "data":
        assert "restore cannot help" in res.output and "--overwrite" in res.output
        return
    assert "airsearch restore" in res.output
    version = res.output.split("--version ")[1].split("`")[0]
    run("restore", "--db", db, "--version", version)
    ok = run("query", "--db", db, "--prompt", "the cat", "--response", "sat", "--json")
    assert len(json.loads(ok.stdout)[0]["proponents"]) > 0
