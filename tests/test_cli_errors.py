"""Expected failures print one line (exit 2, no traceback); commands are thin layers over the API."""

from __future__ import annotations

import json

from airsearch.data.corpus import write_rows
from tests.test_cli_index import run

ROW = {"id": "a", "prompt": "p", "response": "r"}


def assert_one_line(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    for f in fragments:
        assert f in result.output


def test_index_into_a_file_is_refused(tmp_path):
    corpus = write_rows(tmp_path / "c.jsonl", [ROW])
    (tmp_path / "afile").write_text("x")
    res = run("index", corpus, "--db", tmp_path / "afile", ok=False)
    assert_one_line(res, "not a directory", "afile")


def test_missing_daunce_run_is_refused(tmp_path):
    corpus = write_rows(tmp_path / "c.jsonl", [ROW])
    res = run(
        "attribute", "--method", "daunce", "--corpus", corpus, "--queries", corpus,
        "--out", tmp_path / "out", "--daunce-run", tmp_path / "norun", ok=False,
    )  # fmt: skip
    assert_one_line(res, "not a Daunce run", "norun")


def test_attribute_command_is_the_python_api(tmp_path, tiny_lm_dir, tiny_lm_examples):
    """`airsearch attribute` prints exactly what `airsearch.trainers.attribute.attribute` returns."""
    from airsearch.trainers.attribute import AttributeConfig, attribute

    corpus = write_rows(tmp_path / "c.jsonl", [e.to_row() for e in tiny_lm_examples[:6]])
    queries = write_rows(tmp_path / "q.jsonl", [e.to_row() for e in tiny_lm_examples[40:42]])
    args = dict(method="gradcos", lm=str(tiny_lm_dir), corpus=[str(corpus)], queries=[str(queries)], k=2)
    api = attribute(AttributeConfig(**args, out=str(tmp_path / "api")))
    cli = json.loads(
        run(
            "attribute", "--method", "gradcos", "--lm", tiny_lm_dir, "--corpus", corpus,
            "--queries", queries, "--k", 2, "--out", tmp_path / "cli", "--json",
        ).stdout
    )  # fmt: skip
    assert cli == {**api.to_dict(), "out": str(tmp_path / "cli")} and cli["train"] == api.train == 6
    assert [t.id for t in api.results[0].top] == [t["id"] for t in cli["results"][0]["top"]]
