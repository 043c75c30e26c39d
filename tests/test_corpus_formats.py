"""Data in the user's own shape (issue 28): the corpus-formats page lists every shape and flag, errors
name CLI flags and suggest --skip-bad-rows only when skipping would leave rows, and `attribute` reads a
corpus with the same options as `index` (ids match) and returns each row's text and metadata."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from airsearch.data.corpus import load_corpus, write_rows
from airsearch.errors import InputError
from tests.helpers.cli import assert_one_line_error, run

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "usage" / "corpus-formats.md"


def test_formats_page_lists_every_shape_and_flag():
    text = DOC.read_text()
    for shape in (
        "messages",
        "prompt",
        "response",
        "instruction",
        "input",
        "output",
        "inputs",
        "targets",
        "text",
    ):
        assert f"`{shape}`" in text, shape
    for flag in ("--prompt-field", "--response-field", "--id-field", "--skip-bad-rows", "--encoding"):
        assert flag in text, flag
    for fmt in (".jsonl", ".json", ".parquet", ".csv", ".tsv", "save_to_disk"):
        assert fmt in text, fmt
    readme = (ROOT / "README.md").read_text()
    assert "docs/usage/corpus-formats.md" in readme
    # every command that reads a training corpus takes the read options the page documents
    for argv in (("index",), ("attribute",), ("labels", "generate"), ("eval", "lds"), ("eval", "gold")):
        help_text = run(*argv, "--help").stdout
        assert all(
            f in help_text for f in ("--prompt-field", "--response-field", "--id-field", "--skip-bad-rows")
        )


def test_errors_name_flags_and_suggest_skipping_only_when_rows_would_remain(tmp_path):
    all_bad = write_rows(tmp_path / "bad.jsonl", [{"question": f"q{i}", "answer": "a"} for i in range(5)])
    with pytest.raises(InputError) as err:
        load_corpus(all_bad)
    message = err.value.message
    assert "--prompt-field/--response-field" in message and "prompt_field" not in message
    assert "--skip-bad-rows" not in message and "no row read is usable" in message
    assert "docs/usage/corpus-formats.md" in message
    some_bad = write_rows(
        tmp_path / "some.jsonl", [{"question": "q", "answer": "a"}, {"prompt": "p", "response": "r"}]
    )
    with pytest.raises(InputError, match="--skip-bad-rows"):
        load_corpus(some_bad)
    res = run("index", all_bad, "--db", tmp_path / "db", ok=False)
    assert_one_line_error(res, "--prompt-field/--response-field")
    assert "--skip-bad-rows" not in res.output
    mapped = load_corpus(all_bad, prompt_field="question", response_field="answer")
    assert [e.prompt for e in mapped.examples] == [f"q{i}" for i in range(5)]


def test_attribute_reads_ids_like_index_and_returns_text(
    tmp_path, tiny_lm_dir, tiny_lm_examples, tiny_encoder_dir
):
    rows = [{"uid": f"row-{i}", "prompt": e.prompt, "response": e.response, "task": f"t{i % 2}"}
            for i, e in enumerate(tiny_lm_examples[:6])]  # fmt: skip
    corpus = write_rows(tmp_path / "c.jsonl", rows)
    queries = write_rows(tmp_path / "q.jsonl", [{"uid": "q1", **e.to_row()} for e in tiny_lm_examples[40:41]])
    db = tmp_path / "db"
    run("index", corpus, "--db", db, "--encoder", tiny_encoder_dir, "--id-field", "uid")
    indexed = {
        c["id"]
        for c in json.loads(run("query", "--db", db, "--response", "x", "-k", 6, "--json").stdout)[0][
            "proponents"
        ]
    }
    assert indexed == {r["uid"] for r in rows}
    out = tmp_path / "out"
    res = json.loads(
        run("attribute", "--method", "gradcos", "--lm", tiny_lm_dir, "--corpus", corpus, "--queries", queries,
            "-k", 3, "--id-field", "uid", "--out", out, "--json").stdout
    )  # fmt: skip
    (q,) = res["results"]
    assert q["query_id"] == "q1" and {t["id"] for t in q["top"]} <= indexed
    by_id = {r["uid"]: r for r in rows}
    for t in q["top"]:
        assert t["score_kind"] == "gradcos" and t["metadata"] == {"task": by_id[t["id"]]["task"]}
        assert t["response"] == by_id[t["id"]]["response"][:200] and t["prompt"]
    saved = json.loads((out / "results.json").read_text())["results"][0]["top"]
    assert saved == q["top"]
    human = run("attribute", "--method", "gradcos", "--lm", tiny_lm_dir, "--corpus", corpus, "--queries", queries,
                "-k", 3, "--id-field", "uid", "--out", tmp_path / "o2").stdout  # fmt: skip
    assert "gradcos: grad-cos" in human and re.search(r"gradcos [-+]\d\.\d{4}  row-\d", human)
