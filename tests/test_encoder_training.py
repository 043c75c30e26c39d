"""Encoder training (methods.md §1, Eq. 9): loss vs a pairwise reference, two-pass == single-pass
gradient, resume == uninterrupted, round trips of the trained encoder, and a learnable label set."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from airsearch.cli.main import app
from airsearch.trainers.encoder_training import (
    TrainConfig,
    heldout_lds,
    pairwise_rank_loss,
    single_pass_backward,
    train_encoder,
    two_pass_backward,
)
from airsearch.trainers.encoder_training.data import labels_fingerprint
from airsearch.trainers.encoder_training.trainer import _Run, disable_dropout
from click.testing import CliRunner
from sentence_transformers import SentenceTransformer

from airsearch.data.corpus import write_rows
from airsearch.encoder import AirRepEncoder
from airsearch.errors import InputError
from tests.helpers.training import synthetic_labels, write_label_store


@pytest.fixture(scope="module")
def labels():
    return synthetic_labels()


def small_cfg(tmp_path, tiny_bert_dir, **kw) -> TrainConfig:
    base = dict(
        out=str(tmp_path / "enc"),
        base_encoder=str(tiny_bert_dir),
        epochs=2,
        lr=1e-3,
        subsets_per_step=4,
        dev_per_step=4,
        holdout_splits=1,
        warmup_steps=2,
        seed=0,
        batch_size=8,
        device="cpu",
        checkpoint_every=2,
        eval_every=3,  # once per epoch (3 training splits)
    )
    base.update(kw)
    return TrainConfig(**base)


# ----------------------------------------------------------------------------- loss
def reference_loss(scores: np.ndarray, targets: np.ndarray) -> float:
    terms = []
    k, d = scores.shape
    for z in range(d):
        for j in range(k):
            for i in range(k):
                if targets[j, z] > targets[i, z]:
                    w = min(max(abs(targets[j, z] - targets[i, z]), 0.0), 10.0)
                    x = scores[j, z] - scores[i, z]
                    terms.append(w * math.log1p(math.exp(-x)))
    return sum(terms) / len(terms)


def test_loss_matches_pairwise_reference_and_torch_bce():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5, 7)) * 3
    targets = np.clip(rng.normal(size=(5, 7)) * 6, -10, 10)
    targets[1, 2] = targets[3, 2]  # a tie forms no pair
    got = pairwise_rank_loss(torch.tensor(scores), torch.tensor(targets)).item()
    assert got == pytest.approx(reference_loss(scores, targets), rel=1e-10)
    # the same as torch's BCEWithLogitsLoss(weight=w) over the pair list
    s, y = torch.tensor(scores), torch.tensor(targets)
    pairs = [(j, i, z) for z in range(7) for j in range(5) for i in range(5) if y[j, z] > y[i, z]]
    x = torch.stack([s[j, z] - s[i, z] for j, i, z in pairs])
    w = torch.stack([(y[j, z] - y[i, z]).clamp(0, 10) for j, i, z in pairs])
    bce = torch.nn.BCEWithLogitsLoss(weight=w)(x, torch.ones_like(x))
    assert got == pytest.approx(bce.item(), rel=1e-10)


def test_loss_without_pairs_is_zero_with_gradient():
    scores = torch.randn(3, 2, requires_grad=True)
    loss = pairwise_rank_loss(scores, torch.zeros(3, 2))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(scores.grad, torch.zeros(3, 2))


# ----------------------------------------------------------------------------- two-pass gradient
def test_two_pass_gradient_equals_single_pass(tiny_bert_dir, labels):
    splits, examples = labels
    split = splits[0]
    torch.manual_seed(0)
    enc = AirRepEncoder.from_base(str(tiny_bert_dir), device="cpu")
    with torch.no_grad():  # a non-identity projection so every parameter path matters
        enc.model.projector.weight.add_(0.1 * torch.randn_like(enc.model.projector.weight))
    enc.model.double()  # float64 so that the only differences are rounding far below the tolerance
    disable_dropout(enc.model)
    members = [enc.input_ids([examples[i] for i in m]) for m in split.members]  # subsets share members
    dev = enc.input_ids([examples[i] for i in split.dev_ids])
    targets = torch.tensor(split.targets(), dtype=torch.float32)

    enc.model.zero_grad()
    loss_ref = single_pass_backward(enc, members, dev, targets)
    ref = {n: p.grad.clone() for n, p in enc.model.named_parameters() if p.grad is not None}
    enc.model.zero_grad(set_to_none=True)
    loss_two = two_pass_backward(enc, members, dev, targets, batch_size=3)  # several chunks
    got = {n: p.grad.clone() for n, p in enc.model.named_parameters() if p.grad is not None}

    assert loss_two == pytest.approx(loss_ref, rel=1e-10)
    assert set(got) == set(ref) and len(ref) > 10
    for name in ref:
        assert torch.allclose(got[name], ref[name], rtol=1e-7, atol=1e-12), name
    assert any(g.abs().sum() > 0 for g in ref.values())


# ----------------------------------------------------------------------------- training runs
def _weights(path) -> dict[str, torch.Tensor]:
    return AirRepEncoder.load(path, device="cpu").model.state_dict()


def test_resume_after_interruption_gives_same_weights(tmp_path, tiny_bert_dir, labels):
    splits, examples = labels
    full = train_encoder(small_cfg(tmp_path / "a", tiny_bert_dir), splits=splits, examples=examples)
    assert full.steps == 6 and full.stop_reason == "epochs" and not full.resumed

    cfg = small_cfg(tmp_path / "b", tiny_bert_dir)

    def stop(step: int, loss: float) -> None:
        if step == 5:  # the last checkpoint is at step 4: step 5 is redone after the resume
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_encoder(cfg, splits=splits, examples=examples, on_step=stop)
    assert (tmp_path / "b" / "enc" / "checkpoints" / "last" / "state.json").exists()
    resumed = train_encoder(cfg.replace(batch_size=5), splits=splits, examples=examples)
    assert resumed.resumed and resumed.steps == 6
    a, b = _weights(full.out), _weights(resumed.out)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert [p["step"] for p in resumed.lds_curve] == [p["step"] for p in full.lds_curve] == [0, 3, 6]
    assert [p["lds"] for p in resumed.lds_curve] == pytest.approx(
        [p["lds"] for p in full.lds_curve], abs=1e-6
    )
    # a finished run is reported, not redone; a different run is refused
    again = train_encoder(cfg, splits=splits, examples=examples)
    assert again.already_complete and again.encoder_fingerprint == resumed.encoder_fingerprint
    with pytest.raises(InputError, match="different training run.*lr"):
        train_encoder(cfg.replace(lr=5e-4), splits=splits, examples=examples)
    with pytest.raises(InputError, match="labels"):
        train_encoder(cfg, splits=synthetic_labels(seed=1)[0], examples=synthetic_labels(seed=1)[1])


def test_crash_after_the_last_epoch_resumes_to_the_same_result(tmp_path, tiny_bert_dir, labels, monkeypatch):
    splits, examples = labels
    cfg = small_cfg(tmp_path, tiny_bert_dir, epochs=1)
    finish = _Run._finish

    def crash(self):
        raise RuntimeError("killed before the output folder was finalised")

    monkeypatch.setattr(_Run, "_finish", crash)
    with pytest.raises(RuntimeError, match="killed"):
        train_encoder(cfg, splits=splits, examples=examples)
    monkeypatch.setattr(_Run, "_finish", finish)
    result = train_encoder(cfg, splits=splits, examples=examples)
    assert result.resumed and result.steps == 3 and result.stop_reason == "epochs"
    reference = train_encoder(
        small_cfg(tmp_path / "ref", tiny_bert_dir, epochs=1), splits=splits, examples=examples
    )
    assert result.encoder_fingerprint == reference.encoder_fingerprint


def test_refuses_foreign_out_folder(tmp_path, tiny_bert_dir, labels):
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds no airsearch training run"):
        train_encoder(small_cfg(tmp_path, tiny_bert_dir), splits=labels[0], examples=labels[1])


def test_cli_trains_from_a_label_store_and_the_encoder_round_trips(tmp_path, tiny_bert_dir, labels):
    splits, examples = labels
    store = write_label_store(tmp_path / "labels", splits, examples)
    out = tmp_path / "enc"
    args = [
        "train",
        "--labels",
        store,
        "--out",
        str(out),
        "--base-encoder",
        str(tiny_bert_dir),
        "--epochs",
        "1",
        "--lr",
        "1e-3",
        "--subsets-per-step",
        "4",
        "--dev-per-step",
        "4",
        "--holdout-splits",
        "1",
        "--device",
        "cpu",
        "--batch-size",
        "8",
    ]
    run = CliRunner().invoke(app, [*args, "--json"])
    assert run.exit_code == 0, run.output
    result = json.loads(run.stdout)
    assert result["steps"] == 3 and result["heldout_splits"] == [3]
    # labels read from the store train exactly what the same labels in memory train
    assert result["labels_fingerprint"] == labels_fingerprint(splits)

    assert sorted(p.name for p in out.iterdir() if p.name.startswith(("training", "train_"))) == [
        "train_config.json",
        "training.json",
        "training_curve.png",
    ]
    assert not (out / "checkpoints").exists()
    enc = AirRepEncoder.load(out, device="cpu")
    assert enc.info.trained and enc.info.training["best_step"] == 3
    assert enc.info.training["labels"]["fingerprint"] == result["labels_fingerprint"]
    assert enc.info.training["labels"]["manifest"]["teacher"] == "synthetic"
    assert enc.info.training["heldout_lds"] == pytest.approx(result["best_lds"])
    assert enc.fingerprint == result["encoder_fingerprint"]
    texts = [enc.text(examples[i]) for i in splits[0].dev_ids]
    st = SentenceTransformer(str(out), device="cpu")
    assert np.allclose(st.encode(texts), enc.encode_texts(texts), atol=1e-5)
    base = AirRepEncoder.from_base(str(tiny_bert_dir), device="cpu")
    assert not np.allclose(enc.encode_texts(texts), base.encode_texts(texts))
    log = json.loads((out / "training.json").read_text())
    assert log["complete"] and len(log["losses"]) == 3 and [h["step"] for h in log["lds"]] == [0, 3]

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "already trained" in again.stdout
    refused = CliRunner().invoke(app, [*args[:-2], "--batch-size", "8", "--seed", "1"])
    assert refused.exit_code == 2 and "different training run" in refused.output

    corpus = tmp_path / "corpus.jsonl"
    write_rows(corpus, list(examples.values())[:20])
    index = CliRunner().invoke(
        app, ["index", str(corpus), "--db", str(tmp_path / "db"), "--encoder", str(out), "--json"]
    )
    assert index.exit_code == 0, index.output
    summary = json.loads(index.stdout)
    assert summary["rows_total"] == 20 and summary["encoder_fingerprint"] == enc.fingerprint


def test_training_on_learnable_labels_raises_heldout_lds(tmp_path, tiny_bert_dir):
    splits, examples = synthetic_labels(n_splits=5, subsets=8, n_dev=10, seed=0)
    cfg = small_cfg(
        tmp_path,
        tiny_bert_dir,
        epochs=6,
        subsets_per_step=8,
        dev_per_step=10,
        lr=3e-3,
        batch_size=16,
        checkpoint_every=100,
    )
    result = train_encoder(cfg, splits=splits, examples=examples)
    assert result.heldout_splits == [4] and result.train_splits == [0, 1, 2, 3]
    enc = AirRepEncoder.load(result.out, device="cpu")
    assert heldout_lds(enc, [splits[-1]], examples)["lds"] == pytest.approx(result.best_lds, abs=1e-6)
    assert result.best_lds > result.base_lds + 0.15, result.lds_curve


def test_step_sizes_are_capped_at_what_the_splits_hold(tmp_path, tiny_bert_dir, labels):
    """Issue 28: on splits of 6 subsets x 6 dev rows, the CPU defaults (8 x 128) are capped to 6 x 6,
    the run uses and records 6 x 6, and the note says what was capped and why."""
    splits, examples = labels
    cfg = small_cfg(tmp_path, tiny_bert_dir, epochs=1, subsets_per_step=None, dev_per_step=None)
    result = train_encoder(cfg, splits=splits, examples=examples)
    assert "dev_per_step 128 capped at 6: the largest training split holds 6" in result.step_sizes
    assert "subsets_per_step 8 capped at 6" in result.step_sizes
    saved = json.loads((tmp_path / "enc" / "train_config.json").read_text())["config"]
    assert (saved["subsets_per_step"], saved["dev_per_step"]) == (6, 6)
    given, note = cfg.replace(dev_per_step=50, subsets_per_step=3).with_step_sizes("cpu", (6, 6))
    assert (given.subsets_per_step, given.dev_per_step) == (3, 6) and note == (
        "max_steps 1000: the defaults on a CPU; dev_per_step 50 capped at 6: the largest training split holds 6"
    )


def test_train_recommends_only_an_encoder_that_beat_its_base():
    from airsearch.cli.train_cmd import _human
    from airsearch.trainers.encoder_training.config import TrainResult

    def result(base: float, best: float, heldout: list[int]) -> str:
        return _human(
            TrainResult(
                out="runs/airrep",
                steps=3,
                stop_reason="plateau",
                base_lds=base,
                best_lds=best,
                best_step=1,
                lds_curve=[],
                final_loss=0.5,
                seconds=1.0,
                seconds_per_step=0.3,
                train_splits=[0],
                heldout_splits=heldout,
                labels_fingerprint="l",
                encoder_fingerprint="e",
            )  # fmt: skip
        )

    worse = result(0.0214, -0.0000, [3])
    assert (
        "did not beat the base encoder" in worse and "do not use it" in worse and "use it with" not in worse
    )
    better = result(0.02, 0.05, [3])
    assert "use it with    airsearch index CORPUS --db DIR --encoder runs/airrep" in better
    assert "do not use it" not in better
    unmeasured = result(float("nan"), float("nan"), [])
    assert "try it with" in unmeasured and "not measured against its base" in unmeasured
