"""The target-LM size sweep (benchmarks/size_sweep.py): its cost arithmetic, and the whole sweep at micro."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
from airsearch.trainers.evaluation.report import pareto_frontier

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _load(name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # sibling modules (stages.py, reproduce.py, ...)
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_pareto_frontier_keeps_the_undominated_points_cheapest_first():
    points = {
        "a": (1.0, 0.2),
        "b": (2.0, 0.5),
        "c": (3.0, 0.4),
        "d": (0.5, 0.1),
        "e": (2.0, 0.5),
        "f": (9, math.nan),
    }
    assert pareto_frontier(points) == ["d", "a", "b", "e"]  # c costs more than b for less; ties both stay


def test_break_even_query_counts(monkeypatch):
    report = _load("size_sweep_report", monkeypatch)
    row = report.Row
    airrep = row(
        "airrep:x", "airrep", 0.3, 0.2, 0.4, ms_per_query=10.0, bytes_per_example=1536, one_off_s=100.0
    )
    grad = row(
        "gradcos", "gradient", 0.5, 0.4, 0.6, ms_per_query=60.0, bytes_per_example=1536, one_off_s=50.0
    )
    assert report.break_even(airrep, grad) == 1000  # 50 s more up front, 50 ms less per query
    cheap = row("g", "gradient", 0.5, 0.4, 0.6, ms_per_query=5.0, bytes_per_example=0, one_off_s=50.0)
    assert report.break_even(airrep, cheap) == math.inf  # dearer per query and up front: never
    dear = row("g", "gradient", 0.5, 0.4, 0.6, ms_per_query=60.0, bytes_per_example=0, one_off_s=500.0)
    assert report.break_even(airrep, dear) == 0


@pytest.mark.slow
def test_size_sweep_micro(tmp_path, tiny_bert_dir, monkeypatch):
    """Every stage at micro sizes, the report and its goals, then a resume that skips every stage."""
    monkeypatch.setenv("AIRSEARCH_QUIET", "1")
    sweep = _load("size_sweep", monkeypatch)
    out = tmp_path / "micro"
    argv = ["--scale", "micro", "--out", str(out), "--base-encoder", str(tiny_bert_dir), "--quiet"]
    assert sweep.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    sizes = ["S0", "S1", "S2"]
    params = [res["lms"][s]["num_parameters"] for s in sizes]
    assert params == sorted(params) and len(set(params)) == 3
    for s in sizes:
        lm = res["lms"][s]
        assert lm["held_out_curve"][0][0] == 0 and len(lm["held_out_curve"]) >= 2
        assert (out / f"pareto_{s}.png").stat().st_size > 0
        names = {r["name"] for r in res["rows"][s]}
        assert {"base", "bm25", "random", "repsim"} <= names
        for m in ("tracin", "gradcos"):
            assert {f"{m}@1ckpt:proj_dim=16", f"{m}@1ckpt:params=lora,proj_dim=16"} <= names
        assert "airrep:airrep_S0_retrain" in names  # trained on S0's labels, applied unchanged
        assert f"airrep:airrep_{s}_teacher" in names
        if s != "S0":
            assert "proxy:gradcos@1ckpt:proj_dim=16" in names  # S0's gradients as a proxy
        assert all(r["one_off_s"] >= 0 for r in res["rows"][s] if r["kind"] != "baseline")
        assert res["frontier"][s]
    assert (out / "lm_curves.png").is_file()
    # the same gold subsets and queries at every size (sampling depends on the rows only)
    golds = [json.loads((out / "stages" / f"{s}-gold.json").read_text())["record"] for s in sizes]
    assert len({g["gold_corpus_fingerprint"] for g in golds}) == 1
    assert len({g["start_lm"]["fingerprint"] for g in golds}) == 3
    proxy = json.loads((out / "eval" / "lds_S2_proxy" / "lds.json").read_text())
    assert proxy["fingerprints"]["proxy_lm"] == golds[0]["gradient_lm"]["fingerprint"]
    ablations = res["ablations"]
    assert {a["encoder"] for a in ablations} >= {"airrep:airrep_S0_retrain", "airrep:airrep_S0_mix"}
    assert sum(a["chosen"] for a in ablations) == 1
    assert all(a["held_out_split_lds"] is not None for a in ablations)
    kept = next(a["encoder"] for a in ablations if a["chosen"])  # chosen on the held-out split
    for s in sizes:  # and, unless it is the baseline, evaluated at every size
        assert kept in {r["name"] for r in res["rows"][s]}
    assert set(res["goals"]) == {
        "S0: AirRep beats BM25 and base",
        "S2: AirRep on the Pareto frontier",
        "SmolLM2-135M: gradient >= 100x AirRep per query",
    }
    assert all(g["status"] in ("met", "not met", "not measured") for g in res["goals"].values())
    readme = (out / "README.md").read_text()
    for section in ("## S0: LDS x cost", "## S2: LDS x cost", "## Ablations at S0", "## Goals (issue 11)"):
        assert section in readme
    stamp = (out / "stages" / "S2-lds.json").stat().st_mtime
    assert sweep.main(argv) == 0
    assert (out / "stages" / "S2-lds.json").stat().st_mtime == stamp  # finished stages are skipped


def test_gpu_micro_preset_takes_the_gpu_code_path(monkeypatch):
    """`reproduce.py --scale gpu-micro` differs from `--scale gpu` in sizes only: the same methods,
    gradient rows, DDA and Daunce variants and an imported target LM (no tiny LM is built)."""
    repro = _load("reproduce", monkeypatch)
    gpu, micro = repro.SCALES["gpu"], repro.SCALES["gpu-micro"]
    for field in (
        "gradient",
        "lds_lora",
        "dda_debias",
        "lm_steps",
        "micro_lm",
        "gold_splits",
        "gold_subsets",
    ):
        assert getattr(micro, field) == getattr(gpu, field), field
    assert micro.daunce_models >= 2 and len(micro.lds_proj_dims) == 1 and micro.splits == 2
    assert micro.tasks * micro.per_task < gpu.tasks * gpu.per_task


def test_a_transferred_encoder_costs_its_own_labels_and_training(monkeypatch):
    """The converged reproduction's encoder, a row at every size of ``--scale converged``: its Pareto
    point's one-off cost is its labels' and its training's, read from the stage records beside it."""
    sweep, report = _load("size_sweep", monkeypatch), _load("size_sweep_report", monkeypatch)
    folder = BENCHMARKS / "results" / "reproduction" / "converged" / "airrep_retrain"
    stages = folder.parent / "stages"
    labels = json.loads((stages / "labels.json").read_text())["stage_seconds"]
    training = json.loads((stages / "encoder_retrain.json").read_text())
    got = sweep.transferred(folder)
    assert got["steps"] == training["steps"] and got["stop_reason"] == training["stop_reason"]
    assert got["one_off_seconds"] == labels + max(training["seconds"], training["stage_seconds"])
    encoders = {"S0": {}, "transfer": {"airrep_retrain": got}}
    assert report.trained_encoder("airrep:airrep_retrain", encoders, {}) is got
    assert report.trained_encoder("airrep:airrep_S0_retrain", encoders, {}) is None  # not trained here
    assert (
        "benchmarks/results/reproduction/converged/airrep_retrain"
        in sweep.SCALES["converged"].transfer_encoders
    )
