"""Input text reaches every method the same way (issue 28): whitespace at either end of a prompt or
response changes no score, and query / target files are read with the corpus read options."""

from __future__ import annotations

import csv
import json

from airsearch.data.example import Example
from tests.helpers.cli import assert_one_line_error, run
from tests.helpers.corpora import make_rows, write_corpus

QUERY = ("What colour is the lemon?", "The lemon is gold.")


def test_whitespace_around_the_query_changes_no_method_score(tiny_lm_db, tiny_lm_dir):
    # grad-cos on a byte-level BPE LM: a trailing space would be a token of its own, with its own gradient
    def ranked(prompt: str, response: str, *extra: str) -> list[dict]:
        out = run(
            "query", "--db", tiny_lm_db, "--prompt", prompt, "--response", response, "-k", 4, "--json", *extra
        )
        return json.loads(out.stdout)

    rerank = ("--rerank", "gradcos", "--lm", str(tiny_lm_dir), "--candidates", "8")
    for extra in [(), rerank, ("--mode", "bm25")]:
        plain = ranked(*QUERY, *extra)
        padded = ranked("  " + QUERY[0] + "\n", QUERY[1] + " ", *extra)
        assert padded == plain, extra  # same rows, same scores, same (normalised) query text
    assert Example("q", " a b ", "c \n").prompt == "a b" and Example("q", "", " c\t").response == "c"


def test_query_and_target_files_take_the_corpus_read_options(tiny_encoder_dir, tmp_path):
    db = tmp_path / "db"
    run("index", write_corpus(tmp_path / "c.jsonl", make_rows(10)), "--db", db, "--encoder", tiny_encoder_dir)
    # a CSV of queries in the user's own columns
    queries = tmp_path / "q.csv"
    with open(queries, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["qid", "question", "answer"])
        w.writerow(["first", "what is alpha", "alpha one"])
        w.writerow(["second", "what is beta", "beta two"])
    fields = ["--prompt-field", "question", "--response-field", "answer", "--id-field", "qid"]

    got = json.loads(run("query", "--db", db, "--queries", queries, "-k", 2, "--json", *fields).stdout)
    assert [r["query"]["id"] for r in got] == ["first", "second"]
    assert [r["query"]["prompt"] for r in got] == ["what is alpha", "what is beta"]
    assert all(len(r["proponents"]) == 2 for r in got)

    out = tmp_path / "sel.jsonl"
    run("select", "--db", db, "--targets", queries, "-n", 3, "--out", out, *fields)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and {r["best_target"] for r in rows} <= {"first", "second"}

    # without the flags the same file is refused in one line that names them
    res = run("query", "--db", db, "--queries", queries, ok=False)
    assert_one_line_error(res, "--prompt-field")
