"""Grad-dot, grad-cos, TracIn, DDA, HAIF(-T): each against its explicit formula on slow reference gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from airsearch.errors import InputError
from airsearch.lm import encode_examples, load_lm
from airsearch.lm.finetune import FinetuneConfig, finetune
from airsearch.methods.base import rerank, rerank_order
from airsearch.methods.dda import DDA
from airsearch.methods.gradients import ParamSet
from airsearch.methods.haif import HAIF
from airsearch.methods.projection import Projector
from airsearch.methods.tracin import TracIn
from tests.helpers.grads import loop_grads, loop_token_grads
from tests.helpers.models import build_micro_lm, make_examples

ALL = ParamSet("all")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = load_lm(build_micro_lm(tmp_path_factory.mktemp("micro") / "lm"), device="cpu")
    kept = []
    finetune(
        base,
        make_examples(8, "ft", seed=5),
        FinetuneConfig(epochs=2, lr=5e-3, batch_size=4),
        on_epoch_end=lambda e, lm: kept.append(lm.clone()),
        show_progress=False,
    )
    return base, kept


@pytest.fixture(scope="module")
def data():
    return make_examples(6, "tr", seed=1), make_examples(3, "te", seed=2)


def ref_grads(lm, examples):
    names = [n for n, _ in lm.model.named_parameters()]
    return loop_grads(lm.model, names, encode_examples(lm, examples))


def unit(x):
    return x / x.norm(dim=1, keepdim=True)


def test_grad_dot_and_grad_cos(models, data):
    base, _ = models
    train, test = data
    gt, ge = ref_grads(base, train), ref_grads(base, test)
    m = TracIn([base], params=ALL, show_progress=False)
    torch.testing.assert_close(m.score(train, test), gt @ ge.T, rtol=1e-4, atol=1e-6)
    cos = TracIn([base], normalize=True, params=ALL, show_progress=False)
    assert cos.name == "gradcos"
    torch.testing.assert_close(cos.score(train, test), unit(gt) @ unit(ge).T, rtol=1e-4, atol=1e-6)


def test_tracin_over_checkpoints(models, data):
    _, cks = models
    train, test = data
    m = TracIn(cks, weights=[0.3, 2.0], params=ALL, show_progress=False)
    expected = sum(
        w * ref_grads(c, train) @ ref_grads(c, test).T for w, c in zip([0.3, 2.0], cks, strict=True)
    )
    torch.testing.assert_close(m.score(train, test), expected, rtol=1e-4, atol=1e-6)


def test_dda_beta0_one_checkpoint_is_grad_dot(models, data):
    base, cks = models
    train, test = data
    plain = TracIn([cks[0]], params=ALL, show_progress=False).score(train, test)
    for b in (None, base):
        dda = DDA([cks[0]], base=b, beta=0.0, normalize=False, params=ALL, show_progress=False)
        torch.testing.assert_close(dda.score(train, test), plain, rtol=1e-5, atol=1e-7)


def test_dda_general_formula_and_contrastive(models, data):
    base, cks = models
    train, test = data
    beta = 0.7
    dda = DDA(cks, base=base, beta=beta, params=ALL, show_progress=False)
    den = sum(unit(ref_grads(c, train)) @ unit(ref_grads(c, test)).T for c in cks) / len(cks)
    expected = den - beta * unit(ref_grads(base, train)) @ unit(ref_grads(base, test)).T
    got = dda.score(train, test)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    # Eq. 12: DD(bad) - DD(good), summed over each set
    bad, good = test[:2], test[2:]
    torch.testing.assert_close(
        dda.contrastive_scores(train, bad, good), got[:, :2].sum(1) - got[:, 2:].sum(1), rtol=1e-4, atol=1e-6
    )


def test_dda_eq9_debias_reading(models, data):
    """Eq. 9: the test gradient stays at the fine-tuned model th_N; only the train side uses th_0."""
    base, cks = models
    train, test = data
    beta = 0.5
    dda = DDA(cks, base=base, beta=beta, debias="eq9", params=ALL, show_progress=False)
    den = sum(unit(ref_grads(c, train)) @ unit(ref_grads(c, test)).T for c in cks) / len(cks)
    expected = den - beta * unit(ref_grads(base, train)) @ unit(ref_grads(cks[-1], test)).T
    torch.testing.assert_close(dda.score(train, test), expected, rtol=1e-4, atol=1e-6)
    assert dda.describe()["debias"] == "eq9"
    with pytest.raises(InputError, match="debias"):
        DDA(cks, base=base, debias="eq10", params=ALL, show_progress=False)


@pytest.mark.parametrize("outer", [True, False])
def test_haif_and_haif_t_formula(models, data, outer):
    base, _ = models
    train, test = data
    names = [n for n, _ in base.model.named_parameters()]
    enc = encode_examples(base, train)
    rows = []
    for r in range(len(train)):
        tok = loop_token_grads(base.model, names, enc, r)
        s = sum(t / (t.norm() + 1e-8) for t in tok)
        rows.append(s / (s.norm() + 1e-8) if outer else s)
    expected = torch.stack(rows) @ ref_grads(base, test).T
    m = HAIF(base, outer=outer, params=ALL, show_progress=False)
    assert m.name == ("haif" if outer else "haif-t")
    torch.testing.assert_close(m.score(train, test), expected, rtol=1e-4, atol=1e-6)


def test_projected_scores_within_jl_tolerance(models, data):
    base, _ = models
    train, test = data
    exact = TracIn([base], normalize=True, params=ALL, show_progress=False).score(train, test)
    k = 2048
    proj = TracIn(
        [base], normalize=True, params=ALL, projector=Projector(dim=k, seed=7), show_progress=False
    ).score(train, test)
    assert (proj - exact).abs().max() < 5 * (2 / k) ** 0.5


def test_topk_and_rerank_follow_the_scores(models, data):
    base, _ = models
    train, test = data
    m = TracIn([base], params=ALL, show_progress=False)
    full = m.score(train, test).numpy()
    scores, idx = m.topk(train, test, k=3, block_size=4)
    np.testing.assert_array_equal(idx, np.argsort(-full.T, axis=1, kind="stable")[:, :3])
    np.testing.assert_allclose(scores, np.take_along_axis(full.T, idx, 1), rtol=1e-5)
    s = rerank(m, test[0], train)
    np.testing.assert_allclose(s, full[:, 0], rtol=1e-5)
    order = rerank_order(s)
    assert list(order) == sorted(range(len(train)), key=lambda i: -s[i])


def test_teacher_labels_are_negated_group_scores(models, tmp_path):
    from types import SimpleNamespace

    from airsearch.trainers.labels import LabelStore
    from airsearch.trainers.labels.config import LabelConfig
    from airsearch.trainers.labels.generate import generate_labels

    from airsearch.methods.registry import MethodConfig, load_method

    base, _ = models
    examples = make_examples(14, "c", seed=11)
    corpus = SimpleNamespace(examples=examples, fingerprint="corpus-fp")
    cfg = LabelConfig(
        lm=base.source,
        out=str(tmp_path / "labels"),
        splits=1,
        dev_size=3,
        pool_size=8,
        subset_size=3,
        subsets_per_split=4,
        max_length=64,
        teacher="gradcos",
    )
    generate_labels(cfg, corpus=corpus, quiet=True)
    store = LabelStore.open(tmp_path / "labels")
    assert store.teacher == "gradcos"
    (split,) = store.splits()
    m = load_method(MethodConfig(method="gradcos", lm=base.source), show_progress=False)
    by_id = {e.id: e for e in examples}
    dev = [by_id[i] for i in split.dev_ids]
    for k, members in enumerate(split.members):
        expected = m.score([by_id[i] for i in members], dev).sum(0).double().numpy()
        np.testing.assert_allclose(split.losses[k], -expected, rtol=1e-4, atol=1e-6)
    # blocks of feature rows (here 2 rows per side) give the whole matrix
    from airsearch.trainers.labels.teacher import teacher_scores

    pool = examples[:9]
    two_rows = 2 * 4 * m.test_features(dev[:1]).shape[1]
    torch.testing.assert_close(teacher_scores(m, pool, dev, block_bytes=two_rows), m.score(pool, dev))


def test_attribute_command_topk_and_full_matrix(models, tmp_path):
    import json

    from airsearch.cli.main import app
    from click.testing import CliRunner
    from safetensors.torch import load_file

    base, _ = models
    train, test = make_examples(7, "tr", seed=1), make_examples(2, "te", seed=2)
    for name, rows in (("train.jsonl", train), ("q.jsonl", test)):
        (tmp_path / name).write_text("\n".join(json.dumps(e.to_row()) for e in rows))
    args = [
        "attribute",
        "--method",
        "tracin",
        "--lm",
        base.source,
        "--corpus",
        str(tmp_path / "train.jsonl"),
        "--queries",
        str(tmp_path / "q.jsonl"),
        "--out",
        str(tmp_path / "out"),
        "--k",
        "3",
        "--full-matrix",
        "--vectors",
        str(tmp_path / "vecs"),
        "--block-size",
        "3",
        "--json",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    full = TracIn([base], params=ALL, show_progress=False).score(train, test).numpy()
    torch.testing.assert_close(
        load_file(str(tmp_path / "out/scores.safetensors"))["scores"],
        torch.from_numpy(full),
        rtol=1e-4,
        atol=1e-6,
    )
    out = json.loads((tmp_path / "out/results.json").read_text())
    for j, q in enumerate(out["results"]):
        assert [t["id"] for t in q["top"]] == [
            train[i].id for i in np.argsort(-full[:, j], kind="stable")[:3]
        ]
    again = CliRunner().invoke(app, args)  # reuses the stored vectors
    assert again.exit_code == 0 and json.loads((tmp_path / "out/results.json").read_text()) == out
    bad = CliRunner().invoke(app, [*args[:-5], "--vectors", str(tmp_path / "vecs"), "--proj-dim", "64"])
    assert bad.exit_code == 2 and "projection" in bad.output


def test_repsim_against_one_example_at_a_time(models, data):
    """RepSim: cosine of mean last hidden states, each example run alone without padding."""
    from airsearch.methods.repsim import RepSim

    base, _ = models
    train, test = data

    def ref(examples):
        rows = []
        for ex in examples:
            enc = encode_examples(base, [ex])
            with torch.no_grad():
                h = base.model(input_ids=enc["input_ids"], output_hidden_states=True).hidden_states[-1][0]
            v = h.float().mean(dim=0)
            rows.append(v / v.norm())
        return torch.stack(rows)

    m = RepSim(base, batch_size=3, show_progress=False)  # batches pad: the mask must exclude padding
    torch.testing.assert_close(m.score(train, test), ref(train) @ ref(test).T, rtol=1e-4, atol=1e-5)
    assert m.manifest().dim == base.model.config.hidden_size
