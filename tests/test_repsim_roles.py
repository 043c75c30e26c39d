"""RepSim in the one method registry: every role a method has (eval, attribute, rerank, teacher)
gets the same scores, the cosine of mean last hidden states."""

from __future__ import annotations

import json

import numpy as np
import pytest
from airsearch.trainers.evaluation.common import EvalConfig, build_methods
from airsearch.trainers.evaluation.methods import summed_scores
from airsearch.trainers.labels import LabelStore

from airsearch.data.corpus import write_rows
from airsearch.data.example import Example
from airsearch.lm import load_lm
from airsearch.methods.registry import MethodConfig, load_method
from airsearch.methods.repsim import RepSim
from tests.helpers.cli import run

QUERY = Example("q", "What colour is the lemon?", "The lemon is gold.")


@pytest.fixture(scope="module")
def reference(tiny_lm_dir, tiny_lm_examples):
    """Scores of the plain RepSim class on 12 training rows and the query."""
    lm = load_lm(tiny_lm_dir, device="cpu", max_length=32)
    train = tiny_lm_examples[:12]
    return train, RepSim(lm, max_length=32, show_progress=False).score(train, [QUERY])[:, 0].numpy()


def test_registry_and_eval_build_repsim(tiny_lm_dir, reference):
    train, ref = reference
    lm = load_lm(tiny_lm_dir, device="cpu", max_length=32)
    method = load_method(MethodConfig(method="repsim", max_length=32), lm=lm)
    assert isinstance(method, RepSim)
    np.testing.assert_allclose(method.score(train, [QUERY])[:, 0].numpy(), ref, rtol=1e-5, atol=1e-6)
    ((label, adapter),) = build_methods(EvalConfig(methods=("repsim",)), lm=lm)
    adapter.prepare(train)
    assert label == "repsim"
    np.testing.assert_allclose(summed_scores(adapter, [QUERY])[:, 0], ref, rtol=1e-5, atol=1e-6)


def test_attribute_rerank_and_teacher_use_repsim(tmp_path, tiny_lm_dir, tiny_encoder_dir, reference):
    train, ref = reference  # the rows are shorter than 32 tokens: any max_length scores them alike
    corpus = write_rows(tmp_path / "train.jsonl", [e.to_row() for e in train])
    queries = write_rows(tmp_path / "q.jsonl", [QUERY.to_row()])
    lm = ("--lm", tiny_lm_dir, "--max-length", 32)
    out = run("attribute", "--corpus", corpus, "--queries", queries, "--method", "repsim", *lm,
              "--out", tmp_path / "a", "--k", 3, "--json")  # fmt: skip
    top = json.loads(out.stdout)["results"][0]["top"]
    assert [t["id"] for t in top] == [train[i].id for i in np.argsort(-ref, kind="stable")[:3]]

    run("index", corpus, "--db", tmp_path / "db", "--encoder", tiny_encoder_dir, "--batch-size", 8)
    out = run("query", "--db", tmp_path / "db", "--prompt", QUERY.prompt, "--response", QUERY.response,
              "-k", 3, "--rerank", "repsim", "--candidates", 6, "--lm", tiny_lm_dir, "--json")  # fmt: skip
    (res,) = json.loads(out.stdout)
    assert res["reranked_by"] == "repsim"
    by_id = {e.id: float(s) for e, s in zip(train, ref, strict=True)}
    scores = [c["score"] for c in res["proponents"]]
    assert scores == sorted(scores, reverse=True)
    assert scores == pytest.approx([by_id[c["id"]] for c in res["proponents"]], rel=1e-4, abs=1e-5)

    run("labels", "generate", corpus, "--teacher", "repsim", *lm, "--out", tmp_path / "t", "--splits", 1,
        "--dev-size", 3, "--pool-size", 8, "--subset-size", 3, "--subsets-per-split", 3)  # fmt: skip
    store = LabelStore.open(tmp_path / "t")
    assert store.teacher == "repsim" and store.progress().complete
