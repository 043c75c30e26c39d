"""Gradient teacher labels through the CLI: `labels generate --teacher` -> `train` -> `labels info`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from airsearch.trainers.labels import LabelStore

from airsearch.data.corpus import write_rows
from airsearch.encoder import AirRepEncoder
from airsearch.lm import load_lm
from airsearch.lm.finetune import FinetuneConfig, finetune
from airsearch.lm.model import save_lm
from airsearch.methods.tracin import TracIn
from tests.helpers.cli import run

SIZES = ("--splits", 2, "--dev-size", 3, "--pool-size", 8, "--subset-size", 3,
         "--subsets-per-split", 3, "--max-length", 32)  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_lm_examples):
    path = tmp_path_factory.mktemp("teacher") / "corpus.jsonl"
    return write_rows(path, [e.to_row() for e in tiny_lm_examples[:24]])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_lm_dir, tiny_lm_examples):
    """Two epochs' checkpoints of a short fine-tune of the tiny LM (DDA's th_1, th_2)."""
    root = tmp_path_factory.mktemp("cks")
    paths = []
    finetune(
        load_lm(str(tiny_lm_dir), device="cpu"),
        tiny_lm_examples[30:38],
        FinetuneConfig(epochs=2, lr=5e-3, batch_size=4, max_length=32),
        on_epoch_end=lambda e, lm: paths.append(save_lm(lm, root / f"ck{e}")),
        show_progress=False,
    )
    return paths


def generate(corpus, lm_dir, out, *extra):
    args = ("labels", "generate", corpus, "--lm", lm_dir, "--out", out, *SIZES, *extra, "--json")
    return json.loads(run(*args).stdout)


def test_gradcos_teacher_labels_round_trip_through_train(tmp_path, corpus, tiny_lm_dir, tiny_bert_dir):
    labels = tmp_path / "labels"
    summary = generate(corpus, tiny_lm_dir, labels, "--teacher", "gradcos")
    assert summary["teacher"] == "gradcos" and summary["done_jobs"] == summary["total_jobs"] == 6
    info = json.loads(run("labels", "info", labels, "--json").stdout)
    assert info["teacher"] == "gradcos" and info["progress"]["complete"]
    assert info["config"]["teacher"] == "gradcos"

    enc_dir = tmp_path / "enc"
    out = run(
        "train", "--labels", labels, "--out", enc_dir, "--base-encoder", tiny_bert_dir, "--epochs", 1,
        "--subsets-per-step", 2, "--dev-per-step", 3, "--holdout-splits", 1, "--batch-size", 8,
        "--device", "cpu", "--json",
    )  # fmt: skip
    result = json.loads(out.stdout)
    assert result["stop_reason"] == "epochs" and result["steps"] >= 1 and result["heldout_splits"]
    enc = AirRepEncoder.load(str(enc_dir), device="cpu")
    assert enc.info.trained and enc.info.training["labels"]["manifest"]["teacher"] == "gradcos"
    assert enc.encode_texts(["a b c"]).shape == (1, enc.dim)


def _unit_scores(lm, train, test):
    return TracIn([lm], normalize=True, show_progress=False).score(train, test).double().numpy()


def test_dda_teacher_uses_given_checkpoints_and_base_model(tmp_path, corpus, tiny_lm_dir, checkpoints):
    single = generate(corpus, tiny_lm_dir, tmp_path / "single", "--teacher", "dda")
    full_args = ["--teacher", "dda", "--teacher-base-lm", tiny_lm_dir]
    for ck in checkpoints:
        full_args += ["--teacher-checkpoint", ck]
    full = generate(corpus, tiny_lm_dir, tmp_path / "full", *full_args)
    assert single["teacher"] == full["teacher"] == "dda"
    info = json.loads(run("labels", "info", tmp_path / "full", "--json").stdout)
    assert info["config"]["teacher_checkpoints"] == [str(c) for c in checkpoints]
    assert info["config"]["teacher_base_lm"] == str(tiny_lm_dir)

    a, b = LabelStore.open(tmp_path / "single").splits(), LabelStore.open(tmp_path / "full").splits()
    assert not np.allclose(a[0].losses, b[0].losses)

    # explicit DDA (methods.md §3): mean over checkpoints of grad-cos minus beta=1 x the base's grad-cos
    store = LabelStore.open(tmp_path / "full")
    by_id = store.examples()
    split = b[0]
    dev = [by_id[i] for i in split.dev_ids]
    members = [by_id[i] for i in split.members[0]]
    cks = [load_lm(str(c), device="cpu") for c in checkpoints]
    dda = sum(_unit_scores(c, members, dev) for c in cks) / len(cks)
    dda -= _unit_scores(load_lm(str(tiny_lm_dir), device="cpu"), members, dev)
    np.testing.assert_allclose(split.losses[0], -dda.sum(0), rtol=1e-4, atol=1e-6)


def test_teacher_options_refused_where_they_do_not_apply(tmp_path, corpus, tiny_lm_dir):
    bad = run(
        "labels", "generate", corpus, "--lm", tiny_lm_dir, "--out", tmp_path / "x", *SIZES,
        "--teacher", "haif", "--teacher-base-lm", tiny_lm_dir, ok=False,
    )  # fmt: skip
    assert bad.exit_code == 2 and "option '--teacher-base-lm'" in bad.output and "Traceback" not in bad.output
