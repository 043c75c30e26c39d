"""The LDS gold under both protocols (``eval gold``), one max_length through every stage, and the
clustered intervals and paired differences of ``eval lds``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from airsearch.trainers.evaluation.gold import GoldConfig, make_gold, open_gold, warmup_split
from airsearch.trainers.evaluation.lds import EvalLdsConfig, eval_lds
from airsearch.trainers.evaluation.metrics import bootstrap_mean_ci, cluster_bootstrap_mean_ci
from airsearch.trainers.labels import LabelConfig, generate_labels

from airsearch.data.corpus import load_corpus, write_rows
from airsearch.data.example import Example
from airsearch.errors import FingerprintMismatch, InputError
from airsearch.lm import load_lm
from tests.helpers.cli import run

SIZES = dict(splits=2, dev_size=4, pool_size=16, subset_size=6, subsets_per_split=4, epochs=1, lr=1e-2)
SIZES.update(batch_size=4, max_length=32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_lm_examples):
    """The tiny LM's question rows, each labelled with its task (the thing asked about)."""
    rows = [
        Example(e.id, e.prompt, e.response, {"task": e.prompt.split()[-1].rstrip("?")})
        for e in tiny_lm_examples
        if e.prompt
    ]
    return write_rows(tmp_path_factory.mktemp("gold_corpus") / "eval.jsonl", rows)


@pytest.fixture(scope="module")
def golds(tmp_path_factory, corpus, tiny_lm_dir):
    """One gold per protocol, made once for the module."""
    root = tmp_path_factory.mktemp("golds")
    out = {}
    for protocol in ("paper", "local"):
        cfg = GoldConfig(
            corpus=[str(corpus)], lm=str(tiny_lm_dir), out=str(root / protocol), gold_protocol=protocol,
            warmup_size=12, warmup_epochs=2, warmup_lr=1e-2, **SIZES,
        )  # fmt: skip
        out[protocol] = make_gold(cfg, quiet=True)
    return out


def test_paper_gold_warms_up_on_a_disjoint_sample_and_starts_fine_tunes_from_the_base(
    golds, corpus, tiny_lm_dir
):
    rec = golds["paper"].record
    gold = open_gold(golds["paper"].out)
    base = load_lm(tiny_lm_dir, max_length=32)
    # gold fine-tunes start from the base model; gradients are taken on the warm-up model
    assert gold.store.manifest["model_fingerprint"] == base.fingerprint == gold.start_fingerprint
    warm = load_lm(gold.gradient_lm, max_length=32)
    assert warm.fingerprint == gold.gradient_fingerprint != base.fingerprint
    # the warm-up sample is disjoint from every gold dev and pool example
    rows = load_corpus(corpus).examples
    sample, rest = warmup_split(rows, 12, 0)
    assert len(sample) == 12 and {e.id for e in sample}.isdisjoint(gold.store.examples())
    assert set(gold.store.examples()) <= {e.id for e in rest}
    assert rec["warmup"]["n"] == 12 and rec["warmup"]["param_distance"] > 0
    assert rec["warmup"]["loss_after"] < rec["warmup"]["loss_before"]
    assert rec["protocol"] == "paper" and rec["max_length"] == 32 and rec["meets_paper_sizes"] is False


@pytest.mark.parametrize("protocol", ["paper", "local"])
def test_gold_records_how_far_fine_tunes_move(golds, protocol, tiny_lm_dir):
    """Mean parameter distance and loss changes, recomputed by hand from the stored jobs."""
    from airsearch.lm import example_losses

    gold = open_gold(golds[protocol].out)
    moved = golds[protocol].record["movement"]
    jobs = [gold.store.read_job(j) for j in gold.store.done_job_ids()]
    assert moved["jobs"] == len(jobs) == 8
    assert moved["param_distance"] == pytest.approx(np.mean([j["param_distance"] for j in jobs]))
    assert moved["param_distance"] > 0 and moved["train_loss_change"] < 0  # the fine-tunes moved and fit
    base = load_lm(tiny_lm_dir, max_length=32)
    examples = gold.store.examples()
    before = [np.mean(example_losses(base, [examples[i] for i in s.dev_ids])) for s in gold.store.splits()]
    after = [s.losses.mean(axis=1) for s in gold.store.splits()]
    assert moved["dev_loss_before"] == pytest.approx(np.mean(before), rel=1e-5)
    assert moved["dev_loss_change"] == pytest.approx(
        np.mean(np.concatenate(after)) - np.mean(before), rel=1e-4
    )
    if protocol == "local":
        assert gold.gradient_fingerprint == gold.start_fingerprint


def test_gold_rerun_with_other_settings_is_refused(golds, corpus, tiny_lm_dir):
    cfg = GoldConfig(
        corpus=[str(corpus)], lm=str(tiny_lm_dir), out=golds["paper"].out, gold_protocol="paper",
        warmup_size=10, warmup_lr=1e-2, **SIZES,
    )  # fmt: skip
    with pytest.raises(FingerprintMismatch, match="gold made with other"):
        make_gold(cfg, quiet=True)


def test_gold_identity_leaves_out_the_teacher_options_and_a_rerun_resumes(golds, corpus, tiny_lm_dir):
    """A gold always retrains: the gradient-teacher options (``--precondition`` ...) are not part of
    its recorded config, so a gold recorded before they existed resumes as it did."""
    from airsearch.methods.registry import PRECONDITION_FIELDS

    config = golds["local"].record["config"]
    assert not set(config) & {*PRECONDITION_FIELDS, "teacher_params"} and config["teacher"] == "retrain"
    cfg = GoldConfig(
        corpus=[str(corpus)], lm=str(tiny_lm_dir), out=golds["local"].out, gold_protocol="local",
        warmup_size=12, warmup_epochs=2, warmup_lr=1e-2, **SIZES,
    )  # fmt: skip
    again = make_gold(cfg, quiet=True)
    assert again.labels.done_jobs == again.labels.total_jobs == 8 and again.labels.completed_jobs == 0


def test_eval_lds_on_the_paper_gold(golds, corpus, tiny_lm_dir, tmp_path):
    """Gradient methods run on the recorded warm-up model, DDA subtracts the base; the base model as
    the gradient LM is refused; intervals are cluster bootstraps over task x split."""
    methods = ("random", "bm25", "bm25:text=response", "tracin", "gradcos", "dda:beta=0.5,debias=eq9")
    cfg = EvalLdsConfig(
        corpus=[str(corpus)], gold=golds["paper"].out, methods=methods, bootstrap=200, out=str(tmp_path)
    )
    res = eval_lds(cfg)
    assert set(res.methods) == {
        "random", "bm25", "bm25:text=response", "tracin@1ckpt", "gradcos@1ckpt",
        "dda@1ckpt:beta=0.5,debias=eq9",
    }  # fmt: skip
    assert res.gold.protocol == "paper" and res.gold.max_length == 32
    assert res.fingerprints["lm"] == res.fingerprints["gradient_model"] != res.fingerprints["gold_model"]
    # the clustered interval is the cluster bootstrap over [task, split], the example-level one beside it
    assert res.clusters.ways == ["task", "split"] and res.clusters.n_clusters["split"] == 2
    keys = np.asarray(res.clusters.per_query, dtype=object)
    for r in res.methods.values():
        assert r.lds == cluster_bootstrap_mean_ci(r.per_query, keys, n_resamples=200, seed=0)
        assert r.lds_examples == bootstrap_mean_ci(r.per_query, n_resamples=200, seed=0)
    written = json.loads((tmp_path / "lds.json").read_text())
    assert {"lds", "lds_examples"} <= set(written["methods"]["tracin@1ckpt"])
    n_tasks = len({t for t, _ in res.clusters.per_query})
    assert res.clusters.n_clusters["task"] == n_tasks >= 2
    assert f"resampling task ({n_tasks}) x split (2)" in res.table

    with pytest.raises(FingerprintMismatch, match="warm-up model"):
        eval_lds(cfg.replace(lm=str(tiny_lm_dir), out=None))


def test_paired_differences_are_clustered(golds, corpus, tiny_bert_dir, tmp_path):
    cfg = EvalLdsConfig(
        corpus=[str(corpus)], gold=golds["local"].out, methods=("airrep", "base", "random"),
        encoder=str(tiny_bert_dir), base_encoder=str(tiny_bert_dir), bootstrap=200,
    )  # fmt: skip
    res = eval_lds(cfg)
    assert set(res.paired) == {"airrep - base", "airrep - random"}
    d = res.paired["airrep - random"]
    gain = np.asarray(res.methods["airrep"].per_query) - np.asarray(res.methods["random"].per_query)
    keys = np.asarray(res.clusters.per_query, dtype=object)
    assert d.clustered == cluster_bootstrap_mean_ci(gain, keys, n_resamples=200, seed=0)
    assert d.examples == bootstrap_mean_ci(gain, n_resamples=200, seed=0)
    assert d.share_better == pytest.approx(np.mean(gain > 0))
    assert res.paired["airrep - base"].clustered.mean == pytest.approx(0.0)  # the same encoder


def test_a_max_length_mismatch_is_refused(golds, corpus, tiny_lm_dir, tmp_path):
    """One recorded max_length (the gold's, 32) follows the LM: a config, an LM or an encoder's training
    labels with another one are refused."""
    cfg = EvalLdsConfig(corpus=[str(corpus)], gold=golds["local"].out, methods=("tracin",), bootstrap=20)
    assert eval_lds(cfg).gold.max_length == 32  # the LM is loaded with the gold's budget by default
    with pytest.raises(InputError, match="max_length 64 differs from the gold's 32"):
        eval_lds(cfg.replace(max_length=64))
    with pytest.raises(InputError, match="loaded with max_length 512, the gold with 32"):
        eval_lds(cfg, lm=load_lm(tiny_lm_dir))
    other = tmp_path / "other.jsonl"
    write_rows(other, [Example(f"o{i}", f"What is {i}?", f"It is {i}.") for i in range(12)])
    labels = LabelConfig(
        corpus=[str(other)], lm=str(tiny_lm_dir), out=str(tmp_path / "labels"), splits=1, dev_size=2,
        pool_size=6, subset_size=3, subsets_per_split=2, epochs=1, max_length=48,
    )  # fmt: skip
    generate_labels(labels, quiet=True)
    with pytest.raises(InputError, match="training labels used max_length 48, the gold 32"):
        eval_lds(cfg.replace(encoder_labels=[str(tmp_path / "labels")]))
    # labels of another target LM (an encoder transferred across targets) keep their own LM's budget
    from tests.helpers.models import build_micro_lm

    transferred = labels.replace(lm=str(build_micro_lm(tmp_path / "micro", steps=2)), out=str(tmp_path / "t"))
    generate_labels(transferred, quiet=True)
    assert eval_lds(cfg.replace(encoder_labels=[transferred.out])).gold.max_length == 32
    res = run("eval", "lds", "--gold", golds["local"].out, "--corpus", corpus, "--method", "tracin",
              "--max-length", 64, ok=False)  # fmt: skip
    assert res.exit_code == 2 and "--max-length" in res.output and "Traceback" not in res.output


def test_eval_gold_cli(tmp_path, corpus, tiny_lm_dir):
    res = run(
        "eval", "gold", corpus, "--lm", tiny_lm_dir, "--out", tmp_path / "g", "--gold-protocol", "local",
        "--splits", 1, "--dev-size", 4, "--pool-size", 12, "--subset-size", 4, "--subsets-per-split", 3,
        "--epochs", 1, "--max-length", 32, "--json",
    )  # fmt: skip
    out = json.loads(res.stdout)
    assert out["protocol"] == "local" and out["record"]["movement"]["jobs"] == 3
    bad = run("eval", "gold", corpus, "--lm", tiny_lm_dir, "--out", tmp_path / "h", "--gold-protocol", "x",
              ok=False)  # fmt: skip
    assert bad.exit_code == 2 and "--gold-protocol" in bad.output
