"""The evaluation's search baselines as plug-ins of the one method contract (issue 25): each one's
scores through the one adapter equal a plain, slow reference on tiny inputs (explicit encoder dot
products, a LanceDB full-text query of our own, the seeded generator), and the three bugs fixed beside
them (Daunce's fingerprint, the row label's checkpoint count, ``hybrid:FOLDER``)."""

from __future__ import annotations

import dataclasses

import lancedb
import numpy as np
import pyarrow as pa
import pytest
import torch
from airsearch.trainers.evaluation.common import EvalConfig, build_methods
from airsearch.trainers.evaluation.methods import Method, group_scores, topk
from airsearch.trainers.evaluation.specs import method_config, run_label
from lancedb.index import FTS

from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder
from airsearch.lm import load_lm
from airsearch.methods.daunce import Daunce, RecordedLosses
from airsearch.methods.plugin import get_plugin, register_module, unregister
from airsearch.methods.registry import MethodConfig, Reranker, load_method
from airsearch.scoring import group_score

WORDS = ["cat", "dog", "river", "storm", "budget", "music", "train", "England"]


def _rows(n: int = 19) -> list[Example]:
    return [
        Example(f"t{i}", f"tell me about {WORDS[i % 8]}", f"{WORDS[i % 8]} {WORDS[(3 * i) % 8]} fact {i}")
        for i in range(n)
    ]


QUERIES = [Example("q0", "what about storm", "storm river"), Example("q1", "music please", "the dog")]


def _blocks(method: Method, test: list[Example], block_size: int) -> np.ndarray:
    return np.concatenate([b for _, b in method.score_blocks(test, block_size=block_size)])


@pytest.mark.parametrize("name", ["airrep", "base"])
def test_encoder_baselines_are_explicit_encoder_dot_products(name, tiny_encoder_dir):
    encoder = AirRepEncoder.load(tiny_encoder_dir, device="cpu")
    train = _rows()
    method = Method.of(name, encoder=encoder)
    method.prepare(train)
    assert method.impl.score_kind == "dot" and method.aggregation == "attention"  # Eq. 7 by default
    rows = np.stack([encoder.encode([e])[0] for e in train]).astype(np.float64)  # one row at a time
    queries = np.stack([encoder.encode([q])[0] for q in QUERIES]).astype(np.float64)
    ref = np.array([[float(r @ q) for q in queries] for r in rows])
    for block_size in (4, 4096):
        np.testing.assert_allclose(_blocks(method, QUERIES, block_size), ref, atol=1e-5)
    _, idx = topk(method, QUERIES, 5, block_size=3)
    assert np.array_equal(idx, np.argsort(-ref.T, axis=1, kind="stable")[:, :5])
    members = [[0, 1, 2], [3, 3, 8, 11]]
    want = np.stack([group_score(torch.tensor(queries), torch.tensor(rows[m])).numpy() for m in members])
    np.testing.assert_allclose(group_scores(method, QUERIES, members), want, atol=1e-5)
    assert method.fingerprint() == encoder.fingerprint
    # the same plug-in outside the evaluation: a folder given as its option, scored by `score`
    alone = load_method(MethodConfig(method=name, method_options=[f"encoder={tiny_encoder_dir}"]))
    np.testing.assert_allclose(alone.score(train, QUERIES).numpy(), ref, atol=1e-5)


def _fts_reference(tmp_path, texts: list[str], query: str) -> np.ndarray:
    """BM25 scores of every text for ``query`` from a LanceDB full-text index of our own."""
    table = lancedb.connect(str(tmp_path)).create_table(
        "ref", pa.table({"i": pa.array(range(len(texts)), pa.int64()), "text": pa.array(texts)})
    )
    table.create_index("text", config=FTS())
    res = table.search(query, query_type="fts").limit(len(texts)).select(["i", "_score"]).to_arrow()
    out = np.zeros(len(texts), np.float32)
    out[res["i"].to_numpy()] = res["_score"].to_numpy()
    return out


@pytest.mark.parametrize("text", ["full", "response"])
def test_bm25_equals_a_direct_lancedb_fts_query(text, tmp_path):
    train = _rows()
    method = Method.of("bm25", workdir=tmp_path / "bm25", text=text)
    method.prepare(train)
    assert method.impl.score_kind == "pairwise" and method.storage_bytes > 0
    got = _blocks(method, QUERIES, 5)
    for j, q in enumerate(QUERIES):
        side = (lambda e: e.response) if text == "response" else (lambda e: f"{e.prompt} {e.response}")
        ref = _fts_reference(tmp_path / f"ref-{j}", [side(e) for e in train], side(q))
        assert (ref > 0).sum() >= 2
        np.testing.assert_allclose(got[:, j], ref, rtol=1e-6)
        assert np.array_equal(np.argsort(-got[:, j], kind="stable"), np.argsort(-ref, kind="stable"))
    # as a reranker (query --rerank bm25): BM25 over the candidates themselves
    candidates = train[:8]
    scores = Reranker(load_method(MethodConfig(method="bm25")))(QUERIES[0], candidates)
    ref = _fts_reference(
        tmp_path / "rerank", [f"{e.prompt} {e.response}" for e in candidates], "what about storm storm river"
    )
    np.testing.assert_allclose(scores, ref, rtol=1e-6)


def test_random_is_seed_stable_and_block_exact():
    train = _rows()
    a, b, other = Method.of("random", seed=4), Method.of("random", seed=4), Method.of("random", seed=5)
    for m in (a, b, other):
        m.prepare(train)
    assert np.array_equal(_blocks(a, QUERIES, 5), _blocks(b, QUERIES, 5))
    assert not np.array_equal(_blocks(a, QUERIES, 5), _blocks(other, QUERIES, 5))
    # a block's values depend only on the seed, its first row and the number of queries
    ref = np.concatenate(
        [np.random.default_rng([4, s, 2]).standard_normal((min(5, 19 - s), 2)) for s in range(0, 19, 5)]
    ).astype(np.float32)
    assert np.array_equal(_blocks(a, QUERIES, 5), ref)


def test_hybrid_folder_spec_is_accepted_like_airrep(tiny_encoder_dir, other_encoder_dir, tmp_path):
    """``hybrid:FOLDER`` names the encoder of the fusion's vector side (it was refused as an option)."""
    cfg = EvalConfig(methods=(f"hybrid:{other_encoder_dir}", "hybrid"), encoder=str(tiny_encoder_dir))
    built = dict(build_methods(cfg, workdir=tmp_path))
    named = f"hybrid:{other_encoder_dir.name}"
    assert set(built) == {named, "hybrid"}
    for m in built.values():
        m.prepare(_rows())
    assert built[named].fingerprint() == AirRepEncoder.load(other_encoder_dir).fingerprint
    assert built["hybrid"].fingerprint() == AirRepEncoder.load(tiny_encoder_dir).fingerprint
    assert not np.array_equal(_blocks(built[named], QUERIES, 50), _blocks(built["hybrid"], QUERIES, 50))


def test_daunce_fingerprint_is_a_method_not_an_attribute():
    ids = [e.id for e in _rows(6)]
    losses = np.random.default_rng(0).normal(size=(3, 6))
    providers = [RecordedLosses(dict(zip(ids, r, strict=True))) for r in losses]
    method = Daunce(providers, model_fingerprint="run-abc")
    assert callable(method.fingerprint)  # the contract's fingerprint(), no longer shadowed
    assert method.manifest().model_fingerprint == "run-abc"
    fp = method.fingerprint()
    assert isinstance(fp, str) and fp == Daunce(providers, model_fingerprint="run-abc").fingerprint()
    assert fp != Daunce(providers, model_fingerprint="run-xyz").fingerprint()


def test_row_label_names_the_checkpoints_that_ran(tiny_lm_dir, tiny_lm_examples):
    """``@Nckpt`` comes from the plug-in's declaration and the models its build runs over."""
    lm = load_lm(tiny_lm_dir, device="cpu")
    cfg = EvalConfig(methods=("tracin:proj_dim=16", "dda:proj_dim=16", "haif:proj_dim=16"), lm="lm")
    built = dict(build_methods(cfg, lm=lm, checkpoints=[lm, lm], batch_size=4))
    assert set(built) == {"tracin@2ckpt:proj_dim=16", "dda@2ckpt:beta=0,proj_dim=16", "haif:proj_dim=16"}
    for label, m in built.items():
        m.prepare(tiny_lm_examples[:4])
        ran = m.impl.describe().get("checkpoints")
        assert (f"@{ran}ckpt" in label) if ran else "@" not in label
    # checkpoint folders in the method's own config count too; a method that declares no checkpoints
    # never claims any
    mcfg = MethodConfig(method="gradcos", checkpoints=[str(tiny_lm_dir)] * 3)
    assert run_label("gradcos", cfg, mcfg) == "gradcos@3ckpt"
    plugin, pairwise = register_module("tests.helpers.token_bag_method")
    try:
        assert run_label("token-bag", cfg, method_config(cfg, "token-bag"), n_checkpoints=2) == "token-bag"
        unregister(plugin.name)
        from airsearch.methods.plugin import register

        register(dataclasses.replace(plugin, checkpoints=True))
        assert get_plugin("token-bag").checkpoints
        assert (
            run_label("token-bag", cfg, method_config(cfg, "token-bag"), n_checkpoints=2) == "token-bag@2ckpt"
        )
    finally:
        unregister(plugin.name)
        unregister(pairwise.name)


def test_query_reranks_by_bm25_without_an_lm(tiny_lm_db, tmp_path):
    """Every command takes every plug-in: ``query --rerank bm25`` rescores AirRep's candidates by BM25
    over the candidates themselves, and needs no target LM."""
    import json

    from tests.helpers.cli import run

    query = Example("q", "What colour is the lemon?", "The lemon is gold.")
    common = ("query", "--db", tiny_lm_db, "--prompt", query.prompt, "--response", query.response, "--json")
    (plain,) = json.loads(run(*common, "-k", 8).stdout)
    candidates = [Example(c["id"], c["prompt"], c["response"]) for c in plain["proponents"]]
    (res,) = json.loads(run(*common, "-k", 8, "--rerank", "bm25", "--candidates", 8).stdout)
    assert res["reranked_by"] == "bm25"
    texts = [f"{e.prompt} {e.response}" for e in candidates]
    ref = _fts_reference(tmp_path, texts, "What colour is the lemon The lemon is gold")
    by_id = {e.id: float(s) for e, s in zip(candidates, ref, strict=True)}
    got = {p["id"]: p["score"] for p in res["proponents"]}
    assert got == pytest.approx(by_id, rel=1e-5)
