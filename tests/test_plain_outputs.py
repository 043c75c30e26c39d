"""Outputs that explain themselves and commands that are not ambiguous (issue 28): every score names its
kind, opponents are negative, the header names the ranking method, several tables are refused without
--table, a missing id given to delete is reported, a mistyped command gets "did you mean"."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from airsearch.score_kinds import HINT, kind_label, score_kind
from tests.helpers.cli import assert_one_line_error, run


@pytest.fixture(scope="module")
def db(tmp_path_factory, corpus_file, tiny_encoder_dir):
    """The 60-row corpus in table ``corpus`` (full-text index included)."""
    out = tmp_path_factory.mktemp("plain") / "db"
    run("index", corpus_file, "--db", out, "--encoder", tiny_encoder_dir, "--batch-size", "16")
    return out


def _query(db, *extra):
    return run("query", "--db", db, "--prompt", "[alpha] the cat", "--response", "sat on a mat", *extra)


@pytest.mark.parametrize(
    ("mode", "kind", "ranked"),
    [("vector", "airrep", "AirRep, exact search"), ("bm25", "bm25", "BM25"), ("hybrid", "rrf", "RRF")],
)
def test_every_score_names_its_kind(db, mode, kind, ranked):
    human = _query(db, "--mode", mode, "-k", "3").stdout
    assert human.startswith(HINT)
    assert f"query (ranked by {ranked}" in human and f"{kind}: {kind_label(kind)}" in human
    assert "exact search" not in human or mode != "bm25"
    if mode != "vector":  # the dot product is not what BM25 or RRF rows are ranked by
        assert "dot product" not in human.split("proponents", 1)[1]
    rows = [line for line in human.splitlines() if re.match(r"\s+\d+\. ", line)]
    assert len(rows) == 3 and all(f". {kind} " in line for line in rows)
    (res,) = json.loads(_query(db, "--mode", mode, "-k", "3", "--json").stdout)
    assert res["score_kind"] == kind and res["score_label"] == kind_label(kind)
    assert ranked in res["ranked_by"] and all(c["score_kind"] == kind for c in res["proponents"])
    if mode == "hybrid":
        assert res["search"] == "exact+full-text"


def test_opponents_are_negative_or_said_to_be_none(db):
    """The untrained tiny AirRep scores every row positive for this query: no opponent, and the output
    says so; a query vector opposite to some rows gets exactly those rows, most negative first."""
    from airsearch.indexers.query import Searcher
    from airsearch.indexers.store import IndexStore

    (res,) = json.loads(_query(db, "--opponents", "-k", "60", "--json").stdout)
    assert all(c["score"] > 0 for c in res["proponents"]) and res["opponents"] == []
    assert "opponents (most negative first" in _query(db, "--opponents").stdout
    assert "none, no row has a negative AirRep score for this query" in _query(db, "--opponents").stdout
    table = IndexStore(db).open()
    searcher = Searcher.for_vectors(table, exact=True)
    vectors = table.take_vectors(list(range(table.count())))
    away = -vectors[:1].astype(np.float32)  # opposite to row 0
    ((scores, ids),) = searcher.opponents(away, 60)
    truth = vectors @ away[0]
    assert len(ids) == int((truth < 0).sum()) > 0 and (scores < 0).all() and (np.diff(scores) >= 0).all()
    assert set(ids.tolist()) == set(np.flatnonzero(truth < 0).tolist()) and ids[0] == int(np.argmin(truth))
    ((scores, ids),) = searcher.opponents(vectors[:1].astype(np.float32), 60)
    assert len(ids) == 0  # towards row 0: every row scores positive here


def test_score_kind_ids():
    assert score_kind("vector") == "airrep" and score_kind("hybrid") == "rrf"
    assert score_kind("bm25", "haif", "ekfac") == "haif+ekfac"
    assert kind_label("haif+ekfac") == "EK-FAC influence (HAIF influence)"
    assert kind_label("gradcos").startswith("grad-cos")


def test_several_tables_are_refused_naming_them(tmp_path, corpus_file, tiny_encoder_dir):
    db = tmp_path / "db"
    for table in ("corpus", "other"):
        run("index", corpus_file, "--db", db, "--encoder", tiny_encoder_dir, "--table", table)
    for argv in (
        ("query", "--db", db, "--response", "sat"),
        ("delete", "--db", db, "--id", "r0001"),
        ("explain", "--db", db, "--id", "r0001", "--response", "sat"),
    ):
        assert_one_line_error(run(*argv, ok=False), "several tables here (corpus, other)", "--table")
    assert json.loads(run("query", "--db", db, "--table", "other", "--response", "sat", "--json").stdout)
    assert json.loads(run("info", "--db", db, "--json").stdout)["tables"][1]["rows"] == 60


def test_delete_reports_a_missing_id(tmp_path, corpus_file, tiny_encoder_dir):
    db = tmp_path / "db"
    run("index", corpus_file, "--db", db, "--encoder", tiny_encoder_dir)
    first = json.loads(run("query", "--db", db, "--response", "sat", "-k", "1", "--json").stdout)
    hit = first[0]["proponents"][0]["id"]
    out = json.loads(run("delete", "--db", db, "--id", hit, "--id", "no-such-row", "--yes", "--json").stdout)
    assert out["deleted"] == 1 and out["missing"] == ["no-such-row"]
    human = run("delete", "--db", db, "--id", "no-such-row").stdout
    assert "deleted 0 rows" in human and "nothing deleted for: no-such-row" in human


@pytest.mark.parametrize(
    ("typo", "meant"), [("qurey", "query"), ("attribut", "attribute"), ("indx", "index")]
)
def test_mistyped_command_gets_did_you_mean(typo, meant):
    assert_one_line_error(run(typo, ok=False), f"No such command '{typo}'", f"Did you mean '{meant}'?")


@pytest.mark.parametrize("command", ["query", "attribute", ("eval", "classify"), ("eval", "trace")])
def test_top_k_is_spelled_the_same_everywhere(command):
    argv = command if isinstance(command, tuple) else (command,)
    assert "-k, --k INTEGER" in run(*argv, "--help").stdout
    assert "--top-tokens" in run("explain", "--help").stdout


def test_explain_separates_template_and_special_tokens(db, tiny_encoder_dir):
    from airsearch.data.example import Example
    from airsearch.encoder import AirRepEncoder
    from airsearch.explain import explain_airrep

    enc = AirRepEncoder.load(str(tiny_encoder_dir), device="cpu")
    query, row = Example("q", "what colour is the sky", "blue"), Example("r", "", "the sea is blue too")
    ex = explain_airrep(enc, query, row)
    tok = enc.model.tokenizer
    for side, example in ((ex.query_tokens, query), (ex.row_tokens, row)):
        parts = [t.part for t in side]
        assert parts[0] == parts[-1] == "special" and parts[1] == "template"
        # special, template ("question :"), prompt, template ("answer :"), response, special: in this order
        runs = [p for i, p in enumerate(parts) if i == 0 or parts[i - 1] != p]
        want = ["special", "template", "prompt", "template", "response", "special"]
        assert runs == (want if example.prompt else [w for w in want if w != "prompt"][:2] + want[4:])
        for part in ("prompt", "response"):
            text = [t.token for t in side if t.part == part]
            assert text == tok.tokenize(getattr(example, part))
    assert {t.token for t in ex.row_tokens if t.part == "template"} >= {"question", "answer", ":"}
    (hit,) = json.loads(run("query", "--db", db, "--response", "sat", "-k", "1", "--json").stdout)
    out = run("explain", "--db", db, "--id", hit["proponents"][0]["id"], "--response", "sat").stdout
    text_line = next(line for line in out.splitlines() if "row text tokens" in line)
    assert "[CLS]" not in text_line and "question:" not in text_line and "answer:" not in text_line
    assert "template and special tokens (share" in out and "[CLS]" in out


@pytest.mark.parametrize(("strategy", "kind"), [("best-rank", "airrep"), ("sum", "airrep-sum")])
def test_selection_manifest_names_its_score_column(db, tmp_path, corpus_file, strategy, kind):
    out = tmp_path / "sel.jsonl"
    run("select", "--db", db, "--targets", corpus_file, "-n", "3", "--strategy", strategy, "--out", out)
    manifest = json.loads((tmp_path / "sel.jsonl.manifest.json").read_text())
    assert manifest["score_kind"] == kind and manifest["score_label"] == kind_label(kind)


def test_reading_scores_page_lists_every_kind():
    from pathlib import Path

    from airsearch.score_kinds import SCORE_KINDS

    page = (Path(__file__).resolve().parents[1] / "docs" / "usage" / "reading-scores.md").read_text()
    assert all(f"`{kind}`" in page for kind in SCORE_KINDS)
