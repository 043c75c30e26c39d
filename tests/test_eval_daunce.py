"""Daunce in the evaluation harness: the black-box adapter against numpy, and `eval lds|classify`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from airsearch.trainers.evaluation.methods import Method

from airsearch.data.corpus import write_rows
from airsearch.data.example import Example
from airsearch.lm import example_losses, load_lm
from airsearch.lm.finetune import FinetuneConfig
from airsearch.methods.daunce import Daunce, LocalFinetuneFactory, RecordedLosses, blackbox_providers
from airsearch.methods.registry import MethodConfig
from tests.helpers.cli import run


@pytest.fixture(scope="module")
def rows(tiny_lm_examples):
    """The tiny LM's question rows with the asked-about thing as a label."""
    return [
        Example(e.id, e.prompt, e.response, {"task": e.prompt.split()[-1].rstrip("?")})
        for e in tiny_lm_examples
        if e.prompt
    ]


def test_daunce_adapter_equals_correlation_of_blackbox_losses(tiny_lm_dir, rows):
    lm = load_lm(str(tiny_lm_dir), device="cpu")
    train, test = rows[:10], rows[40:43]
    cfg = MethodConfig(method="daunce", seed=3, daunce_models=3, daunce_lr=5e-3, batch_size=4)
    m = Method(cfg, lm=lm)  # built by the registry in prepare: black-box fits on the train set
    m.prepare(train)
    got = np.concatenate([b for _, b in m.score_blocks(test, block_size=4)])
    # plain reference: refit the K models, record losses, numpy's Pearson correlation across models
    factory = LocalFinetuneFactory(lm, FinetuneConfig(epochs=1, lr=5e-3, batch_size=4, seed=3))
    providers = blackbox_providers(factory, train, 3, 0.5, 3)
    losses = np.stack([example_losses(p.lm, train + test, show_progress=False) for p in providers])
    ref = np.corrcoef(losses.T)[: len(train), len(train) :]
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)
    assert m.describe()["settings"]["models"] == 3 and m.impl.model_fingerprint == lm.fingerprint
    assert m.fingerprint() == m.impl.fingerprint()  # the fingerprint of its vectors (their manifest)

    # an already-built method (e.g. a white-box airsearch.trainers.daunce run) is used as given
    recorded = np.random.default_rng(0).normal(size=(4, len(train) + len(test)))
    ids = [e.id for e in train + test]
    given = Daunce([RecordedLosses(dict(zip(ids, r, strict=True))) for r in recorded], kind="cov")
    m2 = Method(given)
    m2.prepare(train)
    got2 = np.concatenate([b for _, b in m2.score_blocks(test)])
    np.testing.assert_allclose(got2, np.cov(recorded.T)[: len(train), len(train) :], rtol=1e-4, atol=1e-6)


def test_eval_lds_and_classify_with_daunce(tmp_path, tiny_lm_dir, rows):
    corpus = write_rows(tmp_path / "train.jsonl", [e.to_row() for e in rows[:16]])
    queries = write_rows(tmp_path / "q.jsonl", [e.to_row() for e in rows[40:44]])
    common = ("--lm", tiny_lm_dir, "--daunce-models", 3, "--json")
    res = json.loads(
        run(
            "eval", "classify", "--corpus", corpus, "--queries", queries, "--k", 3, "--method", "daunce",
            "--method", "random", "--out", tmp_path / "cls", *common,
        ).stdout
    )  # fmt: skip
    assert set(res["methods"]) == {"daunce-bb", "random"}  # the row says which Daunce ran
    assert 0.0 <= res["methods"]["daunce-bb"]["top1"] <= 1.0

    gold = tmp_path / "gold"
    run(
        "labels", "generate", corpus, "--lm", tiny_lm_dir, "--out", gold, "--splits", 1, "--dev-size", 3,
        "--pool-size", 8, "--subset-size", 3, "--subsets-per-split", 3, "--epochs", 1, "--lr", 1e-3,
        "--max-length", 32,
    )  # fmt: skip
    lds = json.loads(
        run(
            "eval", "lds", "--gold", gold, "--corpus", corpus, "--method", "daunce", "--method", "daunce-wb",
            "--bootstrap", 20, "--out", tmp_path / "lds", *common,
        ).stdout
    )  # fmt: skip
    for name in ("daunce-bb", "daunce-wb"):
        d = lds["methods"][name]
        assert d["aggregation"] == "sum" and d["lds"]["n"] == 3
        assert d["cost"]["storage_bytes_per_train_example"] == 3 * 4  # K floats per training example
    # white-box Daunce (Eq. 5) was trained on the training rows, with the gold's token budget
    (wb,) = (tmp_path / "lds" / "work").glob("daunce-wb-*")
    manifest = json.loads((wb / "daunce_manifest.json").read_text())
    assert manifest["config"]["max_length"] == 32 and manifest["n_train"] == lds["gold"]["n_train"]

    bad = run("eval", "classify", "--corpus", corpus, "--queries", queries, "--method", "daunce", ok=False)
    assert bad.exit_code == 2 and "--lm" in bad.output and "Traceback" not in bad.output
