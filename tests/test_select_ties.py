"""``eval select`` selects exactly the rows ``airsearch select`` writes, on a corpus with tied scores.

The corpus repeats texts under different ids, so repeated rows have identical vectors and every
target scores them equally: competition ranks, the score at the best rank and the row order all
decide (AirRep App. G with the tie rule of ``airsearch.indexers.select``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from airsearch.indexers.build import build_index
from airsearch.indexers.config import IndexConfig, SelectConfig
from airsearch.indexers.select import select
from airsearch.trainers.evaluation.methods import Method
from airsearch.trainers.evaluation.select import EvalSelectConfig, eval_select, select_by_best_rank

from airsearch.data.corpus import load_corpus, load_queries, write_rows
from airsearch.encoder import AirRepEncoder
from tests.helpers.corpora import best_rank_reference

TOPICS = ("cats", "storms", "budgets", "music", "rivers", "trains", "apples", "chess")


@pytest.fixture(scope="module")
def tied(tmp_path_factory, tiny_encoder_dir):
    """A 15-row corpus where topic i appears 1 + i % 3 times (same text, other ids), rows shuffled;
    three dev targets; and an index of the corpus built with the default settings."""
    root = tmp_path_factory.mktemp("ties")
    rows = [
        {"id": f"{t}-{c}", "prompt": f"Tell me about {t}", "response": f"Some facts on {t}."}
        for i, t in enumerate(TOPICS)
        for c in range(1 + i % 3)
    ]
    rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    train = write_rows(root / "train.jsonl", rows)
    dev = write_rows(
        root / "dev.jsonl",
        [
            {"id": f"d{i}", "prompt": f"Tell me about {t}", "response": f"Facts: {t}."}
            for i, t in enumerate(("cats", "chess", "music"))
        ],
    )
    db = root / "db"
    build_index(IndexConfig(corpus=[str(train)], db=str(db), encoder=str(tiny_encoder_dir)))
    return root, train, dev, db


def _written_rows(cfg: SelectConfig) -> list[dict]:
    select(cfg)
    return [json.loads(line) for line in open(cfg.out, encoding="utf-8")]


def test_eval_selection_equals_airsearch_select_on_ties(tied, tiny_encoder_dir):
    root, train_file, dev_file, db = tied
    train = load_corpus(train_file).examples
    dev = load_queries(dev_file).examples
    encoder = AirRepEncoder.load(tiny_encoder_dir)
    method = Method.of("airrep", encoder=encoder)
    method.prepare(train)
    scores = (method.train_features.numpy() @ encoder.encode(dev).T).T  # [targets, items]
    tie_rule_mattered = False
    for n in range(1, len(train) + 1):
        out = root / f"selected_{n}.jsonl"
        written = _written_rows(
            SelectConfig(db=str(db), targets=str(dev_file), n=n, out=str(out), encoder=str(tiny_encoder_dir))
        )
        evaluated = [train[i].id for i in select_by_best_rank(method, dev, n)]
        assert evaluated == [r["id"] for r in written]
        ref, ref_ranks = best_rank_reference(scores, n)
        assert evaluated == [train[i].id for i in ref] and [r["best_rank"] for r in written] == ref_ranks
        tie_rule_mattered |= best_rank_reference(scores, n, positional=True)[0] != ref
    # the corpus really has ties, and they change the selection: repeated rows share a rank and a
    # score, which positional ranks (one rank per position) would split
    assert len({r["score"] for r in written}) < len(written) and tie_rule_mattered


def test_eval_select_command_scores_the_rows_select_writes(tied, tiny_encoder_dir, tiny_lm_dir):
    root, train_file, dev_file, db = tied
    n = 8  # the cut falls between two copies of one text: row order decides
    written = _written_rows(
        SelectConfig(
            db=str(db), targets=str(dev_file), n=n, out=str(root / "cmd.jsonl"), encoder=str(tiny_encoder_dir)
        )
    )
    result = eval_select(
        EvalSelectConfig(
            corpus=[str(train_file)],
            queries=[str(dev_file)],
            methods=("airrep",),
            encoder=str(tiny_encoder_dir),
            lm=str(tiny_lm_dir),
            n_select=n,
            epochs=1,
            out=str(root / "eval"),
        )
    )
    assert result.methods["airrep"].selected_ids == [r["id"] for r in written]
    assert json.loads((root / "eval" / "select.json").read_text())["methods"]["airrep"]["selected_ids"] == [
        r["id"] for r in written
    ]
    texts = {(r["prompt"], r["response"]) for r in written}
    assert len(texts) < n  # repeated texts among the selected rows
