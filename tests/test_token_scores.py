"""Per-response-token scores of every gradient method, against one-autograd-call-per-token references."""

from __future__ import annotations

import pytest
import torch

from airsearch.errors import InputError
from airsearch.lm import encode_examples, load_lm
from airsearch.methods.dda import DDA
from airsearch.methods.gradients import ParamSet
from airsearch.methods.haif import HAIF
from airsearch.methods.precondition import Precondition
from airsearch.methods.projection import Projector
from airsearch.methods.tracin import TracIn
from tests.helpers.grads import loop_grads, loop_token_grads
from tests.helpers.models import build_micro_lm, make_examples

ALL = ParamSet("all")


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    return [load_lm(build_micro_lm(root / f"lm{s}", steps=s), device="cpu") for s in (30, 10)]


def _reference(lm, names, train_ex, test, weight_fn):
    """``[n_tokens, q]``: ``weight_fn(token grads, example grad) . test grad`` per token."""
    tok = loop_token_grads(lm.model, names, encode_examples(lm, [train_ex]), 0).double()
    g = tok.mean(0)
    test_grads = loop_grads(lm.model, names, encode_examples(lm, test)).double()
    return weight_fn(tok, g) @ test_grads.T


def _names(lm):
    return [n for n, _ in lm.model.named_parameters()]


@pytest.mark.parametrize(
    ("name", "weight_fn"),
    [
        ("tracin", lambda tok, g: tok / tok.shape[0]),
        ("gradcos", lambda tok, g: tok / tok.shape[0] / g.norm()),
        ("haif-t", lambda tok, g: tok / (tok.norm(dim=1, keepdim=True) + 1e-8)),
        (
            "haif",
            lambda tok, g: (a := tok / (tok.norm(dim=1, keepdim=True) + 1e-8)) / (a.sum(0).norm() + 1e-8),
        ),
    ],
)
def test_token_scores_equal_per_token_reference_and_sum_to_the_score(lms, name, weight_fn):
    lm = lms[0]
    train, test = make_examples(3), make_examples(2, "q", seed=4)
    if name.startswith("haif"):
        method = HAIF(lm, outer=name == "haif", params=ALL, show_progress=False)
    else:
        method = TracIn([lm], normalize=name == "gradcos", params=ALL, show_progress=False)
    scores = method.score(train, test)
    per_token = method.token_scores(train, test)
    for i, ex in enumerate(train):
        ts = per_token[i]
        test_vectors_norm = 1.0
        ref = _reference(lm, _names(lm), ex, test, weight_fn)
        if name == "gradcos":
            test_vectors_norm = (
                loop_grads(lm.model, _names(lm), encode_examples(lm, test)).double().norm(dim=1)
            )
        torch.testing.assert_close(ts.scores.double(), ref / test_vectors_norm, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(ts.scores.sum(0), scores[i], rtol=1e-4, atol=1e-6)
        assert ts.example_id == ex.id and len(ts.tokens) == len(ts.token_ids) == ts.scores.shape[0] >= 2
        assert "".join(ts.tokens).strip().replace(" ", "") == ex.response.replace(" ", "") + "</s>"


def test_token_scores_of_dda_projected_and_preconditioned_sum_to_the_score(lms):
    base, tuned = lms
    train, test = make_examples(3), make_examples(2, "q", seed=4)
    kw = {"params": ParamSet("linear"), "show_progress": False}
    methods = [
        DDA([tuned, base], base=base, beta=0.5, **kw),
        TracIn([tuned, base], weights=[0.3, 2.0], projector=Projector(dim=64, seed=1), **kw),
        TracIn([tuned], precondition=Precondition("ekfac", sample=train), **kw),
        TracIn([tuned], normalize=True, precondition=Precondition("kfac", sample=train), **kw),
        HAIF(tuned, precondition=Precondition("kfac", sample=train), projector=Projector(dim=32), **kw),
    ]
    for method in methods:
        scores = method.score(train, test)
        for i, ts in enumerate(method.token_scores(train, test)):
            torch.testing.assert_close(ts.scores.sum(0), scores[i], rtol=1e-4, atol=1e-6)


def test_methods_without_token_scores_refuse():
    from airsearch.methods.daunce import Daunce, RecordedLosses

    examples = make_examples(2)
    providers = [RecordedLosses({ex.id: float(k + i) for i, ex in enumerate(examples)}) for k in range(3)]
    with pytest.raises(InputError, match="per-token"):
        Daunce(providers).token_scores(examples, examples)
