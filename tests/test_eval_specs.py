"""Method specs with options (``dda:beta=0``): parsing, refusals, and the scores they produce."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from airsearch.trainers.evaluation.common import EvalConfig, build_methods, method_spec_options
from airsearch.trainers.evaluation.methods import summed_scores

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
    with pytest.raises(InputError, match="options of 'tracin': none"):
        method_spec_options("tracin:beta=0")


def test_dda_beta_spec_reaches_the_scores(tiny_lm_dir, tiny_lm_examples):
    """With the base model equal to the only checkpoint, DDA (beta=1) scores are exactly 0, while
    ``dda:beta=0`` equals the explicit cosine of per-example gradients (DDA Eq. 10 without Eq. 11)."""
    lm = load_lm(tiny_lm_dir, device="cpu")
    train, test = tiny_lm_examples[:6], tiny_lm_examples[6:9]
    cfg = EvalConfig(methods=("dda", "dda:beta=0"))
    methods = dict(build_methods(cfg, lm=lm, checkpoints=[lm], base_lm=lm, batch_size=4))
    assert set(methods) == {"dda", "dda:beta=0"}
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
