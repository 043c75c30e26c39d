"""Expected failures print one line (exit 2, no traceback); commands are thin layers over the API."""

from __future__ import annotations

import json

import pytest

from airsearch.data.corpus import write_rows
from tests.helpers.cli import assert_one_line_error, fill, run

ROW = {"id": "a", "prompt": "p", "response": "r"}


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        pytest.param(("index", "{corpus}", "--db", "{tmp}/afile"), ("not a directory", "afile"), id="db-is-a-file"),
        pytest.param(
            ("attribute", "--method", "daunce", "--corpus", "{corpus}", "--queries", "{corpus}",
             "--out", "{tmp}/out", "--daunce-run", "{tmp}/norun"),
            ("not a Daunce run", "norun"),
            id="missing-daunce-run",
        ),
    ],
)  # fmt: skip
def test_bad_input_is_refused_in_one_line(tmp_path, argv, fragments):
    corpus = write_rows(tmp_path / "c.jsonl", [ROW])
    (tmp_path / "afile").write_text("x")
    res = run(*fill(argv, tmp=tmp_path, corpus=corpus), ok=False)
    assert_one_line_error(res, *fragments)


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
