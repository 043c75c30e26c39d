"""`airsearch index/query/select/info` end to end through click's runner (tiny and real encoders)."""

from __future__ import annotations

import json

import pytest

from airsearch.data.corpus import write_rows
from tests.helpers.cli import assert_one_line_error, fill, run
from tests.helpers.corpora import make_rows


def test_cli_index_query_select_info(tmp_path, corpus_file, tiny_encoder_dir):
    db = tmp_path / "db"
    out = run("index", corpus_file, "--db", db, "--encoder", tiny_encoder_dir, "--batch-size", "8", "--json")
    summary = json.loads(out.stdout)
    assert summary["rows_added"] == 60 and summary["dim"] == 32 and summary["index"]["type"] == "exact"
    human = run(
        "query", "--db", db, "--prompt", "[alpha] the cat", "--response", "sat", "-k", "3", "--opponents"
    )
    assert "proponents" in human.stdout and "opponents" in human.stdout
    res = json.loads(
        run(
            "query",
            "--db",
            db,
            "--prompt",
            "p",
            "--response",
            "r",
            "-k",
            "4",
            "--json",
            "--where",
            "task = 'gamma'",
            "--group-by",
            "task",
        ).stdout
    )
    assert len(res) == 1 and len(res[0]["proponents"]) == 4
    assert all(c["metadata"]["task"] == "gamma" for c in res[0]["proponents"])
    assert [g["group"] for g in res[0]["groups"]] == ["gamma"]
    queries = write_rows(tmp_path / "q.jsonl", make_rows(3, start=700))
    many = json.loads(run("query", "--db", db, "--queries", queries, "--json", "-k", "2").stdout)
    assert [r["query"]["id"] for r in many] == ["r0700", "r0701", "r0702"]
    sel = json.loads(
        run(
            "select", "--db", db, "--targets", queries, "-n", "5", "--out", tmp_path / "s.jsonl", "--json"
        ).stdout
    )
    assert sel["selected"] == 5 and len((tmp_path / "s.jsonl").read_text().splitlines()) == 5
    info = json.loads(run("info", "--db", db, "--json").stdout)
    assert info["tables"][0]["rows"] == 60 and info["tables"][0]["dim"] == 32
    assert "table 'corpus': 60 rows" in run("info", "--db", db).stdout
    # append through the CLI
    more = write_rows(tmp_path / "more.jsonl", make_rows(5, start=60))
    appended = json.loads(
        run("index", more, "--db", db, "--encoder", tiny_encoder_dir, "--append", "--json").stdout
    )
    assert appended["rows_total"] == 65


@pytest.fixture(scope="module")
def indexed_db(tmp_path_factory, corpus_file, tiny_encoder_dir):
    db = tmp_path_factory.mktemp("cli") / "db"
    run("index", corpus_file, "--db", db, "--encoder", tiny_encoder_dir)
    return db


QUERY = ("query", "--db", "{db}", "--prompt", "p", "--response", "r")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param((*QUERY[:2], "{tmp}/nope", *QUERY[3:]), "index directory not found", id="no-index"),
        pytest.param((*QUERY[:2], "{tmp}", *QUERY[3:], "--queries", "f"), "one of them", id="two-inputs"),
        pytest.param((*QUERY, "--where", "nosuch = 1"), "--where", id="bad-where"),
        pytest.param((*QUERY, "--group-by", "nosuch"), "no metadata column", id="bad-group-by"),
        pytest.param(
            ("select", "--db", "{db}", "--targets", "{corpus}", "--out", "{tmp}/x.csv", "-n", "2"),
            ".jsonl or .parquet",
            id="select-to-csv",
        ),
    ],
)
def test_cli_bad_inputs_exit_2_without_traceback(argv, message, tmp_path, indexed_db, corpus_file):
    res = run(*fill(argv, tmp=tmp_path, db=indexed_db, corpus=corpus_file), ok=False)
    assert_one_line_error(res, message)


def test_cli_bad_row_leaves_no_table(tmp_path, corpus_file, tiny_encoder_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a"\n')
    res = run("index", bad, "--db", tmp_path / "db", "--encoder", tiny_encoder_dir, ok=False)
    assert_one_line_error(res, "bad.jsonl:2")
    assert not (tmp_path / "db" / "corpus.lance").exists()
    run("index", corpus_file, "--db", tmp_path / "db", "--encoder", tiny_encoder_dir)  # the db is usable


@pytest.mark.slow
def test_real_default_encoder_end_to_end(tmp_path):
    """The packaged all-MiniLM-L6-v2: a question-generation query finds its own task first."""
    rows = [
        {
            "id": f"dur{i}",
            "prompt": f"Write a question about how long events last. Sentence: {s}",
            "response": f"How long did {w} take?",
            "task": "duration",
        }
        for i, (s, w) in enumerate(
            [
                ("She baked bread.", "baking"),
                ("He ran a marathon.", "the run"),
                ("They built a house.", "building"),
                ("We watched a film.", "the film"),
            ]
        )
    ] + [
        {
            "id": f"sent{i}",
            "prompt": f"Is this review positive or negative? {s}",
            "response": r,
            "task": "sentiment",
        }
        for i, (s, r) in enumerate(
            [
                ("Terrible food.", "negative"),
                ("Loved every minute.", "positive"),
                ("Awful service.", "negative"),
                ("Great value.", "positive"),
            ]
        )
    ]
    corpus = write_rows(tmp_path / "train.jsonl", rows)
    db = tmp_path / "db"
    summary = json.loads(run("index", corpus, "--db", db, "--json").stdout)
    assert summary["dim"] == 384 and summary["encoder"].startswith("default")
    res = json.loads(
        run(
            "query",
            "--db",
            db,
            "--prompt",
            "Write a question about how long events last. Sentence: I painted the fence.",
            "--response",
            "How long did painting take?",
            "--json",
            "-k",
            "4",
            "--group-by",
            "task",
        ).stdout
    )[0]
    assert all(c["metadata"]["task"] == "duration" for c in res["proponents"])
    assert res["groups"][0]["group"] == "duration"


def test_cli_delete_by_id_and_filter(tmp_path, corpus_file, tiny_encoder_dir):
    db = tmp_path / "db"
    run("index", corpus_file, "--db", db, "--encoder", tiny_encoder_dir)
    rows = json.loads(
        run("query", "--db", db, "--prompt", "p", "--response", "r", "-k", "2", "--json").stdout
    )
    first = rows[0]["proponents"][0]["id"]
    gone = json.loads(run("delete", "--db", db, "--id", first, "--json", "--yes").stdout)
    assert gone["deleted"] == 1 and gone["rows"] == 59
    again = json.loads(
        run("query", "--db", db, "--prompt", "p", "--response", "r", "-k", "59", "--json").stdout
    )
    assert first not in {c["id"] for c in again[0]["proponents"]}
    tasks = {c["metadata"]["task"] for c in again[0]["proponents"]}
    task = sorted(tasks)[0]
    out = json.loads(run("delete", "--db", db, "--where", f"task = '{task}'", "--json", "--yes").stdout)
    assert out["deleted"] > 0 and out["rows"] == 59 - out["deleted"]
    bad = run("delete", "--db", db, ok=False)
    assert bad.exit_code != 0 and "--id" in bad.output and "Traceback" not in bad.output


def test_stale_build_of_a_killed_process_is_removed(tmp_path, corpus_file, tiny_encoder_dir):
    db = tmp_path / "db"
    run("index", corpus_file, "--db", db, "--encoder", tiny_encoder_dir, "--table", "a")
    stale = db / "_building_b_999999999_deadbeef.lance"  # no such process
    stale.mkdir()
    run("index", corpus_file, "--db", db, "--encoder", tiny_encoder_dir, "--table", "b")
    assert not stale.exists()
    assert sorted(p.name for p in db.glob("*.lance")) == ["a.lance", "b.lance"]
