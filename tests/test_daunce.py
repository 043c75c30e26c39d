"""Daunce: Eq. 5's gradient at th0, scores vs numpy corrcoef/cov, the resumable K-model run, black box."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from airsearch.trainers.daunce import DaunceConfig, run_daunce

from airsearch.errors import FingerprintMismatch
from airsearch.lm import encode_examples, load_lm
from airsearch.lm.finetune import FinetuneConfig
from airsearch.methods.daunce import (
    Daunce,
    LocalFinetuneFactory,
    blackbox_providers,
    daunce_scores,
    example_xi,
    logit_grad_of_mean_nll,
    perturbed_objective,
)
from tests.helpers.grads import loop_grads
from tests.helpers.models import build_micro_lm, make_examples


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    return build_micro_lm(tmp_path_factory.mktemp("micro") / "lm")


def test_logit_gradient_is_autograd_of_mean_nll():
    from airsearch.lm import masked_token_nll

    logits = torch.randn(2, 5, 7, requires_grad=True)
    labels = torch.tensor([[-100, 3, 1, -100, -100], [-100, -100, 2, 6, 0]])
    masked_token_nll(logits, labels, "mean").sum().backward()
    torch.testing.assert_close(logit_grad_of_mean_nll(logits.detach(), labels), logits.grad)


def test_objective_gradient_at_theta0_is_signed_mix_of_example_gradients(lm_dir):
    """grad J(th0) = mean_i -rho (2 xi_i - 1) grad L_i (the paper's derivation), checked numerically."""
    lm = load_lm(lm_dir, device="cpu")
    examples = make_examples(4, seed=9)
    enc = encode_examples(lm, examples)
    xi = torch.tensor([0.1, 0.9, 0.5, 0.3])
    rho = 0.8
    model = lm.model
    names = [n for n, _ in model.named_parameters()]
    out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    j = perturbed_objective(out, out.detach(), enc["labels"], xi, rho)
    assert abs(j.item()) < 1e-6  # J(th0) = 0
    params = dict(model.named_parameters())
    got = torch.cat([g.reshape(-1) for g in torch.autograd.grad(j, [params[n] for n in names])])
    per_ex = loop_grads(model, names, enc)
    expected = (-(rho * (2 * xi - 1))[:, None] * per_ex).mean(0)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)


def test_scores_equal_numpy_corrcoef_and_cov():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(9, 5)), rng.normal(size=(9, 3))
    full = np.concatenate([train, test], axis=1)
    np.testing.assert_allclose(daunce_scores(train, test, "corr"), np.corrcoef(full.T)[:5, 5:], atol=1e-12)
    np.testing.assert_allclose(daunce_scores(train, test, "cov"), np.cov(full.T)[:5, 5:], atol=1e-12)


def test_xi_is_seeded_per_example():
    a = example_xi(0, 3, ["a", "b", "c"])
    assert np.all((a > 0) & (a < 1)) and len(set(a)) == 3
    np.testing.assert_array_equal(example_xi(0, 3, ["c", "a"]), a[[2, 0]])
    assert not np.allclose(example_xi(0, 4, ["a"]), a[:1])


def test_white_box_run_is_resumable_and_scores_match_recorded_losses(lm_dir, tmp_path):
    train, test = make_examples(8, "tr", seed=3), make_examples(2, "te", seed=4)
    cfg = DaunceConfig(
        models=3,
        ratio=0.5,
        steps=3,
        lr=1e-2,
        batch_size=2,
        lora_rank=2,
        lora_dropout=0.0,
        max_length=64,
        seed=1,
    )
    out = tmp_path / "daunce"
    run = run_daunce(str(lm_dir), train, test, cfg.replace(models=2), out, quiet=True)
    assert run.losses.shape == (2, 10)
    run = run_daunce(str(lm_dir), train, test, cfg, out, quiet=True)  # resumes: 2 done, 1 new
    assert run.losses.shape == (3, 10) and run.n_train == 8
    # models differ from each other (perturbed) and from th0
    assert np.std(run.losses, axis=0).max() > 0
    method = run.method("corr")
    full = np.concatenate([run.train_losses, run.test_losses], axis=1)
    np.testing.assert_allclose(method.score(train, test).numpy(), np.corrcoef(full.T)[:8, 8:], atol=1e-5)
    cov = run.method("cov").score(train, test).numpy()
    np.testing.assert_allclose(cov, np.cov(full.T)[:8, 8:], atol=1e-6)
    # a new query is scored live under the saved adapters, equal to its recorded loss when recorded
    live = run.method("corr", lm=load_lm(lm_dir, device="cpu"))
    k_losses = live.loss_matrix(
        [test[0].__class__(id="new", prompt=test[0].prompt, response=test[0].response)]
    )
    np.testing.assert_allclose(k_losses[:, 0], run.test_losses[:, 0], rtol=1e-4)
    with pytest.raises(FingerprintMismatch):
        run_daunce(str(lm_dir), train, test[:1], cfg, out, quiet=True)


def test_black_box_local_providers(lm_dir):
    lm = load_lm(lm_dir, device="cpu")
    train, test = make_examples(6, "tr", seed=3), make_examples(2, "te", seed=4)
    factory = LocalFinetuneFactory(lm, FinetuneConfig(epochs=1, lr=1e-2, batch_size=2, max_length=64))
    providers = blackbox_providers(factory, train, k=3, ratio=0.5, seed=0)
    m = Daunce(providers)
    mtr, mte = m.loss_matrix(train), m.loss_matrix(test)
    np.testing.assert_allclose(m.score(train, test).numpy(), daunce_scores(mtr, mte), atol=1e-5)


def test_registry_reads_a_finished_run_and_old_run_configs(lm_dir, tmp_path):
    """The core registry builds Daunce from a run folder; a run saved as `lora_r` still loads."""
    import json

    from airsearch.methods.registry import MethodConfig, load_method

    train, test = make_examples(6, "tr", seed=5), make_examples(2, "te", seed=6)
    cfg = DaunceConfig(models=2, steps=2, lr=1e-2, batch_size=2, lora_rank=2, max_length=64, seed=2)
    out = tmp_path / "daunce"
    run = run_daunce(str(lm_dir), train, test, cfg, out, quiet=True)
    method = load_method(MethodConfig(method="daunce", daunce_run=str(out), daunce_kind="cov"))
    np.testing.assert_allclose(
        method.score(train, test).numpy(), run.method("cov").score(train, test).numpy(), atol=1e-6
    )
    manifest_path = out / "daunce_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["config"]["lora_r"] = manifest["config"].pop("lora_rank")
    manifest_path.write_text(json.dumps(manifest))
    with pytest.warns(DeprecationWarning, match="'lora_r' is now called 'lora_rank'"):
        again = run_daunce(str(lm_dir), train, test, cfg, out, quiet=True)  # resumes: nothing to do
    assert again.config.lora_rank == 2 and np.array_equal(again.losses, run.losses)
