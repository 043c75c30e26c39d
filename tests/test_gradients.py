"""Per-example / per-token gradients, projection and the vector store, each against a slow reference."""

from __future__ import annotations

import pytest
import torch

from airsearch.errors import FingerprintMismatch, InputError
from airsearch.lm import batch_loss, encode_examples, load_lm, masked_token_nll
from airsearch.methods.features import GradientFeaturizer, haif_combine
from airsearch.methods.gradients import ParamSet, prepare
from airsearch.methods.projection import Projector
from airsearch.methods.store import VectorManifest, open_store, save_vectors
from tests.helpers.grads import loop_grads
from tests.helpers.models import build_micro_lm, make_examples


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return load_lm(build_micro_lm(tmp_path_factory.mktemp("micro") / "lm"), device="cpu")


@pytest.mark.parametrize(
    ("spec", "hooked"),
    [
        (ParamSet("all"), False),
        (ParamSet("names", patterns=("*mlp*", "norm")), False),
        (ParamSet("linear"), True),
        (ParamSet("names", patterns=("*mlp*",)), True),
    ],
)
def test_per_example_grads_equal_backward_loop(lm, spec, hooked):
    """Both routes (vmap; hooked Linear inputs x output gradients) equal a per-example backward loop."""
    examples = make_examples(5)
    enc = encode_examples(lm, examples)
    assert enc["attention_mask"].sum(1).unique().numel() > 1  # really padded
    gm = prepare(lm, spec)
    fast = gm.per_example_grads(enc, chunk_size=2)
    assert bool(gm._linear_path) is hooked  # the route the parameter set should take was taken
    ref = loop_grads(lm.model, gm.param_names, enc)
    assert fast.shape == ref.shape == (5, gm.num_params)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-6)
    if spec.kind == "names":
        assert all(("mlp" in n or "norm" in n) for n in gm.param_names)


@pytest.mark.parametrize("spec", [ParamSet("all"), ParamSet("names", patterns=("*mlp*", "norm"))])
def test_one_example_gradient_equals_backward_loop(lm, spec):
    """A batch of one (a query vector) takes plain autograd instead of vmap; same gradient as the
    per-example backward loop, for each example alone."""
    examples = make_examples(3)
    gm = prepare(lm, spec)
    for ex in examples:
        enc = encode_examples(lm, [ex])
        one = gm.per_example_grads(enc)
        assert one.shape == (1, gm.num_params) and one.dtype == torch.float32
        torch.testing.assert_close(one, loop_grads(lm.model, gm.param_names, enc), rtol=1e-4, atol=1e-6)


def test_lora_b_gradient_is_weight_gradient_times_a_transpose(lm):
    """Fresh LoRA, B = 0: the model is unchanged and grad_B = dL/dW @ A^T (documented choice)."""
    examples = make_examples(3)
    enc = encode_examples(lm, examples)
    gm = prepare(lm, ParamSet("lora", lora_rank=4, lora_targets=("q_proj",)))
    assert gm.param_names and all("lora_B" in n for n in gm.param_names)
    fast = gm.per_example_grads(enc)
    # the wrapped model computes the same losses as the plain one
    torch.testing.assert_close(
        batch_loss(lm, enc),
        masked_token_nll(
            gm.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits, enc["labels"]
        ),
    )
    wname = next(n for n, _ in lm.model.named_parameters() if "q_proj" in n)
    w_grads = loop_grads(lm.model, [wname], enc)  # [b, out*in]
    a_name = gm.param_names[0].replace("lora_B", "lora_A")
    a = dict(gm.model.named_parameters())[a_name].detach()  # [r, in]
    w_shape = dict(lm.model.named_parameters())[wname].shape
    expected = torch.stack([(g.reshape(w_shape) @ a.T).reshape(-1) for g in w_grads])
    b_size = expected.shape[1]
    torch.testing.assert_close(fast[:, :b_size], expected, rtol=1e-4, atol=1e-6)


def test_lora_on_a_peft_model_takes_both_adapters(lm):
    from airsearch.lm.finetune import FinetuneConfig, finetune

    tuned = finetune(
        lm,
        make_examples(4),
        FinetuneConfig(epochs=1, lr=1e-2, batch_size=2, lora_rank=2, lora_targets=("q_proj", "v_proj")),
        show_progress=False,
    )
    gm = prepare(tuned, ParamSet("lora"))
    assert any("lora_A" in n for n in gm.param_names) and any("lora_B" in n for n in gm.param_names)
    enc = encode_examples(tuned, make_examples(3))
    ref = loop_grads(tuned.model, gm.param_names, enc)
    torch.testing.assert_close(gm.per_example_grads(enc), ref, rtol=1e-4, atol=1e-6)


def test_per_token_grads_equal_loop_over_token_losses(lm):
    ex = make_examples(4)[3]
    enc = encode_examples(lm, [ex])
    gm = prepare(lm, ParamSet("all"))
    fast = gm.per_token_grads(enc["input_ids"][0], enc["labels"][0], chunk_size=3)
    model = lm.model
    params = dict(model.named_parameters())
    out = model(input_ids=enc["input_ids"])
    nll = masked_token_nll(out.logits, enc["labels"], "none")[0]
    positions = (enc["labels"][0, 1:] != -100).nonzero().squeeze(-1)
    rows = []
    for j in positions.tolist():
        g = torch.autograd.grad(nll[j], [params[n] for n in gm.param_names], retain_graph=True)
        rows.append(torch.cat([x.reshape(-1) for x in g]))
    ref = torch.stack(rows)
    assert fast.shape == ref.shape and ref.shape[0] >= 2
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-6)
    # the per-token gradients average to the example gradient
    torch.testing.assert_close(fast.mean(0), gm.per_example_grads(enc)[0], rtol=1e-4, atol=1e-6)


def test_featurizer_modes_match_formulas(lm):
    examples = make_examples(4)
    fz = GradientFeaturizer(lm, ParamSet("all"), batch_size=3, show_progress=False)
    grads = fz.features(examples)
    unit = fz.features(examples, normalize=True)
    torch.testing.assert_close(unit, grads / grads.norm(dim=1, keepdim=True))
    haif = fz.features(examples, mode="haif")
    haif_t = fz.features(examples, mode="haif-t")
    for i, ex in enumerate(examples):
        enc = encode_examples(lm, [ex])
        tok = fz.gm.per_token_grads(enc["input_ids"][0], enc["labels"][0])
        s = sum(t / (t.norm() + 1e-8) for t in tok)
        torch.testing.assert_close(haif_t[i], s, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(haif[i], s / (s.norm() + 1e-8), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(haif_combine(torch.eye(3) * 5, outer=False), torch.ones(3), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["sparse", "rademacher", "gaussian"])
def test_projection_preserves_inner_products_within_jl_tolerance(kind):
    gen = torch.Generator().manual_seed(1)
    p, k = 9000, 1024
    x = torch.randn(6, p, generator=gen)
    x[1] = x[0] + 0.5 * x[1]  # a correlated pair
    x = x / x.norm(dim=1, keepdim=True)
    proj = Projector(dim=k, seed=3, kind=kind)
    px = proj(x)
    exact, approx = x @ x.T, px @ px.T
    # each entry's error has std about sqrt(2/k) for unit vectors; allow 5 sigma
    assert (approx - exact).abs().max() < 5 * (2 / k) ** 0.5
    # same P whatever the chunking: project the columns in two block-aligned pieces and add
    cut = 4096
    torch.testing.assert_close(
        proj.project(x[:, :cut]) + proj.project(x[:, cut:], offset=cut), px, rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(Projector(dim=k, seed=3, kind=kind)(x[:2]), px[:2])
    assert not torch.allclose(Projector(dim=k, seed=4, kind=kind)(x[:2]), px[:2])
    normed = Projector(dim=k, seed=3, kind=kind, normalize=True)(x)
    torch.testing.assert_close(normed.norm(dim=1), torch.ones(6))
    torch.testing.assert_close(Projector(dim=None)(x), x)
    if kind == "sparse":  # the cached hashing arrays give the very same product as fresh ones
        from airsearch.methods import projection

        projection._SKETCHES.clear()
        fresh = proj(x)
        assert projection._SKETCHES  # cached now
        torch.testing.assert_close(proj(x), fresh, rtol=0, atol=0)
        limit = projection.SKETCH_CACHE_COORDS
        try:  # a span over the cache limit is computed and not kept
            projection.SKETCH_CACHE_COORDS = 100
            projection._SKETCHES.clear()
            torch.testing.assert_close(Projector(dim=k, seed=3, kind=kind)(x), fresh, rtol=0, atol=0)
            assert not projection._SKETCHES
        finally:
            projection.SKETCH_CACHE_COORDS = limit
    # the blockwise product equals x @ P with P assembled from its blocks (the plain reference)
    dense = torch.cat([proj.block(b, min(cut, p - b * cut)) for b in range((p + cut - 1) // cut)])
    torch.testing.assert_close(x @ dense, px, rtol=1e-4, atol=1e-5)


def test_vector_store_round_trip_and_refuses_mismatch(tmp_path):
    vecs = torch.randn(7, 5)
    ids = [f"t{i}" for i in range(7)]
    man = VectorManifest(
        feature="grad",
        model_fingerprint="abc",
        checkpoints=["ck1"],
        param_set={"kind": "all"},
        projection=Projector(dim=5).describe(),
        dim=5,
    )
    save_vectors(tmp_path / "vs", vecs, ids, man, shard_rows=3)
    store = open_store(tmp_path / "vs", expected=man, expected_ids=ids)
    assert store.ids == ids and len(store.manifest.shards) == 3
    torch.testing.assert_close(store.all(), vecs)
    other = VectorManifest(
        **{**man.__dict__, "projection": Projector(dim=5, seed=9).describe(), "shards": []}
    )
    with pytest.raises(FingerprintMismatch, match="projection"):
        open_store(tmp_path / "vs", expected=other)
    with pytest.raises(FingerprintMismatch, match="model_fingerprint"):
        open_store(tmp_path / "vs", expected=VectorManifest(**{**man.__dict__, "model_fingerprint": "zzz"}))
    with pytest.raises(FingerprintMismatch, match="different list"):
        open_store(tmp_path / "vs", expected=man, expected_ids=ids[::-1])
    with pytest.raises(InputError):
        open_store(tmp_path / "nothing")


def test_param_set_parse():
    assert ParamSet.parse("names:mlp,q_proj").patterns == ("mlp", "q_proj")
    assert ParamSet.parse("lora").kind == "lora"
    with pytest.raises(InputError):
        ParamSet.parse("bogus")


class _Twice(torch.nn.Module):
    """Applies one square Linear twice per forward (the case the hooked route cannot take)."""

    def __init__(self, inner: torch.nn.Linear) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.inner(x))


def test_linear_applied_twice_falls_back_to_vmap_and_kfac_refuses_it(lm):
    """The internal reuse signal switches per-example gradients to vmap (same rows as a loop), and
    K-FAC fitting turns it into one clear InputError; the signal itself is not an InputError."""
    import copy

    from airsearch.methods.kfac import fit_factors
    from airsearch.methods.linear_layers import LayerReuseError

    assert not issubclass(LayerReuseError, InputError)
    twice = copy.copy(lm)
    twice.model = model = copy.deepcopy(lm.model)
    attn = model.model.layers[0].self_attn
    attn.o_proj = _Twice(attn.o_proj)
    examples = make_examples(4)
    enc = encode_examples(lm, examples)
    gm = prepare(twice, ParamSet("names", patterns=("*o_proj*",)))
    assert gm.linear_route()  # every parameter is a Linear's: the hooked route is tried first
    fast = gm.per_example_grads(enc, chunk_size=2)
    assert gm._linear_path == []  # ... and given up for vmap
    ref = loop_grads(model, gm.param_names, enc)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-6)
    gm = prepare(twice, ParamSet("names", patterns=("*o_proj*",)))
    with pytest.raises(InputError, match="ran 2 times"):
        fit_factors(gm, twice, examples, "kfac", show_progress=False)
