"""Inputs that once went silently wrong or crashed (issue 27): metadata keys the store cannot hold as
columns, ids kept byte for byte (spaces, '/'), permissions, a port in use, the server's chunked body
limit, empty prompts, and error text without server paths."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from airsearch.indexers.build import build_index
from airsearch.indexers.config import IndexConfig
from airsearch.indexers.serve import ServeConfig, create_app
from airsearch.indexers.store import IndexStore
from fastapi.testclient import TestClient

from airsearch.data.corpus import write_rows
from airsearch.encoder import AirRepEncoder
from tests.helpers.cli import assert_one_line_error, run
from tests.helpers.corpora import make_rows

ODD_IDS = ["  lead space", "trail space ", "a/b", "a/../b", "%2F"]
ODD_KEYS = {"a`b": 1, "a.b": "dot", "ok": 2, "x\ty": "tab"}


@pytest.fixture(scope="module")
def odd_db(tmp_path_factory, tiny_encoder_dir) -> Path:
    """A table whose rows have odd ids and metadata keys that cannot be columns."""
    root = tmp_path_factory.mktemp("odd")
    rows = [{**r, **ODD_KEYS} for r in make_rows(6)]
    rows += [
        {"id": i, "prompt": f"the cat {n}", "response": "sat", **ODD_KEYS} for n, i in enumerate(ODD_IDS)
    ]
    corpus = write_rows(root / "odd.jsonl", rows)
    run("index", corpus, "--db", root / "db", "--encoder", tiny_encoder_dir)
    return root / "db"


def test_metadata_keys_that_cannot_be_columns_are_kept_and_the_table_stays_usable(odd_db):
    table = IndexStore(odd_db).open()
    assert list(table.meta.columns) == [k for k in ["task", "n", "tags", "ok"]]  # no a`b, a.b, x<tab>y
    assert not list(odd_db.glob("_building_*"))
    res = json.loads(
        run("query", "--db", odd_db, "--prompt", "the cat", "--response", "sat", "-k", 11, "--json").stdout
    )
    (first,) = res
    assert len(first["proponents"]) == 11
    assert all(
        {k: c["metadata"][k] for k in ODD_KEYS} == ODD_KEYS for c in first["proponents"]
    )  # byte for byte
    where = run("query", "--db", odd_db, "--prompt", "p", "--response", "r", "--where", "ok = 2", "--json")
    assert len(json.loads(where.stdout)[0]["proponents"]) > 0
    grouped = run("query", "--db", odd_db, "--prompt", "p", "--response", "r", "--group-by", "task", "--json")
    assert json.loads(grouped.stdout)[0]["groups"]
    bad = run(
        "query", "--db", odd_db, "--prompt", "p", "--response", "r", "--where", "`a.b` = 'dot'", ok=False
    )
    assert_one_line_error(bad, "option '--where'", "bad filter", "'a.b' is not a column", "metadata_extra")
    grouped_odd = run(
        "query", "--db", odd_db, "--prompt", "p", "--response", "r", "--group-by", "a`b", ok=False
    )
    assert_one_line_error(grouped_odd, "'a`b' is not a column", "rename the key")


def test_ids_are_kept_byte_for_byte(odd_db):
    ids = set(IndexStore(odd_db).open().ids().to_pylist())
    assert set(ODD_IDS) <= ids


@pytest.fixture(scope="module")
def client(odd_db, tiny_encoder_dir):
    app = create_app(
        ServeConfig(db=str(odd_db), allow_sql=True), encoder=AirRepEncoder.load(tiny_encoder_dir)
    )
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize("row_id", ODD_IDS)
def test_row_ids_with_slashes_and_spaces_work_in_the_api(client, row_id):
    from urllib.parse import quote

    by_query = client.get("/api/rows", params={"id": row_id})  # what the page sends: any id
    assert by_query.status_code == 200 and by_query.json()["id"] == row_id, by_query.text
    if "%" not in row_id and ".." not in row_id.split("/"):  # in the path, '%' and '..' change on the way
        by_path = client.get("/api/rows/" + quote(row_id, safe="/"))
        assert by_path.status_code == 200 and by_path.json()["id"] == row_id, by_path.text


def test_a_chunked_body_over_the_limit_is_413(client):
    def chunks():
        for _ in range(3):
            yield b" " * 1_000_000

    r = client.post("/api/query", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]["message"]
    small = client.post(
        "/api/query",
        content=iter([b'{"prompt": "a", ', b'"response": "b", "k": 1}']),
        headers={"content-type": "application/json"},
    )
    assert small.status_code == 200, small.text


def test_select_accepts_the_empty_prompt_that_query_accepts(client):
    target = {"prompt": "", "response": "sat"}
    assert client.post("/api/query", json={**target, "k": 2}).status_code == 200
    r = client.post("/api/select", json={"targets": [target], "n": 2})
    assert r.status_code == 200, r.text
    assert len([line for line in r.text.splitlines() if line.strip()]) == 2


def test_error_text_carries_no_server_path(client, odd_db, tmp_path, tiny_encoder_dir):
    r = client.post("/api/query", json={"prompt": "p", "response": "r", "where": "nosuch = 1"})
    assert r.status_code == 400 and str(odd_db) not in r.text and "/tmp/" not in r.text
    # a damaged table: 503 naming the damaged part, without the path
    db = tmp_path / "db"
    shutil.copytree(odd_db, db)
    data = next((db / "corpus.lance" / "data").glob("*.lance"))
    app = create_app(ServeConfig(db=str(db)), encoder=AirRepEncoder.load(tiny_encoder_dir))
    with TestClient(app, raise_server_exceptions=False) as c:
        with open(data, "r+b") as f:
            f.truncate(40)
        r = c.post("/api/query", json={"prompt": "p", "response": "r"})
    assert r.status_code == 503 and data.name in r.text and str(tmp_path) not in r.text, r.text


def _drop_file_permissions() -> list[str]:
    """A command prefix under which root is refused by file permissions like anyone else."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be tested")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", "--bounding-set", caps, "--inh-caps", caps]


def _airsearch(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "AIRSEARCH_QUIET": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [*_drop_file_permissions(), sys.executable, "-m", "airsearch.cli.main", "-q", *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _one_line(res: subprocess.CompletedProcess, *fragments: str) -> None:
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_permission_problems_are_one_line(tmp_path, corpus_file, tiny_encoder_dir):
    _drop_file_permissions()  # skips when they cannot be tested
    db = tmp_path / "db"
    build_index(IndexConfig(corpus=[str(corpus_file)], db=str(db), encoder=str(tiny_encoder_dir)))
    unreadable = shutil.copy(corpus_file, tmp_path / "unreadable.jsonl")
    os.chmod(unreadable, 0)
    locked_parent = tmp_path / "locked"
    locked_parent.mkdir()
    extra = write_rows(tmp_path / "extra.jsonl", make_rows(3, start=900))
    enc = ("--encoder", tiny_encoder_dir)
    try:
        os.chmod(locked_parent, 0o555)
        for path in [db, *db.rglob("*")]:
            os.chmod(path, 0o555 if path.is_dir() else 0o444)
        _one_line(
            _airsearch("index", unreadable, "--db", tmp_path / "new", *enc),
            "unreadable.jsonl",
            "Permission denied",
        )
        _one_line(
            _airsearch("index", corpus_file, "--db", locked_parent / "db", *enc),
            "cannot create the index folder",
        )
        _one_line(
            _airsearch("index", corpus_file, "--db", db, "--table", "t2", *enc),
            "cannot write in the index folder",
        )
        _one_line(
            _airsearch("index", extra, "--db", db, *enc, "--append"), "cannot write in the index folder"
        )
        gone = _airsearch("delete", "--db", db, "--id", "r0001", "--yes")
        _one_line(gone, "cannot write in the index folder")
        assert "--where" not in gone.stderr
        ok = _airsearch(
            "query", "--db", db, "--prompt", "p", "--response", "r", "--json"
        )  # reading still works
        assert ok.returncode == 0, ok.stderr
    finally:
        for path in [locked_parent, db, *db.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
    assert not (tmp_path / "new").exists() and not (locked_parent / "db").exists()
    assert len(IndexStore(db).open().ids()) == 60


def test_serve_on_a_port_in_use_is_one_line_before_the_banner(tmp_path, corpus_file, tiny_encoder_dir):
    db = tmp_path / "db"
    build_index(IndexConfig(corpus=[str(corpus_file)], db=str(db), encoder=str(tiny_encoder_dir)))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "AIRSEARCH_QUIET": "1", "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "airsearch.cli.main", "serve", "--db", str(db), "--port", str(port)]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    _one_line(res, f"127.0.0.1:{port} is in use", "option '--port'")
    assert "airsearch serve:" not in res.stderr
