"""Method specs with options (``dda:beta=0``): parsing, refusals, and the scores they produce."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from airsearch.trainers.evaluation.common import EvalConfig, build_methods
from airsearch.trainers.evaluation.methods import summed_scores
from airsearch.trainers.evaluation.specs import method_config, method_spec_options, run_label

from airsearch.errors import InputError
from airsearch.lm import encode_examples, load_lm
from tests.helpers.grads import loop_grads


def test_spec_options_parse_and_refuse():
    assert method_spec_options("dda") == {}
    assert method_spec_options("dda:beta=0") == {"beta": 0.0}
    assert method_spec_options("dda:beta=0.5") == {"beta": 0.5}
    with pytest.raises(InputError, match="unknown option 'gamma=1'.*beta="):
        method_spec_options("dda:gamma=1")
    with pytest.raises(InputError, match="beta must be a float, got 'x'"):
        method_spec_options("dda:beta=x")
    with pytest.raises(InputError, match="options of 'random': none"):
        method_spec_options("random:beta=0")
    with pytest.raises(
        InputError, match="options of 'tracin': proj_dim=..., params=..., lora_rank=..., precondition=..."
    ):
        method_spec_options("tracin:beta=0")
    assert method_spec_options("dda:beta=0.5,debias=eq9") == {"beta": 0.5, "debias": "eq9"}
    assert method_spec_options("gradcos:proj_dim=384,params=lora") == {"proj_dim": 384, "params": "lora"}
    assert method_spec_options("bm25:text=response") == {"text": "response"}
    with pytest.raises(InputError, match="text must be one of"):
        method_spec_options("bm25:text=prompt")
    with pytest.raises(InputError, match="params must be one of"):
        method_spec_options("tracin:params=names:mlp")
    assert method_spec_options("gradcos:precondition=ekfac,damping=0.01") == {
        "precondition": "ekfac",
        "damping": 0.01,
    }
    with pytest.raises(InputError, match="precondition must be one of"):
        method_spec_options("tracin:precondition=shampoo")


def test_row_names_say_what_ran():
    """Row names: checkpoints the gradients were taken on, DDA's beta and reading, parameters and
    projection, Daunce's variant; a spec that runs the same as another is refused."""
    cfg = EvalConfig(
        methods=("dda:beta=0.5,debias=eq9",), lm="lm", proj_dim=2048, daunce_run=None, params="all"
    )

    def label(spec: str, **kw) -> str:
        name = spec.partition(":")[0]
        mcfg = None if name in ("airrep", "base", "bm25", "random") else method_config(cfg, spec)
        return run_label(spec, cfg, mcfg, **kw)

    assert label("tracin") == "tracin@1ckpt:proj_dim=2048"
    assert label("tracin", n_checkpoints=5) == "tracin@5ckpt:proj_dim=2048"
    assert label("gradcos:proj_dim=384") == "gradcos@1ckpt:proj_dim=384"
    assert label("tracin:params=lora,proj_dim=0") == "tracin@1ckpt:params=lora"
    assert label("dda:beta=0.5,debias=eq9", has_base=True) == "dda@1ckpt:beta=0.5,debias=eq9,proj_dim=2048"
    assert label("dda", has_base=True) == "dda@1ckpt:beta=1,debias=eq11,proj_dim=2048"
    assert label("dda", has_base=False) == "dda@1ckpt:beta=0,proj_dim=2048"  # no debias term ran
    assert label("daunce") == "daunce-bb" and label("daunce-wb") == "daunce-wb"
    assert run_label("daunce", cfg.replace(daunce_run="run"), method_config(cfg, "daunce")) == "daunce-wb"
    assert label("repsim") == "repsim" and label("bm25:text=response") == "bm25:text=response"
    assert label("airrep:/x/enc_a") == "airrep:enc_a"
    assert label("tracin:precondition=kfac") == "tracin@1ckpt:precondition=kfac,proj_dim=2048"
    assert (
        label("gradcos:precondition=ekfac,damping=0.01,proj_dim=0")
        == "gradcos@1ckpt:precondition=ekfac,damping=0.01"
    )
    with pytest.raises(InputError, match="runs the same as an earlier one"):
        build_methods(EvalConfig(methods=("gradcos", "gradcos:proj_dim=0")))


def test_dda_beta_spec_reaches_the_scores(tiny_lm_dir, tiny_lm_examples):
    """With the base model equal to the only checkpoint, DDA (beta=1) scores are exactly 0, while
    ``dda:beta=0`` equals the explicit cosine of per-example gradients (DDA Eq. 10 without Eq. 11)."""
    lm = load_lm(tiny_lm_dir, device="cpu")
    train, test = tiny_lm_examples[:6], tiny_lm_examples[6:9]
    cfg = EvalConfig(methods=("dda", "dda:beta=0"))
    methods = dict(build_methods(cfg, lm=lm, checkpoints=[lm], base_lm=lm, batch_size=4))
    assert set(methods) == {"dda@1ckpt:beta=1,debias=eq11", "dda@1ckpt:beta=0"}
    methods["dda"], methods["dda:beta=0"] = (
        methods.pop("dda@1ckpt:beta=1,debias=eq11"),
        methods.pop("dda@1ckpt:beta=0"),
    )
    for m in methods.values():
        m.prepare(train)
    groups = [[j] for j in range(len(test))]
    debiased = summed_scores(methods["dda"], test, groups)
    np.testing.assert_allclose(debiased, 0.0, atol=5e-5)  # float32 rounding of ĝ.ĝ - ĝ.ĝ

    names = [n for n, _ in lm.model.named_parameters()]
    g_train = torch.nn.functional.normalize(loop_grads(lm.model, names, encode_examples(lm, train)), dim=1)
    g_test = torch.nn.functional.normalize(loop_grads(lm.model, names, encode_examples(lm, test)), dim=1)
    expected = (g_train @ g_test.T).numpy()
    assert np.abs(expected).max() > 0.1  # the cancellation above is not of near-zero scores
    np.testing.assert_allclose(summed_scores(methods["dda:beta=0"], test, groups), expected, atol=1e-5)


def test_dda_variants_share_train_vectors_and_reach_the_method(tiny_lm_dir, tiny_lm_examples):
    """DDA's beta / debias variants keep one set of train vectors (one manifest), computed once; the
    spec's debias reading reaches the DDA object; scores equal separately built methods'."""
    lm = load_lm(tiny_lm_dir, device="cpu")
    train, test = tiny_lm_examples[:6], tiny_lm_examples[6:9]
    specs = ("dda:beta=0.5", "dda:beta=1.5,debias=eq9", "gradcos")
    built = dict(build_methods(EvalConfig(methods=specs), lm=lm, base_lm=lm, batch_size=4))
    for m in built.values():
        m.prepare(train)
    a, b = built["dda@1ckpt:beta=0.5,debias=eq11"], built["dda@1ckpt:beta=1.5,debias=eq9"]
    assert a.train_features is b.train_features and a.impl.debias == "eq11" and b.impl.debias == "eq9"
    assert b.prepare_seconds >= b.reused_seconds > 0  # the shared computation's time is still counted
    assert built["gradcos@1ckpt"].train_features is not a.train_features  # another manifest
    (alone,) = build_methods(
        EvalConfig(methods=("dda:beta=1.5,debias=eq9",)), lm=lm, base_lm=lm, batch_size=4
    )
    alone[1].prepare(train)
    np.testing.assert_allclose(summed_scores(alone[1], test), summed_scores(b, test), atol=1e-6)


def test_precondition_spec_reaches_the_scores(tiny_lm_dir, tiny_lm_examples):
    """``tracin:precondition=ekfac`` in an eval gives the registry's EK-FAC scores (the same method the
    Python API builds from its MethodConfig), differs from plain grad-dot, and keeps its own vectors."""
    from airsearch.methods.registry import MethodConfig, load_method

    lm = load_lm(tiny_lm_dir, device="cpu")
    train, test = tiny_lm_examples[:6], tiny_lm_examples[6:9]
    specs = ("tracin:precondition=ekfac,params=linear,proj_dim=0", "tracin:params=linear,proj_dim=0")
    built = dict(build_methods(EvalConfig(methods=specs), lm=lm, batch_size=4))
    assert set(built) == {"tracin@1ckpt:precondition=ekfac,params=linear", "tracin@1ckpt:params=linear"}
    for m in built.values():
        m.prepare(train)
    pre, plain = built["tracin@1ckpt:precondition=ekfac,params=linear"], built["tracin@1ckpt:params=linear"]
    assert pre.train_features is not plain.train_features  # another manifest
    mcfg = MethodConfig(method="tracin", precondition="ekfac", params="linear", proj_dim=0, batch_size=4)
    expected = load_method(mcfg, lm=lm, train=train).score(train, test).double().numpy()
    groups = [[j] for j in range(len(test))]
    got = summed_scores(pre, test, groups)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert not np.allclose(got, summed_scores(plain, test, groups), rtol=1e-2)
