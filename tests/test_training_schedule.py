"""Training that stops on evidence (held-out LDS plateau or a cap), resumes after a kill, and the
frozen lower encoder (``--freeze-layers``) computing the same function as the full model."""

from __future__ import annotations

import json

import pytest
import torch
from airsearch.cli.main import app
from airsearch.trainers.encoder_training import TrainConfig, train_encoder
from airsearch.trainers.encoder_training.evaluate import heldout_lds, plateau
from airsearch.trainers.encoder_training.frozen import FrozenPrefix
from airsearch.trainers.encoder_training.trainer import disable_dropout
from click.testing import CliRunner

from airsearch.encoder import AirRepEncoder
from airsearch.errors import InputError
from tests.helpers.training import synthetic_labels, write_label_store


def _curve(*values: float) -> list[dict[str, float]]:
    return [{"step": 10 * i, "lds": v} for i, v in enumerate(values)]


def test_plateau_rule():
    assert plateau(_curve(0.3, 0.4, 0.5), patience=2, min_delta=0.01) is None  # still rising
    assert plateau(_curve(0.3, 0.5, 0.505, 0.49), patience=2, min_delta=0.01) == "plateau"
    assert plateau(_curve(0.3, 0.5, 0.49, 0.52), patience=2, min_delta=0.01) is None  # a late gain
    assert plateau(_curve(0.3, 0.2, 0.1), patience=2, min_delta=0.0) == "plateau"  # never above base
    assert plateau(_curve(0.3, 0.2, 0.1), patience=0, min_delta=0.0) is None  # patience 0: never
    assert plateau(_curve(0.3, 0.3), patience=2, min_delta=0.0) is None  # too few measurements


def _cfg(tmp_path, tiny_bert_dir, **kw) -> TrainConfig:
    fields = dict(
        out=str(tmp_path / "enc"),
        base_encoder=str(tiny_bert_dir),
        lr=1e-3,
        subsets_per_step=4,
        dev_per_step=4,
        holdout_splits=1,
        warmup_steps=0,
        seed=0,
        batch_size=8,
        device="cpu",
        checkpoint_every=1,
        eval_every=2,
        patience=2,
        max_steps=40,
    )
    return TrainConfig(**{**fields, **kw})


def test_training_stops_on_a_plateau_and_resumes_after_a_kill(tmp_path, tiny_bert_dir):
    splits, examples = synthetic_labels()
    # lr so small that held-out LDS cannot move: a plateau after `patience` measurements past the base
    cfg = _cfg(tmp_path / "a", tiny_bert_dir, lr=1e-12)
    full = train_encoder(cfg, splits=splits, examples=examples)
    assert full.stop_reason == "plateau" and full.steps == 4
    assert [p["step"] for p in full.lds_curve] == [0, 2, 4]
    assert full.seconds_per_step > 0 and full.best_step in (2, 4)

    killed = _cfg(tmp_path / "b", tiny_bert_dir, lr=1e-12)

    def kill(step: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_encoder(killed, splits=splits, examples=examples, on_step=kill)
    resumed = train_encoder(killed, splits=splits, examples=examples)
    assert resumed.resumed and resumed.stop_reason == "plateau" and resumed.steps == 4
    assert [p["lds"] for p in resumed.lds_curve] == pytest.approx([p["lds"] for p in full.lds_curve])
    assert resumed.encoder_fingerprint == full.encoder_fingerprint
    log = json.loads((tmp_path / "b" / "enc" / "training.json").read_text())
    assert (
        log["training"]["stop_reason"] == "plateau"
        and (tmp_path / "b" / "enc" / "training_curve.png").is_file()
    )


def test_training_stops_at_the_step_cap_when_lds_keeps_moving(tmp_path, tiny_bert_dir):
    splits, examples = synthetic_labels()
    result = train_encoder(
        _cfg(tmp_path, tiny_bert_dir, max_steps=5, patience=0), splits=splits, examples=examples
    )
    assert result.stop_reason == "max_steps" and result.steps == 5
    assert [p["step"] for p in result.lds_curve] == [0, 2, 4, 5]  # the cap step is measured too


def test_defaults_are_chosen_for_the_device_and_said():
    cpu, note = TrainConfig(out="o").with_step_sizes("cpu")
    gpu, _ = TrainConfig(out="o").with_step_sizes("cuda:0")
    assert (cpu.max_steps, cpu.eval_every, cpu.subsets_per_step) == (1000, 25, 8)
    assert (gpu.max_steps, gpu.eval_every, gpu.subsets_per_step, gpu.dev_per_step) == (2000, 50, 32, 1000)
    assert "max_steps 1000" in note and "a CPU" in note
    with pytest.raises(InputError) as err:
        TrainConfig(out="o", patience=-1)
    assert err.value.field == "patience"


def test_train_help_shows_the_stopping_options():
    out = CliRunner().invoke(app, ["train", "--help"]).output
    for flag in ("--patience", "--max-steps", "--eval-every", "--min-delta", "--freeze-layers"):
        assert flag in out


def test_frozen_prefix_computes_the_full_model_and_its_gradients(tiny_bert_dir):
    splits, examples = synthetic_labels()
    enc = AirRepEncoder.from_base(str(tiny_bert_dir), device="cpu")
    disable_dropout(enc.model)
    ids = enc.input_ids(list(examples.values())[:6])
    full = enc.forward_ids(ids)
    full.sum().backward()
    reference = {n: p.grad.clone() for n, p in enc.model.named_parameters() if p.grad is not None}
    enc.model.zero_grad(set_to_none=True)
    frozen = FrozenPrefix(enc, 1)
    got = frozen.forward_ids(ids)
    torch.testing.assert_close(got, full, rtol=1e-5, atol=1e-6)
    got.sum().backward()
    trained = {n: p.grad for n, p in enc.model.named_parameters() if p.grad is not None}
    assert trained and all("layer.0." not in n and "embeddings" not in n for n in trained)
    for name, grad in trained.items():
        torch.testing.assert_close(grad, reference[name], rtol=1e-4, atol=1e-6)
    assert len(frozen.cache) == len(set(ids))
    with pytest.raises(InputError, match="layers"):
        FrozenPrefix(enc, 99)


def test_training_with_frozen_layers_keeps_them_and_saves_the_full_model(tmp_path, tiny_bert_dir):
    splits, examples = synthetic_labels(n_splits=5, subsets=8, n_dev=10, seed=0)
    cfg = _cfg(
        tmp_path, tiny_bert_dir, freeze_layers=1, lr=3e-3, subsets_per_step=8, dev_per_step=10,
        batch_size=16, max_steps=24, eval_every=4, patience=0, checkpoint_every=100,
    )  # fmt: skip
    result = train_encoder(cfg, splits=splits, examples=examples)
    base = AirRepEncoder.from_base(str(tiny_bert_dir), device="cpu").model.state_dict()
    trained = AirRepEncoder.load(result.out, device="cpu").model.state_dict()
    lower = [k for k in base if "embeddings" in k or ".layer.0." in k]
    upper = [k for k in base if ".layer.1." in k]
    assert lower and upper
    assert all(torch.equal(base[k], trained[k]) for k in lower)
    assert any(not torch.equal(base[k], trained[k]) for k in upper)
    # the saved encoder is the ordinary full model: it reproduces the best step's held-out LDS
    reloaded = AirRepEncoder.load(result.out, device="cpu")
    assert heldout_lds(reloaded, [splits[-1]], examples)["lds"] == pytest.approx(result.best_lds, abs=1e-6)


def test_two_processes_train_the_encoder_one_process_trains(tmp_path, tiny_bert_dir):
    """torchrun with 2 CPU processes (gloo) and the same global step sizes gives the same encoder."""
    import os
    import socket
    import subprocess
    import sys

    splits, examples = synthetic_labels()
    store = write_label_store(tmp_path / "labels", splits, examples)
    args = [
        "train", "--labels", store, "--base-encoder", str(tiny_bert_dir), "--lr", "1e-3",
        "--subsets-per-step", "4", "--dev-per-step", "4", "--holdout-splits", "1", "--device", "cpu",
        "--batch-size", "3", "--max-steps", "4", "--eval-every", "2", "--patience", "0", "--json",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "airsearch.cli.main", *args, "--out", str(tmp_path / "one")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-2000:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "airsearch.cli.main",
    ]  # fmt: skip
    double = subprocess.run(
        [*launcher, *args, "--out", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert double.returncode == 0, double.stderr[-3000:]
    assert json.loads(double.stdout)["processes"] == 2 and json.loads(single.stdout)["processes"] == 1
    one = AirRepEncoder.load(tmp_path / "one", device="cpu").model.state_dict()
    two = AirRepEncoder.load(tmp_path / "two", device="cpu").model.state_dict()
    base = AirRepEncoder.from_base(str(tiny_bert_dir), device="cpu").model.state_dict()
    assert any(not torch.allclose(one[k], base[k]) for k in one)  # it trained
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-5, msg=k)
    a = json.loads((tmp_path / "one" / "training.json").read_text())["result"]
    b = json.loads((tmp_path / "two" / "training.json").read_text())["result"]
    assert [p["lds"] for p in b["lds_curve"]] == pytest.approx([p["lds"] for p in a["lds_curve"]], abs=1e-4)
