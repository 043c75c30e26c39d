"""Evaluation harness: metrics against references and method adapters (planted generators:
test_planted.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from airsearch.trainers.evaluation.methods import Method, group_scores, summed_scores, topk
from airsearch.trainers.evaluation.metrics import (
    bootstrap_mean_ci,
    lds_with_ci,
    precision_at_k,
    roc_auc,
    top_k_label_accuracy,
)
from airsearch.trainers.evaluation.select import select_by_best_rank
from sklearn.metrics import roc_auc_score

from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder
from airsearch.errors import InputError
from airsearch.labels import normalise_losses
from airsearch.scoring import group_score, sum_group_score


# ----------------------------------------------------------------------------- metrics
def test_lds_equals_hand_computation():
    # 4 subsets x 2 dev examples; losses and predicted group scores chosen by hand.
    losses = np.array([[1.0, 4.0], [2.0, 3.0], [3.0, 2.0], [4.0, 1.0]])
    targets = normalise_losses(losses)  # example 0: targets decrease with k; example 1: increase
    predicted = np.array([[0.9, 0.1], [0.8, 0.3], [0.1, 0.2], [0.2, 0.4]])
    # example 0: target ranks [4,3,2,1], predicted ranks [4,3,1,2] -> d^2 = 0+0+1+1 = 2
    #   rho = 1 - 6*2/(4*15) = 0.8
    # example 1: target ranks [1,2,3,4], predicted ranks [1,3,2,4] -> d^2 = 2 -> rho = 0.8
    per, ci = lds_with_ci(predicted, targets, n_resamples=200)
    assert per == pytest.approx([0.8, 0.8])
    assert ci.mean == pytest.approx(0.8)
    assert ci.low <= ci.mean <= ci.high


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_bootstrap_interval_contains_point(seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(0.2, 0.3, size=int(rng.integers(1, 40)))
    values[0] = np.nan  # NaNs (constant labels) are dropped
    ci = bootstrap_mean_ci(values, n_resamples=300, seed=seed)
    assert ci.low <= ci.mean <= ci.high
    assert ci.mean == pytest.approx(np.nanmean(values)) if ci.n else np.isnan(ci.mean)
    again = bootstrap_mean_ci(values, n_resamples=300, seed=seed)
    assert again == ci  # seeded
    skewed = bootstrap_mean_ci([0.0] * 30 + [1.0], n_resamples=50, seed=seed)
    assert skewed.low <= skewed.mean <= skewed.high


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(60) < 0.2
    y[:2] = [True, False]
    scores = np.round(rng.normal(size=60) + y, 1)  # rounding creates ties
    assert roc_auc(scores, y) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert np.isnan(roc_auc(scores, np.zeros(60, bool)))


def test_precision_at_k_matches_numpy_reference():
    rng = np.random.default_rng(5)
    scores, y = rng.normal(size=100), rng.random(100) < 0.3
    for k in (1, 5, 10, 100, 500):
        ref = y[np.argsort(-scores)[: min(k, 100)]].mean()
        assert precision_at_k(scores, y, k) == pytest.approx(ref)


def test_top_k_label_accuracy():
    ranked = [["a", "b", "a"], ["b", "a", "c"], ["c", "c", "c"]]
    acc = top_k_label_accuracy(ranked, ["a", "a", "a"], k=2)
    assert acc.top1 == pytest.approx(1 / 3)
    assert acc.topk_any == pytest.approx(2 / 3)
    assert acc.topk_share == pytest.approx((0.5 + 0.5 + 0) / 3)


# ----------------------------------------------------------------------------- method adapters
def _toy_corpus(n: int = 23) -> list[Example]:
    words = ["cat", "dog", "river", "England", "budget", "storm", "music", "train"]
    return [Example(f"t{i}", f"tell me about {words[i % 8]}", f"{words[i % 8]} fact {i}") for i in range(n)]


def test_embedding_group_scores_match_eq7_in_any_blocking(tiny_bert_dir):
    enc = AirRepEncoder.from_base(tiny_bert_dir, device="cpu")
    train, test = _toy_corpus(), _toy_corpus(3)
    method = Method.of("base", encoder=enc)
    method.prepare(train)
    members = [[0, 1, 2, 3], [5, 7, 11, 13, 17, 19], [22, 0, 4], [3, 3, 9]]  # repeats count twice
    e_train = torch.tensor(enc.encode(train), dtype=torch.float64)
    e_test = torch.tensor(enc.encode(test), dtype=torch.float64)
    ref_att = np.stack([group_score(e_test, e_train[rows]).numpy() for rows in members])
    ref_sum = np.stack([sum_group_score(e_test, e_train[rows]).numpy() for rows in members])
    for block in (4, 100):
        got = group_scores(method, test, members, block_size=block)
        assert np.allclose(got, ref_att, atol=1e-4)
        assert np.allclose(group_scores(method, test, members, "sum", block_size=block), ref_sum, atol=1e-3)
    scores, idx = topk(method, test, k=5, block_size=4)
    full = (e_train @ e_test.T).numpy().T
    assert np.array_equal(idx, np.argsort(-full, axis=1, kind="stable")[:, :5])
    summed = summed_scores(method, test, [[0, 2], [1]], block_size=7)
    assert np.allclose(summed, np.stack([full[[0, 2]].sum(0), full[1]], axis=1), atol=1e-3)


def test_bm25_and_random_adapters(tmp_path):
    train = _toy_corpus()
    bm25 = Method.of("bm25", workdir=tmp_path / "bm25")
    bm25.prepare(train)
    query = [Example("q", "what about storm", "storm")]
    full = np.concatenate([b for _, b in bm25.score_blocks(query, block_size=5)])[:, 0]
    storm_rows = [i for i, e in enumerate(train) if "storm" in e.response]
    assert set(np.nonzero(full)[0]) == set(storm_rows) and (full[storm_rows] > 0).all()
    assert bm25.storage_bytes > 0
    rnd = Method.of("random", seed=4)
    rnd.prepare(train)
    a = np.concatenate([b for _, b in rnd.score_blocks(query * 2, block_size=5)])
    b = np.concatenate([b for _, b in rnd.score_blocks(query * 2, block_size=5)])
    assert a.shape == (len(train), 2) and np.array_equal(a, b)
    with pytest.raises(InputError, match="unknown method"):
        Method.of("nope")


# ----------------------------------------------------------------------------- eval commands
def test_select_by_best_rank_reference():
    train = _toy_corpus(12)
    rnd = Method.of("random", seed=1)
    rnd.prepare(train)
    dev = _toy_corpus(3)
    full = np.concatenate([b for _, b in rnd.score_blocks(dev)])  # [n, q]
    ranks = np.argsort(np.argsort(-full, axis=0), axis=0)  # rank of each row per query
    best = ranks.min(axis=1)
    best_score = np.array([full[i, ranks[i].argmin()] for i in range(12)])
    ref = sorted(range(12), key=lambda i: (best[i], -best_score[i], i))[:4]
    assert select_by_best_rank(rnd, dev, 4) == ref


# ----------------------------------------------------------------------------- cluster bootstrap
def test_cluster_bootstrap_resamples_whole_clusters_hand_computed():
    """Two clusters: a resample is AA, AB, BA or BB, so its mean is mean(A), the pooled mean or mean(B)."""
    from airsearch.trainers.evaluation.metrics import cluster_bootstrap_mean_ci, cluster_bootstrap_means

    a, b = [0.1, 0.2, 0.3], [0.9, 1.1]  # cluster A: mean 0.2; cluster B: mean 1.0
    values = np.array(a + b)
    clusters = ["A", "A", "A", "B", "B"]
    means = cluster_bootstrap_means(values, clusters, n_resamples=4000, seed=1)
    pooled = values.mean()  # AB and BA: every value weighted once
    possible = np.array([0.2, pooled, 1.0])
    assert np.all(np.min(np.abs(means[:, None] - possible[None, :]), axis=1) < 1e-12)
    share = [np.mean(np.isclose(means, m)) for m in possible]  # 1/4, 1/2, 1/4
    assert np.allclose(share, [0.25, 0.5, 0.25], atol=0.03)
    ci = cluster_bootstrap_mean_ci(values, clusters, n_resamples=4000, seed=1)
    assert (ci.low, ci.high) == pytest.approx((0.2, 1.0))
    assert ci.mean == pytest.approx(pooled) and ci.n == 5
    # the example-level bootstrap of the same values is narrower: it ignores the clusters
    naive = bootstrap_mean_ci(values, n_resamples=4000, seed=1)
    assert naive.high - naive.low < ci.high - ci.low


def test_cluster_bootstrap_two_way_weights_multiply():
    """Tasks x splits crossed: a value's weight is count(its task) * count(its split)."""
    import itertools

    from airsearch.trainers.evaluation.metrics import cluster_bootstrap_means

    values = np.array([1.0, 2.0, 3.0, 4.0])
    keys = np.array([["t1", "s1"], ["t1", "s2"], ["t2", "s1"], ["t2", "s2"]])
    counts = [(2, 0), (1, 1), (0, 2)]
    possible = set()
    for t, s in itertools.product(counts, counts):
        w = np.array([t[0] * s[0], t[0] * s[1], t[1] * s[0], t[1] * s[1]], dtype=float)
        if w.sum() > 0:
            possible.add(round(float((w * values).sum() / w.sum()), 9))
    means = cluster_bootstrap_means(values, keys, n_resamples=3000, seed=0)
    seen = {round(float(m), 9) for m in means}
    assert seen <= possible and seen == possible  # every combination occurs, nothing else
    # a way with a single cluster changes nothing
    one = cluster_bootstrap_means(values, keys[:, 0], n_resamples=500, seed=3)
    both = cluster_bootstrap_means(values, np.c_[keys[:, 0], ["x"] * 4], n_resamples=500, seed=3)
    assert np.allclose(one, both)
