"""K-FAC / EK-FAC preconditioning against explicit factors and dense damped inverses (methods.md §0a)."""

from __future__ import annotations

import copy

import pytest
import torch

from airsearch.errors import FingerprintMismatch, InputError
from airsearch.lm import encode_examples, load_lm
from airsearch.lm.model import TargetLM
from airsearch.methods.dda import DDA
from airsearch.methods.factor_store import manifest_for, open_factors, save_factors
from airsearch.methods.gradients import ParamSet, linear_parameter_names, prepare
from airsearch.methods.haif import HAIF
from airsearch.methods.kfac import fit_factors, linear_blocks
from airsearch.methods.precondition import Precondition, Preconditioner, fitting_sample
from airsearch.methods.tracin import TracIn
from tests.helpers.grads import loop_grads
from tests.helpers.kfac import dense_inverse_scores, loop_factors, relative_error
from tests.helpers.models import build_micro_lm, make_examples

TOL = 1e-4


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return load_lm(build_micro_lm(tmp_path_factory.mktemp("micro") / "lm"), device="cpu")


@pytest.fixture(scope="module")
def biased_lm(lm):
    """The micro Llama with biases on every attention and MLP projection (random, seeded)."""
    from transformers import LlamaForCausalLM

    cfg = copy.deepcopy(lm.model.config)
    cfg.attention_bias, cfg.mlp_bias = True, True
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg)
    model.load_state_dict(lm.model.state_dict(), strict=False)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return TargetLM(
        model=model.eval(), tokenizer=lm.tokenizer, source="micro-biased", max_length=lm.max_length
    )


def _grads(target, gm, examples):
    return loop_grads(gm.model, gm.param_names, encode_examples(target, examples)).double()


def _kron_curvature(cov_a, cov_s):
    return lambda block: torch.kron(cov_s[block.module], cov_a[block.module])


@pytest.mark.parametrize("which", ["linear", "lora", "bias"])
def test_kfac_factors_and_influence_equal_explicit_kronecker_reference(lm, biased_lm, which):
    target = biased_lm if which == "bias" else lm
    spec = ParamSet("lora", lora_rank=3) if which == "lora" else ParamSet("linear")
    train, test = make_examples(10), make_examples(3, "q", seed=5)
    method = TracIn(
        [target], params=spec, precondition=Precondition("kfac", sample=train), show_progress=False
    )
    fast = method.score(train, test)
    fz = method.ck.featurizers[0]
    pre, gm = fz.preconditioner, fz.gm
    if which == "lora":
        assert all("lora_B" in b.module and b.in_features == 3 for b in pre.factors.blocks)
    if which == "bias":
        assert all(b.bias for b in pre.factors.blocks)
    # the explicit factors, one unpadded example at a time
    cov_a, cov_s = loop_factors(gm.model, pre.factors.blocks, encode_examples(target, train))
    for block in pre.factors.blocks:
        qa, la = pre.factors.get(block, "qa").double(), pre.factors.get(block, "la").double()
        qs, ls = pre.factors.get(block, "qs").double(), pre.factors.get(block, "ls").double()
        assert relative_error(qa @ torch.diag(la) @ qa.T, cov_a[block.module]) < TOL
        assert relative_error(qs @ torch.diag(ls) @ qs.T, cov_s[block.module]) < TOL
    ref = dense_inverse_scores(
        pre, _grads(target, gm, train), _grads(target, gm, test), _kron_curvature(cov_a, cov_s)
    )
    assert relative_error(fast, ref) < TOL


def test_ekfac_influence_equals_dense_eigenvalue_corrected_reference(lm):
    """EK-FAC: H = Q diag(Q^T F Q) Q^T with F the dense mean outer product of per-example gradients."""
    train, test = make_examples(10), make_examples(3, "q", seed=5)
    spec = ParamSet("linear")
    method = TracIn([lm], params=spec, precondition=Precondition("ekfac", sample=train), show_progress=False)
    fast = method.score(train, test)
    pre, gm = method.ck.featurizers[0].preconditioner, method.ck.featurizers[0].gm
    g_train = _grads(lm, gm, train)
    from tests.helpers.kfac import block_matrix

    def curvature(block):
        q = torch.kron(pre.factors.get(block, "qs").double(), pre.factors.get(block, "qa").double())
        g = block_matrix(block, pre.offsets, g_train)
        lam = torch.diag(q.T @ (g.T @ g / len(train)) @ q)
        torch.testing.assert_close(
            lam.reshape(block.out_features, block.cols),
            pre.factors.get(block, "lambda").double(),
            rtol=1e-3,
            atol=1e-9,
        )
        return q @ torch.diag(lam) @ q.T

    ref = dense_inverse_scores(pre, g_train, _grads(lm, gm, test), curvature)
    assert relative_error(fast, ref) < TOL
    # a fixed damping instead of the heuristic, and grad-cos in the (H + lambda)^-1 metric
    fixed = Precondition("ekfac", sample=train, damping=1e-3)
    cos = TracIn([lm], params=spec, normalize=True, precondition=fixed, show_progress=False)
    ref_cos = dense_inverse_scores(
        pre, g_train, _grads(lm, gm, test), curvature, damping=1e-3, whiten_cos=True
    )
    assert relative_error(cos.score(train, test), ref_cos) < TOL


def test_preconditioned_dda_and_haif_use_the_whitened_gradients(lm):
    """DDA (normalised) = grad-cos in the H^-1 metric; HAIF's train side whitens every token gradient."""
    train, test = make_examples(5), make_examples(2, "q", seed=5)
    pre = Precondition("kfac", sample=train)
    kw = {"params": ParamSet("linear"), "precondition": pre, "show_progress": False}
    cos = TracIn([lm], normalize=True, **kw).score(train, test)
    torch.testing.assert_close(DDA([lm], **kw).score(train, test), cos, rtol=1e-5, atol=1e-7)
    haif = HAIF(lm, outer=False, **kw)
    fz = haif.ck.featurizers[0]
    p = fz.preconditioner
    rows = []
    for ex in train:
        enc = encode_examples(lm, [ex])
        tok = p.apply(fz.gm.per_token_grads(enc["input_ids"][0], enc["labels"][0]), -0.5)
        rows.append((tok / (tok.norm(dim=1, keepdim=True) + 1e-8)).sum(0))
    test_rows = p.apply(fz.gm.per_example_grads(encode_examples(lm, test)), -0.5)
    torch.testing.assert_close(haif.score(train, test), torch.stack(rows) @ test_rows.T, rtol=1e-4, atol=1e-6)


def test_unsupported_parameters_are_refused_by_name(lm):
    train = make_examples(3)
    with pytest.raises(InputError, match="embed_tokens.*Embedding|norm") as err:
        TracIn(
            [lm], params=ParamSet("all"), precondition=Precondition("kfac", sample=train), show_progress=False
        ).score(train, train)
    assert "'linear'" in str(err.value) and err.value.field == "params"
    names = linear_parameter_names(lm.model)
    assert (
        names and all("proj" in n for n in names) and not any("lm_head" in n or "embed" in n for n in names)
    )
    with pytest.raises(InputError, match="precondition"):
        Precondition("shampoo")


def test_stored_factors_round_trip_exactly_reuse_and_refuse_mismatch(lm, tmp_path):
    train = make_examples(8)
    gm = prepare(lm, ParamSet("linear"))
    factors = fit_factors(gm, lm, train, "ekfac", show_progress=False)
    sample = {"n": 8}
    manifest = manifest_for(factors, lm.fingerprint, gm.spec.describe(), sample)
    save_factors(tmp_path / "f", factors, manifest)
    loaded, loaded_manifest = open_factors(tmp_path / "f", manifest)
    assert loaded.tensors.keys() == factors.tensors.keys()
    for key, value in factors.tensors.items():
        assert torch.equal(loaded.tensors[key], value) and loaded.tensors[key].dtype == value.dtype
    assert loaded.blocks == factors.blocks == linear_blocks(gm)
    assert loaded_manifest.damping["mean_eigenvalue"].keys() == {b.module for b in factors.blocks}
    g = gm.per_example_grads(encode_examples(lm, train[:3]))
    assert torch.equal(Preconditioner(loaded, gm).apply(g), Preconditioner(factors, gm).apply(g))
    for field_name, value in [
        ("model_fingerprint", "other"),
        ("param_set", {"kind": "lora"}),
        ("sample", {"n": 9}),
    ]:
        other = copy.deepcopy(manifest)
        setattr(other, field_name, value)
        with pytest.raises(FingerprintMismatch, match=field_name):
            open_factors(tmp_path / "f", other)


def test_factors_folder_fits_once_then_reuses_and_refuses_another_sample(lm, tmp_path):
    train = make_examples(8)
    spec = ParamSet("linear")
    pre = Precondition("kfac", sample=train, factors_dir=str(tmp_path / "factors"))
    first = TracIn([lm], params=spec, precondition=pre, show_progress=False)
    scores = first.score(train[:4], train[4:])
    folder = pre.folder_for(lm)
    assert (folder / "manifest.json").exists() and (folder / "factors.safetensors").exists()
    stamp = (folder / "factors.safetensors").stat().st_mtime_ns
    # without a sample the stored factors are used as they are
    again = TracIn(
        [lm],
        params=spec,
        precondition=Precondition("kfac", factors_dir=str(tmp_path / "factors")),
        show_progress=False,
    )
    assert torch.equal(again.score(train[:4], train[4:]), scores)
    assert (folder / "factors.safetensors").stat().st_mtime_ns == stamp
    other = Precondition("kfac", sample=make_examples(8, seed=9), factors_dir=str(tmp_path / "factors"))
    with pytest.raises(FingerprintMismatch, match="sample"):
        TracIn([lm], params=spec, precondition=other, show_progress=False).score(train[:2], train[2:3])
    lora = TracIn([lm], params=ParamSet("lora"), precondition=pre, show_progress=False)
    with pytest.raises(FingerprintMismatch, match="param_set"):
        lora.score(train[:2], train[2:3])
    with pytest.raises(InputError, match="no stored factors"):
        Precondition("ekfac", factors_dir=str(tmp_path / "factors")).factors_for(lm, prepare(lm, spec), 64)


def test_sampled_fisher_is_seeded_and_differs_from_empirical(lm):
    train = make_examples(6)
    gm = prepare(lm, ParamSet("names", patterns=("mlp",)))
    a = fit_factors(gm, lm, train, "kfac", fisher="sampled", seed=3, show_progress=False)
    b = fit_factors(gm, lm, train, "kfac", fisher="sampled", seed=3, show_progress=False)
    e = fit_factors(gm, lm, train, "kfac", fisher="empirical", show_progress=False)
    block = a.blocks[0]
    assert torch.equal(a.get(block, "ls"), b.get(block, "ls"))
    assert not torch.allclose(a.get(block, "ls"), e.get(block, "ls"))
    torch.testing.assert_close(a.get(block, "la"), e.get(block, "la"))  # inputs do not depend on targets


def test_fitting_sample_is_seeded_and_bounded():
    examples = make_examples(30)
    assert fitting_sample(examples, 0) == sorted(examples, key=lambda e: e.id)
    part = fitting_sample(examples, 7, seed=2)
    assert len(part) == 7 and part == fitting_sample(list(reversed(examples)), 7, seed=2)
    assert part != fitting_sample(examples, 7, seed=3)


def test_attribute_with_ekfac_equals_the_preconditioned_method(tiny_lm_dir, tiny_lm_examples, tmp_path):
    """``attribute --precondition ekfac`` fits the factors on the corpus, stores them, and scores as the API."""
    from airsearch.trainers.attribute import AttributeConfig, attribute
    from safetensors.torch import load_file

    from airsearch.data.corpus import write_rows

    train, queries = tiny_lm_examples[:12], tiny_lm_examples[40:43]
    write_rows(tmp_path / "train.jsonl", train)
    write_rows(tmp_path / "queries.jsonl", queries)
    cfg = AttributeConfig(
        method="tracin",
        lm=str(tiny_lm_dir),
        corpus=[str(tmp_path / "train.jsonl")],
        queries=[str(tmp_path / "queries.jsonl")],
        out=str(tmp_path / "attr"),
        params="linear",
        precondition="ekfac",
        factors=str(tmp_path / "factors"),
        full_matrix=True,
        max_length=64,
    )
    attribute(cfg)
    got = load_file(str(tmp_path / "attr" / "scores.safetensors"))["scores"]
    lm = load_lm(str(tiny_lm_dir), device="cpu", max_length=64)
    pre = Precondition("ekfac", sample=train)
    ref = TracIn([lm], params=ParamSet("linear"), precondition=pre, max_length=64, show_progress=False)
    torch.testing.assert_close(got, ref.score(train, queries), rtol=1e-4, atol=1e-7)
    assert len(list((tmp_path / "factors").glob("ekfac-*/factors.safetensors"))) == 1


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("biased", [False, True])
def test_exact_scores_stream_layer_by_layer(lm, biased_lm, normalize, biased):
    """Exact grad-dot / grad-cos of Linear-only sets never build the train gradient rows
    (``GradientFeaturizer.products``), and equal products of per-example backward-loop gradients,
    over two weighted checkpoints and with a K-FAC-preconditioned query side."""
    target = biased_lm if biased else lm
    train, test = make_examples(7), make_examples(9)[7:]
    spec = ParamSet("linear")
    method = TracIn([target, target], params=spec, weights=[1.0, 0.5], normalize=normalize, batch_size=3,
                    show_progress=False)  # fmt: skip
    fz = method.ck.featurizers[0]
    assert fz.products(train, method.test_features(test)[:, : fz.dim()]) is not None  # the streamed route
    ref_train, ref_test = _grads(target, fz.gm, train), _grads(target, fz.gm, test)
    if normalize:
        ref_train = ref_train / ref_train.norm(dim=1, keepdim=True)
        ref_test = ref_test / ref_test.norm(dim=1, keepdim=True)
    expected = 1.5 * ref_train @ ref_test.T
    torch.testing.assert_close(method.score(train, test).double(), expected, rtol=1e-4, atol=1e-6)
    _, top = method.topk(train, test, k=3, block_size=4)
    assert (top == expected.T.argsort(dim=1, descending=True)[:, :3].numpy()).all()
    if not normalize:  # the preconditioned query side streams too and matches rows then products
        pre = TracIn([target], params=spec, precondition=Precondition("kfac", sample=train, damping=0.1),
                     batch_size=3, show_progress=False)  # fmt: skip
        rows = pre.train_features(train) @ pre.test_features(test).T
        torch.testing.assert_close(pre.score(train, test), rows, rtol=1e-4, atol=1e-6)
