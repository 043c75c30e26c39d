"""The HTTP API of ``airsearch serve`` against a real index: every endpoint, limits, filters, token,
CORS, read-only, fresh data after another process appends, and the bind address."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from airsearch.indexers.build import build_index
from airsearch.indexers.config import IndexConfig, SelectConfig
from airsearch.indexers.query import Searcher
from airsearch.indexers.select import select
from airsearch.indexers.serve import ServeConfig, bind_warning, create_app, is_loopback
from fastapi.testclient import TestClient

from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder
from airsearch.methods.registry import MethodConfig
from tests.helpers.corpora import make_rows, write_corpus

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Q = {"prompt": "[alpha] the cat sat on a mat", "response": "dogs ran far"}


@pytest.fixture(scope="module")
def db(tmp_path_factory, tiny_encoder_dir):
    tmp = tmp_path_factory.mktemp("serve")
    corpus = write_corpus(tmp / "train.jsonl", make_rows(40))
    build_index(IndexConfig(corpus=[str(corpus)], db=str(tmp / "db"), encoder=str(tiny_encoder_dir)))
    return tmp / "db"


@pytest.fixture(scope="module")
def encoder(tiny_encoder_dir):
    return AirRepEncoder.load(tiny_encoder_dir)


@pytest.fixture(scope="module")
def client(db, encoder):
    app = create_app(
        ServeConfig(db=str(db), token=TOKEN, max_k=20, max_batch=3, max_text_chars=500), encoder=encoder
    )
    with TestClient(app) as c:
        yield c


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["message"]
    return body


def test_health_needs_no_token_and_the_api_does(client):
    h = client.get("/api/health").json()
    assert (h["status"], h["rows"], h["auth"]) == ("ok", 40, True)
    assert "bearer" in _error(client.get("/api/info"), 401)["message"]
    assert _error(client.get("/api/info", headers={"Authorization": "Bearer wrong-token"}), 401)
    assert _error(client.post("/api/query", json=Q), 401)
    info = client.get("/api/info", headers=AUTH).json()
    assert info["table"]["rows"] == 40 and info["table"]["fts"] is True
    assert info["filterable_columns"] == {"id": "str", "task": "str", "n": "int"}  # 'tags' is JSON
    assert info["modes"] == ["vector", "bm25", "hybrid"] and info["rerank_methods"] == []


def test_query_equals_the_python_api(client, db, encoder):
    r = client.post("/api/query", headers=AUTH, json={**Q, "k": 5, "preview_chars": None}).json()
    (res,) = r["results"]
    direct = Searcher(str(db), encoder=encoder).search(Example("query", Q["prompt"], Q["response"]), k=5)[0]
    assert [c["id"] for c in res["proponents"]] == [c.id for c in direct.proponents]
    np.testing.assert_allclose(
        [c["score"] for c in res["proponents"]], [c.score for c in direct.proponents], rtol=1e-6
    )
    assert res["proponents"][0]["prompt"] == direct.proponents[0].prompt


def test_batch_group_by_opponents_and_modes(client):
    body = {
        "queries": [Q, {"prompt": "", "response": "green doors"}],
        "k": 3,
        "group_by": "task",
        "opponents": True,
    }
    results = client.post("/api/query", headers=AUTH, json=body).json()["results"]
    assert len(results) == 2
    for res in results:
        # opponents: negative AirRep scores only (the untrained tiny encoder scores every row positive)
        assert len(res["proponents"]) == 3 and all(c["score"] < 0 for c in res["opponents"])
        assert res["score_kind"] == "airrep" and all(c["score_kind"] == "airrep" for c in res["proponents"])
        assert {g["group"] for g in res["groups"]} == {"alpha", "beta", "gamma"}
        assert sum(g["size"] for g in res["groups"]) == 40
    for mode in ("bm25", "hybrid"):
        res = client.post("/api/query", headers=AUTH, json={**Q, "k": 4, "mode": mode}).json()["results"][0]
        assert res["mode"] == mode and 0 < len(res["proponents"]) <= 4
        kind = {"bm25": "bm25", "hybrid": "rrf"}[mode]
        assert res["score_kind"] == kind and all(c["score_kind"] == kind for c in res["proponents"])


def test_structured_filters_are_validated_and_quoted(client):
    def ids(filters):
        r = client.post("/api/query", headers=AUTH, json={**Q, "k": 20, "filters": filters})
        assert r.status_code == 200, r.text
        return r.json()["results"][0]["proponents"]

    assert {c["metadata"]["task"] for c in ids([{"column": "task", "value": "beta"}])} == {"beta"}
    rng = ids([{"column": "n", "op": "gte", "value": 10}, {"column": "n", "op": "lt", "value": 14}])
    assert sorted(c["metadata"]["n"] for c in rng) == [10, 11, 12, 13]
    both = ids([{"column": "task", "op": "in", "value": ["alpha", "gamma"]}])
    assert {c["metadata"]["task"] for c in both} == {"alpha", "gamma"}
    # an injection-looking value stays one string literal: it matches nothing
    assert ids([{"column": "task", "value": "alpha' OR '1'='1"}]) == []
    # injection-looking columns, wrong types and unknown ops are refused
    for bad, field in [
        ({"column": "task = 'x' OR 1=1 --", "value": "x"}, "filters[0].column"),
        ({"column": "n", "value": "1 OR 1=1"}, "filters[0].value"),
        ({"column": "tags", "value": "alpha"}, "filters[0].column"),
        ({"column": "task", "op": "gt", "value": True}, "filters[0].value"),
    ]:
        r = client.post("/api/query", headers=AUTH, json={**Q, "filters": [bad]})
        assert _error(r, 400)["field"] == field
    assert _error(
        client.post(
            "/api/query", headers=AUTH, json={**Q, "filters": [{"column": "n", "op": "like", "value": 1}]}
        ),
        422,
    )
    # raw SQL only with --allow-sql
    assert (
        "disabled"
        in _error(client.post("/api/query", headers=AUTH, json={**Q, "where": "n > 3"}), 403)["message"]
    )


def test_raw_sql_with_the_opt_in(db, encoder):
    app = create_app(ServeConfig(db=str(db), allow_sql=True), encoder=encoder)
    with TestClient(app) as c:
        res = c.post("/api/query", json={**Q, "k": 20, "where": "n >= 35"}).json()["results"][0]
        assert sorted(p["metadata"]["n"] for p in res["proponents"]) == [35, 36, 37, 38, 39]
        assert _error(c.post("/api/query", json={**Q, "where": "nosuch = 1"}), 400)["field"] == "where"


def test_limits_answer_clear_4xx_json(client):
    assert "max_k" in _error(client.post("/api/query", headers=AUTH, json={**Q, "k": 21}), 422)["message"]
    assert _error(client.post("/api/query", headers=AUTH, json={**Q, "k": 0}), 422)["field"] == "body.k"
    batch = {"queries": [Q] * 4}
    assert "max_batch" in _error(client.post("/api/query", headers=AUTH, json=batch), 422)["message"]
    long = {**Q, "response": "x" * 501}
    assert _error(client.post("/api/query", headers=AUTH, json=long), 422)["field"] == "queries[0].response"
    big = json.dumps({**Q, "prompt": "y" * 1_200_000})
    r = client.post("/api/query", headers={**AUTH, "Content-Type": "application/json"}, content=big)
    assert "max_body_bytes" in _error(r, 413)["message"]
    assert _error(
        client.post(
            "/api/query",
            headers=AUTH,
            content=b"{not json",
        ),
        422,
    )
    assert (
        _error(client.post("/api/query", headers=AUTH, json={**Q, "group_by": "nosuch"}), 422)["field"]
        == "group_by"
    )
    assert _error(client.post("/api/query", headers=AUTH, json={**Q, "rerank": "haif"}), 403)  # no --lm


def test_row_by_id_and_explanation_sum_to_the_score(client, db, encoder):
    row = client.get("/api/rows/r0007", headers=AUTH).json()
    assert row["id"] == "r0007" and row["metadata"]["task"] == "beta" and row["prompt"].startswith("[beta]")
    assert _error(client.get("/api/rows/nope", headers=AUTH), 404)["field"] == "id"
    e = client.post("/api/explain", headers=AUTH, json={"id": "r0007", **Q}).json()
    direct = Searcher(str(db), encoder=encoder)
    v = direct.encode([Example("q", Q["prompt"], Q["response"])])[0]
    (rid,) = direct.table.find(["r0007"]).values()
    assert e["airrep"]["score"] == pytest.approx(float(direct.table.take_vectors([rid])[0] @ v), abs=1e-4)
    for side in ("row_tokens", "query_tokens"):
        assert sum(t["contribution"] for t in e["airrep"][side]) == pytest.approx(
            e["airrep"]["score"], abs=1e-5
        )
    assert any(t["token"] == "beta" for t in e["airrep"]["row_tokens"]) and e["gradient"] is None
    assert _error(client.post("/api/explain", headers=AUTH, json={"id": "nope", **Q}), 404)


def test_selection_streams_the_rows_select_writes(client, db, encoder, tmp_path):
    targets = [Q, {"prompt": "[gamma] near big", "response": "red houses"}]
    r = client.post("/api/select", headers=AUTH, json={"targets": targets, "n": 6})
    assert r.status_code == 200, r.text
    assert "attachment" in r.headers["content-disposition"]
    assert r.headers["content-type"].startswith("application/x-ndjson")
    got = [json.loads(line) for line in r.text.splitlines()]
    (tmp_path / "t.jsonl").write_text(
        "".join(json.dumps({"id": f"q{i}", **t}) + "\n" for i, t in enumerate(targets))
    )
    select(
        SelectConfig(db=str(db), targets=str(tmp_path / "t.jsonl"), n=6, out=str(tmp_path / "s.jsonl")),
        encoder=encoder,
    )
    want = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert got == want and len(got) == 6
    assert _error(client.post("/api/select", headers=AUTH, json={"targets": targets}), 422)["field"] == "n"


def test_read_only_and_openapi(client, db):
    version = Searcher.for_vectors(
        __import__("airsearch.indexers.store", fromlist=["x"]).IndexStore(db).open()
    ).table.version
    spec = client.get("/openapi.json").json()
    methods = {(p, m) for p, ops in spec["paths"].items() for m in ops}
    assert {m for _, m in methods} <= {"get", "post"}
    assert {p for p, m in methods if m == "post"} == {"/api/query", "/api/explain", "/api/select"}
    assert client.get("/docs").status_code == 200
    assert client.get("/api/health").json()["version"] == version  # nothing above wrote a version


def test_no_cors_unless_asked(client, db, encoder):
    pre = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/api/query", headers=pre).headers
    assert (
        "access-control-allow-origin"
        not in client.get("/api/health", headers={"Origin": "http://evil.example"}).headers
    )
    app = create_app(ServeConfig(db=str(db), cors_origin=("http://ok.example",)), encoder=encoder)
    with TestClient(app) as c:
        ok = c.get("/api/health", headers={"Origin": "http://ok.example"})
        assert ok.headers["access-control-allow-origin"] == "http://ok.example"
        assert (
            "access-control-allow-origin"
            not in c.get("/api/health", headers={"Origin": "http://evil.example"}).headers
        )


def test_the_server_sees_rows_another_process_appends(tmp_path, tiny_encoder_dir, encoder):
    a = write_corpus(tmp_path / "a.jsonl", make_rows(12))
    b = write_corpus(tmp_path / "b.jsonl", make_rows(5, start=500))
    build_index(IndexConfig(corpus=[str(a)], db=str(tmp_path / "db"), encoder=str(tiny_encoder_dir)))
    with TestClient(create_app(ServeConfig(db=str(tmp_path / "db")), encoder=encoder)) as c:
        assert c.get("/api/health").json()["rows"] == 12
        assert c.get("/api/rows/r0500").status_code == 404
        cmd = [
            sys.executable,
            "-m",
            "airsearch.cli.main",
            "-q",
            "index",
            str(b),
            "--db",
            str(tmp_path / "db"),
            "--encoder",
            str(tiny_encoder_dir),
            "--append",
        ]
        subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "AIRSEARCH_QUIET": "1"})
        assert c.get("/api/health").json()["rows"] == 17
        assert c.get("/api/rows/r0500").json()["id"] == "r0500"
        res = c.post("/api/query", json={"prompt": "", "response": "x", "k": 17}).json()["results"][0]
        assert len(res["proponents"]) == 17


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_health(port: int, proc: subprocess.Popen) -> dict:
    for _ in range(300):
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).json()
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("server did not start")


def test_bind_address_default_loopback_and_warning(db):
    assert ServeConfig(db="x").host == "127.0.0.1"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert bind_warning("127.0.0.1") is None and "warning" in bind_warning("0.0.0.0")
    for host in ("127.0.0.1", "0.0.0.0"):
        port = _free_port()
        cmd = [sys.executable, "-m", "airsearch.cli.main", "serve", "--db", str(db), "--port", str(port)]
        cmd += ["--host", host] if host != "127.0.0.1" else []
        proc = subprocess.Popen(
            cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "AIRSEARCH_TOKEN": TOKEN}
        )
        try:
            assert _wait_health(port, proc)["auth"] is True  # the token came from $AIRSEARCH_TOKEN
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        assert f"http://{host}:{port}/" in err
        assert ("warning: binding 0.0.0.0" in err) == (host == "0.0.0.0")


def test_rerank_with_an_lm(db, encoder, tiny_lm_dir):
    cfg = ServeConfig(db=str(db), lm=str(tiny_lm_dir), rerank_methods=("haif",), max_candidates=8)
    with TestClient(create_app(cfg, encoder=encoder)) as c:
        assert c.get("/api/info").json()["rerank_methods"] == ["haif"]
        res = c.post("/api/query", json={**Q, "k": 3, "rerank": "haif", "candidates": 8}).json()["results"][0]
        assert res["reranked_by"] == "haif" and len(res["proponents"]) == 3
        scores = [p["score"] for p in res["proponents"]]
        assert scores == sorted(scores, reverse=True) and all(
            "retrieval_score" in p for p in res["proponents"]
        )
        assert _error(c.post("/api/query", json={**Q, "rerank": "tracin"}), 403)  # not offered
        assert (
            "max_candidates"
            in _error(c.post("/api/query", json={**Q, "rerank": "haif", "candidates": 9}), 422)["message"]
        )


def test_gradient_token_view_sums_to_the_method_score(db, encoder, tiny_lm_dir):
    from airsearch.indexers.explain import load_gradient_method

    cfg = ServeConfig(db=str(db), lm=str(tiny_lm_dir), rerank_methods=("haif",))
    with TestClient(create_app(cfg, encoder=encoder)) as c:
        e = c.post("/api/explain", json={"id": "r0003", **Q, "method": "haif"}).json()
    grad = e["gradient"]
    method = load_gradient_method(MethodConfig(method="haif", lm=str(tiny_lm_dir)))
    row = Searcher(str(db), encoder=encoder).table
    (rid,) = row.find(["r0003"]).values()
    want = float(method.score(row.take([rid]), [Example("q", Q["prompt"], Q["response"])])[0, 0])
    assert grad["method"] == "haif" and len(grad["tokens"]) > 0
    assert sum(t["contribution"] for t in grad["tokens"]) == pytest.approx(want, rel=1e-4, abs=1e-6)
    assert grad["score"] == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_explain_and_query_mode_on_the_cli(db, tiny_encoder_dir):
    from airsearch.cli.main import app
    from click.testing import CliRunner

    args = ["--db", str(db), "--prompt", Q["prompt"], "--response", Q["response"]]
    out = CliRunner().invoke(app, ["explain", *args, "--id", "r0007", "--json"])
    assert out.exit_code == 0, out.output
    e = json.loads(out.stdout)
    assert e["row"]["id"] == "r0007" and e["gradient"] is None
    assert sum(t["contribution"] for t in e["airrep"]["row_tokens"]) == pytest.approx(
        e["airrep"]["score"], abs=1e-5
    )
    human = CliRunner().invoke(app, ["explain", *args, "--id", "r0007", "--top", "3"])
    assert human.exit_code == 0 and "row text tokens carrying the score" in human.stdout
    missing = CliRunner().invoke(app, ["explain", *args, "--id", "nope"])
    assert missing.exit_code == 2 and "no row with id 'nope'" in missing.output
    q = CliRunner().invoke(app, ["query", *args, "-k", "3", "--mode", "hybrid", "--json"])
    assert q.exit_code == 0, q.output
    assert json.loads(q.stdout)[0]["mode"] == "hybrid"
