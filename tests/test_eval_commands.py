"""The eval commands end to end: LDS, classify, trace, select and the micro reproduction, with
their fingerprint refusals."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from airsearch.cli.main import app
from airsearch.trainers.evaluation.lds import EvalLdsConfig, eval_lds
from airsearch.trainers.evaluation.trace import EvalTraceConfig, eval_trace
from click.testing import CliRunner

from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder
from airsearch.scoring import group_score
from tests.helpers.cli import fill, run

# ----------------------------------------------------------------------------- metrics


def _rows(n: int, tag: str = "") -> list[Example]:
    topics = ["cat", "storm", "budget", "music"]
    return [
        Example(
            f"r{tag}{i}",
            f"Write about {topics[i % 4]} {tag}",
            f"A {topics[i % 4]} note {i}.",
            {"task": topics[i % 4]},
        )
        for i in range(n)
    ]


def _write_corpus(path, rows):
    from airsearch.data.corpus import write_rows

    write_rows(path, rows)
    return str(path)


def _gold_store(root, corpus_path, *, n_dev=4, n_pool=16, n_subsets=6, size=6, seed=0):
    """A real label store with known losses (what subset retraining would write)."""
    from airsearch.trainers.labels import LabelStore, make_manifest
    from airsearch.trainers.labels.sampling import SplitPlan

    from airsearch.data.corpus import load_corpus

    corpus = load_corpus(corpus_path)
    ids = [e.id for e in corpus.examples]
    rng = np.random.default_rng(seed)
    dev, pool = ids[:n_dev], ids[n_dev : n_dev + n_pool]
    subsets = [sorted(rng.choice(pool, size=size, replace=False).tolist()) for _ in range(n_subsets)]
    plan = SplitPlan(0, dev, pool, subsets)
    manifest = make_manifest(
        {"teacher": "retrain"},
        [plan],
        teacher="retrain",
        corpus_fingerprint=corpus.fingerprint,
        model_fingerprint="m0",
    )
    store = LabelStore.create(root, manifest, corpus.examples)
    losses = rng.normal(size=(n_subsets, n_dev))
    for k, members in enumerate(subsets):
        store.write_job_result(0, k, members, losses[k])
    return store, corpus, subsets, losses


def test_eval_lds_equals_hand_computation(tmp_path, tiny_bert_dir):
    from scipy.stats import spearmanr

    corpus_path = _write_corpus(tmp_path / "eval.jsonl", _rows(24))
    store, corpus, subsets, losses = _gold_store(tmp_path / "gold", corpus_path)
    cfg = EvalLdsConfig(
        corpus=[corpus_path],
        methods=("base", "bm25", "random"),
        base_encoder=str(tiny_bert_dir),
        gold=str(tmp_path / "gold"),
        out=str(tmp_path / "out"),
        bootstrap=100,
    )
    res = eval_lds(cfg)
    enc = AirRepEncoder.load(tiny_bert_dir, device="cpu")
    by_id = corpus.by_id()
    dev = [by_id[i] for i in store.dev_ids(0)]
    e_dev = torch.tensor(enc.encode(dev), dtype=torch.float64)
    pred = np.stack(
        [
            group_score(e_dev, torch.tensor(enc.encode([by_id[i] for i in m]), dtype=torch.float64)).numpy()
            for m in subsets
        ]
    )
    hand = [spearmanr(pred[:, j], -losses[:, j]).statistic for j in range(len(dev))]  # Eq. 8 keeps the order
    assert res.methods["base"].per_query == pytest.approx(hand, abs=1e-6)
    ci = res.methods["base"].lds
    assert ci.low <= ci.mean <= ci.high and ci.mean == pytest.approx(np.mean(hand), abs=1e-6)
    # the JSON that --json prints and lds.json holds keeps its shape
    written = json.loads((tmp_path / "out" / "lds.json").read_text())
    assert (
        written["methods"]["base"]["lds"] == res.to_dict()["methods"]["base"]["lds"] == dataclasses.asdict(ci)
    )
    assert "files" not in written and res.files["json"] == str(tmp_path / "out" / "lds.json")
    for f in ("lds.json", "lds.md", "lds.png", "lds_per_query.png"):
        assert (tmp_path / "out" / f).is_file()


EVAL_LDS = ("eval", "lds", "--gold", "{tmp}/gold", "--method", "random")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            ("--corpus", "{other}", "--out", "{tmp}/o"), "gold/corpus fingerprint mismatch", id="other-corpus"
        ),
        pytest.param(("--corpus", "{corpus}", "--encoder-labels", "{tmp}/gold"), "disjoint", id="overlap"),
    ],
)
def test_eval_lds_refuses_overlap_and_mismatch(tmp_path, options, message):
    corpus_path = _write_corpus(tmp_path / "eval.jsonl", _rows(24))
    _gold_store(tmp_path / "gold", corpus_path)
    other = _write_corpus(tmp_path / "other.jsonl", _rows(24, tag="x"))
    res = run(*fill((*EVAL_LDS, *options), tmp=tmp_path, corpus=corpus_path, other=other), ok=False)
    assert res.exit_code == 2 and message in res.output


def test_eval_lds_cli_json(tmp_path):
    corpus_path = _write_corpus(tmp_path / "eval.jsonl", _rows(24))
    _gold_store(tmp_path / "gold", corpus_path)
    options = ("--corpus", corpus_path, "--json", "--bootstrap", "50")
    res = run(*fill((*EVAL_LDS, *options), tmp=tmp_path))
    assert json.loads(res.stdout)["methods"]["random"]["lds"]["n"] == 4


def test_eval_classify_cli_and_mismatch(tmp_path, tiny_bert_dir):
    corpus_path = _write_corpus(tmp_path / "train.jsonl", _rows(20))
    queries = _write_corpus(tmp_path / "queries.jsonl", _rows(8, tag="q"))
    out = str(tmp_path / "out")
    args = [
        "eval",
        "classify",
        "--corpus",
        corpus_path,
        "--queries",
        queries,
        "--k",
        "3",
        "--out",
        out,
        "--method",
        "bm25",
        "--method",
        "random",
        "--method",
        "base",
        "--base-encoder",
        str(tiny_bert_dir),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "top-1 acc" in res.output
    payload = json.loads((tmp_path / "out" / "classify.json").read_text())
    assert payload["methods"]["bm25"]["top1"] == 1.0  # the topic word is shared with same-task rows only
    other = _write_corpus(tmp_path / "other.jsonl", _rows(20, tag="z"))
    res = CliRunner().invoke(app, [*args[:3], other, *args[4:]])
    assert res.exit_code == 2 and "gold/corpus fingerprint mismatch" in res.output


def test_eval_trace_entity_swap_and_pii(tmp_path, tiny_lm_dir):
    out = str(tmp_path / "trace")
    cfg = EvalTraceConfig(
        benchmark="entity-swap",
        n_synthetic=300,
        epochs=1,
        lm=str(tiny_lm_dir),
        out=out,
        methods=("bm25", "random", "gradcos"),
        k=5,
        max_new_tokens=8,
        batch_size=16,
    )
    res = eval_trace(cfg)
    assert res.n_injected >= 1 and res.queries["n_candidates"] == 8 * cfg.queries_per_type
    assert sum(res.positives_per_type.values()) == res.n_injected
    gold = json.loads((tmp_path / "trace" / "trace_entity_swap_gold.json").read_text())["gold"]
    assert {t: len(ids) for t, ids in gold.items()} == res.positives_per_type
    for m in res.methods.values():
        assert m.note is not None or 0.0 <= m.auc <= 1.0
        for t, s in (m.per_type or {}).items():  # R@k never asks for more rows than the type's positives
            assert s.k == min(cfg.k, res.positives_per_type[t]) and s.n_positive == res.positives_per_type[t]
    again = eval_trace(cfg)  # the fine-tuned checkpoints are reused, the figures are the same
    assert again.queries["training"] == res.queries["training"]
    assert again.methods["bm25"].per_type == res.methods["bm25"].per_type
    # PII: the tiny LM answers no held-out question within the cap, so nothing is traced (HAIF traces
    # only what the model answers correctly) and the result says how long it trained and what it answered
    pii_cfg = cfg.replace(benchmark="pii", n_people=6, methods=("bm25", "random"), pii_max_epochs=3)
    pii = eval_trace(pii_cfg)
    assert pii.n_candidates == 6 * cfg.bios_per_person and "n_injected" not in pii.to_dict()
    training = pii.queries["training"]
    assert training["epochs_trained"] == 3 and training["checkpoint_epochs"] == [3]
    assert [p["epoch"] for p in training["curve"]] == [1, 2, 3]
    assert pii.queries["answer_accuracy"] == training["curve"][-1]["value"] == 0.0
    assert pii.queries["n_correct"] == 0 and pii.queries["query_mode"] == "correctly answered (HAIF)"
    assert all(m.note == "no query showed the planted behaviour" for m in pii.methods.values())
    assert "answers 0 of 10 held-out questions" in pii.table
    # the planted gold in --out is tied to the source corpus: another corpus is refused
    corpus_path = _write_corpus(tmp_path / "c.jsonl", _rows(10))
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "trace",
            "--benchmark",
            "entity-swap",
            "--corpus",
            corpus_path,
            "--lm",
            str(tiny_lm_dir),
            "--out",
            out,
            "--method",
            "random",
            "--epochs",
            "1",
        ],
    )
    assert res.exit_code == 2 and "gold/corpus fingerprint mismatch" in res.output


def test_eval_select_and_mismatch(tmp_path, tiny_lm_dir):
    corpus_path = _write_corpus(tmp_path / "train.jsonl", _rows(20))
    queries = _write_corpus(tmp_path / "dev.jsonl", _rows(4, tag="d"))
    out = str(tmp_path / "sel")
    args = [
        "eval",
        "select",
        "--corpus",
        corpus_path,
        "--queries",
        queries,
        "--lm",
        str(tiny_lm_dir),
        "--n-select",
        "5",
        "--epochs",
        "1",
        "--out",
        out,
        "--method",
        "bm25",
        "--method",
        "random",
        "--json",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)  # --json is stdout; stderr may carry library warnings
    assert len(payload["methods"]["bm25"]["selected_ids"]) == 5 and "random 5" in payload["methods"]
    other = _write_corpus(tmp_path / "other.jsonl", _rows(20, tag="o"))
    res = CliRunner().invoke(app, [*args[:3], other, *args[4:]])
    assert res.exit_code == 2 and "gold/corpus fingerprint mismatch" in res.output


@pytest.mark.slow
def test_reproduction_pipeline_micro_scale(tmp_path, tiny_bert_dir, monkeypatch):
    """The whole study (benchmarks/reproduce.py) at a micro scale, then resumed (every stage skipped)."""
    import importlib.util
    import sys
    from pathlib import Path

    benchmarks = Path(__file__).parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(benchmarks))  # its sibling modules (stages.py, reproduce_report.py)
    spec = importlib.util.spec_from_file_location("reproduce", benchmarks / "reproduce.py")
    repro = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "reproduce", repro)  # dataclasses look their module up
    spec.loader.exec_module(repro)
    out = tmp_path / "micro"
    assert (
        repro.main(["--scale", "micro", "--out", str(out), "--base-encoder", str(tiny_bert_dir), "--quiet"])
        == 0
    )
    summary = (out / "README.md").read_text()
    assert "LDS on held-out tasks" in summary and "OTHER models and data" in summary
    assert "DDA without its debias term" in summary and "beta=0" in summary
    assert "Paired differences (AirRep minus another row)" in summary
    for section in ("paper gold protocol", "local gold protocol", "How far the gold fine-tunes move"):
        assert section in summary
    assert "LDS orderings under the two gold protocols" in summary
    for protocol in ("paper", "local"):
        lds = json.loads((out / "eval" / f"lds_{protocol}" / "lds.json").read_text())
        assert {"base", "bm25", "bm25:text=response", "random", "repsim"} <= set(lds["methods"])
        assert {"gradcos@1ckpt", "gradcos@1ckpt:proj_dim=64", "tracin@1ckpt"} <= set(lds["methods"])
        assert any(m.startswith("airrep:") for m in lds["methods"])
        assert lds["gold"]["protocol"] == protocol and lds["gold"]["max_length"] == 256
        assert lds["clusters"]["ways"] == ["task", "split"] and lds["paired"]
        gold = json.loads((out / "stages" / f"gold-{protocol}.json").read_text())
        assert gold["record"]["movement"]["param_distance"] > 0
    # DDA's sweep runs on the paper gold only, where th0 (the base LM) differs from the warm-up model
    paper = json.loads((out / "eval" / "lds_paper" / "lds.json").read_text())["methods"]
    assert {"dda@1ckpt:beta=0", "dda@1ckpt:beta=1,debias=eq9"} <= set(paper)
    for f in (
        "classify/classify.json",
        "trace/trace_entity_swap.json",
        "trace/trace_pii.json",
        "trace_ablation/trace_entity_swap.json",
        "trace_ablation/trace_pii.json",
        "lds_paper/lds.png",
        "lds_local/lds.png",
    ):
        assert (out / "eval" / f).is_file()
    stamp = (out / "stages" / "lds-paper.json").stat().st_mtime
    assert (
        repro.main(["--scale", "micro", "--out", str(out), "--base-encoder", str(tiny_bert_dir), "--quiet"])
        == 0
    )
    assert (out / "stages" / "lds-paper.json").stat().st_mtime == stamp  # finished stages are skipped
    # benchmarks/reproduce_interim.py: the finished encoders against the goal rows, in stages of its own
    spec = importlib.util.spec_from_file_location("reproduce_interim", benchmarks / "reproduce_interim.py")
    interim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(interim)
    argv = ["--scale", "micro", "--out", str(out), "--base-encoder", str(tiny_bert_dir), "--quiet", "--trace"]
    assert interim.main(argv) == 0
    tag = "retrain_teacher"
    for protocol in ("paper", "local"):
        lds = json.loads((out / "eval" / f"interim_{tag}_lds_{protocol}" / "lds.json").read_text())
        assert {"base", "bm25", "repsim", "gradcos@1ckpt:proj_dim=384"} <= set(lds["methods"])
        assert sum(m.startswith("airrep:") for m in lds["methods"]) == 2 and lds["paired"]
    assert (out / "eval" / f"interim_{tag}_classify" / "classify.json").is_file()
    assert (out / "eval" / f"interim_{tag}_trace" / "trace_entity_swap.json").is_file()
    names = {p.name for p in (out / "stages" / "interim").glob("*.json")}
    assert names == {
        f"interim-{tag}-{s}.json" for s in ("lds-paper", "lds-local", "classify", "trace-entity-swap")
    }
    assert (out / "stages" / "lds-paper.json").stat().st_mtime == stamp  # the full run's stages untouched
