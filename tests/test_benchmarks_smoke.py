"""Every benchmark script runs for real, at micro size, through its own ``main(argv)`` into a temporary
folder (nothing under ``benchmarks/results/`` is touched), and imports airsearch only through the front
door (``from airsearch import ...``, names in ``airsearch.__all__``).

The figures of a micro run mean nothing; what is tested is that each script's whole code path still
runs against today's product and writes its results. The two studies are run at micro size by their
own tests (``COVERED_ELSEWHERE``).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import airsearch
from tests.helpers.corpora import write_corpus

BENCH = Path(__file__).parents[1] / "benchmarks"
ROOT = BENCH.parent
COVERED_ELSEWHERE = {
    "reproduce": "tests/test_eval_commands.py",  # test_reproduction_pipeline_micro_scale
    "reproduce_interim": "tests/test_eval_commands.py",  # the same test, after the full micro run
    "size_sweep": "tests/test_size_sweep.py",
}
# the one import past the front door: bench_train_steps.py times the two passes of a training step by
# wrapping the functions of the (documented) module that runs them; the front door has no phase timer
ALLOWED_INTERNAL = {"bench_train_steps.py": {"airsearch.trainers.encoder_training.two_pass"}}


def run_benchmark(name: str, argv: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Load ``benchmarks/NAME.py`` as a module (its siblings importable) and run ``main(argv)``."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"smoke_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    threads = torch.get_num_threads()
    try:
        spec.loader.exec_module(module)
        assert module.main([str(a) for a in argv]) == 0
    finally:
        torch.set_num_threads(threads)  # some scripts set their own


def read_json(path: Path) -> dict[str, Any]:
    assert path.is_file(), path
    return json.loads(path.read_text())


# name -> (argv given the fixtures, check of the results folder)
Fixtures = dict[str, Path]
CASES: dict[str, tuple[Callable[[Fixtures], list[Any]], Callable[[Path], None]]] = {}


def case(name: str, argv: Callable[[Fixtures], list[Any]]) -> Callable[[Callable[[Path], None]], None]:
    def register(check: Callable[[Path], None]) -> None:
        CASES[name] = (argv, check)

    return register


@case(
    "bench_methods",
    lambda f: ["--train", 4, "--queries", 2, "--lm-steps", 2, "--daunce-models", 3, "--threads", 1],
)
def _(out: Path) -> None:
    rows = read_json(out / "bench_methods.json")["rows"]
    assert [r["method"].split(" ")[0] for r in rows] == [
        "tracin", "gradcos", "dda", "haif", "haif-t", "daunce", "AirRep"
    ]  # fmt: skip
    assert all(r["seconds"] > 0 for r in rows) and (out / "bench_methods.md").is_file()


@case(
    "bench_encode",
    lambda f: ["--encoder", f["encoder"], "--runtimes", "torch", "--rows", 4, "--short-rows", 4, "--repeats", 1,
               "--batch-size", 4, "--recall-rows", 12, "--queries", 3],
)  # fmt: skip
def _(out: Path) -> None:
    res = read_json(out / "encode.json")
    assert set(res["corpora"]["sample"]["throughput"]) == {"raw sentence-transformers", "torch"}
    assert res["quality"]["by_runtime"]["torch"]["recall_at_10"] == 1.0
    assert "LDS on the evaluation harness: not measured" in (out / "encode.md").read_text()


@case(
    "bench_index",
    lambda f: ["--sizes", 300, "--types", "IVF_HNSW_SQ", "--encoder", f["encoder"], "--sample-rows", 60,
               "--cache", f["tmp"] / "cache", "--work", f["tmp"] / "work"],
)  # fmt: skip
def _(out: Path) -> None:
    (size,) = read_json(out / "index.json")["sizes"]
    assert size["rows"] == 300 and size["ann"] and all(0 <= a["recall@10"] <= 1 for a in size["ann"])


@case(
    "bench_ann_sweep",
    lambda f: ["--rows", 300, "--plans", "auto", "--faiss", "hnsw", "--select-targets", 20, "--queries", 10,
               "--encoder", f["encoder"], "--sample-rows", 60, "--cache", f["tmp"] / "cache",
               "--work", f["tmp"] / "work"],
)  # fmt: skip
def _(out: Path) -> None:
    res = read_json(out / "ann_sweep.json")
    assert {r["plan"] for r in res["runs"]} == {"auto", "faiss_hnsw"}
    assert res["select"]["rows"] == 300 and res["select"]["selected"] == 3
    assert (out / "ann_sweep.md").is_file()


@case(
    "bench_index_ray",
    lambda f: ["--rows", 12, "--workers", "--encoder", f["encoder"], "--work", f["tmp"] / "work"],
)  # the Ray path itself: tests/test_index_ray.py (a local Ray cluster is too slow for a smoke run)
def _(out: Path) -> None:
    (run,) = read_json(out / "index_ray.json")["runs"]
    assert run["path"] == "one machine" and run["rows_per_second"] > 0


@case(
    "bench_hybrid",
    lambda f: ["--per-task", 2, "--queries-per-task", 1, "--n-synthetic", 60, "--n-people", 4,
               "--trace-epochs", 1, "--encoder", f["encoder"], "--lm", f["lm"], "--work", f["tmp"] / "work"],
)  # fmt: skip
def _(out: Path) -> None:
    res = read_json(out / "hybrid.json")
    assert res["methods"] == ["airrep", "bm25", "hybrid"]
    assert {"classify", "entity-swap", "pii"} <= set(res)


@case(
    "bench_method_columns",
    lambda f: ["--sample-rows", 40, "--queries", 2, "--lm-steps", 2, "--proj-dim", 16, "--recompute-queries", 1,
               "--big-rows", 60, "--latency-rows", 90, "--latency-queries", 2, "--encoder", f["encoder"],
               "--threads", 1, "--work", f["tmp"] / "work"],
)  # fmt: skip
def _(out: Path) -> None:
    res = read_json(out / "method_columns.json")
    assert res["small"]["build"]["rows"] == 40 and res["big"]["rows"] == 60
    lat = res["latency"]  # 90 rows: the 40 sample rows and their vectors copied; latency only, no recall
    assert lat["rows"] == 90 and lat["build"]["copied_from_rows"] == 40 and "recall_at_10" not in lat
    assert lat["latency_ms"]["column_ann_search"] > 0 and lat["wall_ms"]["query_vector"] > 0
    assert "Goal: latency at 90 rows" in (out / "method_columns.md").read_text()
    assert 0 <= res["small"]["recall_at_10"]["column_ann"] <= 1
    for source in ("airrep", "bm25", "hybrid"):
        e = res["small"]["end_to_end_c200"][source]
        assert e["stored"]["total_ms"] > 0 and e["recompute"]["total_ms"] > 0
    assert (out / "method_columns.md").is_file()


@case(
    "bench_labels",
    lambda f: ["--lm", f["lm"], "--rows", 100, "--repeats", 1, "--batch", 2, "--teacher-splits", 2,
               "--teacher-subsets", 2, "--work", f["tmp"] / "work"],
)  # fmt: skip
def _(out: Path) -> None:
    res = read_json(out / "label_throughput.json")
    assert res["labels_equal"] is True and res["teacher"]["jobs"] == 4
    assert "EXTRAPOLATED" in (out / "label_throughput.md").read_text()


@case("airrep_official_check", lambda f: [])
def _(out: Path) -> None:
    assert read_json(out / "airrep_official_check.json")["holds"] is True


@case(
    "bench_encode_lds",
    lambda f: ["--scale", "micro", "--base-encoder", f["bert"], "--runtime", "onnx", "--quantize", "none",
               "--classify-rows", 40, "--classify-queries", 5, "--work", f["tmp"] / "work"],
)  # fmt: skip
def _(out: Path) -> None:
    lds = read_json(out / "encode.json")["lds"]
    assert set(lds["lds"]) == {"torch", "onnx-none"} and "rule_met" in lds


@case(
    "bench_serve",
    lambda f: ["--rows", 60, "--sample-rows", 40, "--encoder", f["encoder"], "--clients", 2, "--seconds", 2,
               "--single-seconds", 1, "--warmup-seconds", 1, "--append-rows", 5, "--append-every", 1,
               "--work", f["tmp"] / "work"],
)  # fmt: skip
def _(out: Path) -> None:
    res = read_json(out / "serve.json")
    assert res["table"]["rows"] == 60 and res["errors"] == 0 and res["row_count_never_decreased"]


@case(
    "bench_startup",
    lambda f: ["--repeats", 1, "--data-repeats", 1, "--rows", 20, "--encoder", f["encoder"],
               "--work", f["tmp"] / "work"],
)  # fmt: skip
def _(out: Path) -> None:
    res = read_json(out / "startup.json")
    assert res["cold_data_commands"]["rows"] == 20 and res["command_lines"]


@case(
    "bench_train_steps",
    lambda f: ["--labels", f["labels"], "--base-encoder", f["encoder"], "--holdout", 1, "--full-steps", 3,
               "--profile-steps", 1, "--eval-every", 1, "--options", "freeze1", "--work", f["tmp"] / "work"],
)  # fmt: skip
def _(out: Path) -> None:
    res = json.loads(out.with_suffix(".json").read_text())
    assert set(res["profile"]) == {"full", "freeze1"} and [r["option"] for r in res["options"]] == [
        "full",
        "freeze1",
    ]
    assert all(
        r["curve"][-1]["cpu"] <= res["cpu_budget"] + max(r["cpu_seconds_per_step"], 1) for r in res["options"]
    )
    assert (
        out.parent / "train_steps_runs" / "freeze1_t0.json"
    ).is_file()  # a stage: kept, skipped when rerun


def _micro_study(f: Fixtures) -> Path:
    """A size sweep's layout at micro size: S0's label store (teacher labels), the base encoder and
    one "kept" encoder (the tiny encoder again) with the stage record the trainer writes."""
    import shutil

    sweep = f["tmp"] / "sweep"
    shutil.copytree(teacher_labels(f), sweep / "S0" / "labels")
    shutil.copytree(f["encoder"], sweep / "base_encoder_128")
    shutil.copytree(f["encoder"], sweep / "S0" / "airrep_S0_retrain")
    stage = {"steps": 4, "best_step": 2, "stop_reason": "plateau", "best_lds": 0.1}
    (sweep / "stages").mkdir()
    (sweep / "stages" / "S0-encoder-retrain.json").write_text(json.dumps(stage))
    return sweep


@case(
    "heldout_noise",
    lambda f: ["--sweep", _micro_study(f), "--reproduction", f["tmp"] / "none", "--resamples", 20],
)
def _(out: Path) -> None:
    (study,) = read_json(out / "heldout_noise.json")["studies"]
    e = study["encoders"]["retrain"]
    assert study["study"] == "size sweep S0" and e["steps"] == 4
    assert e["minus_base"]["mean"] == 0.0  # the same encoder: no difference on any resample
    assert e["lds"]["low"] <= e["lds"]["mean"] <= e["lds"]["high"]


@case("airrep_loop", lambda f: ["--scale", "micro", "--seeds", 0, "--work", f["tmp"] / "work"])
def _(out: Path) -> None:
    res = read_json(out / "results_micro.json")
    assert {"lm", "labels", "noise", "train-0", "eval", "reference"} <= set(res["stages"])
    assert (out / "README_micro.md").is_file()


SLOW = {"bench_encode_lds", "bench_serve", "bench_startup", "bench_train_steps", "airrep_loop"}


@pytest.fixture
def fixtures(
    tmp_path: Path, tiny_encoder_dir: Path, tiny_bert_dir: Path, tiny_lm_dir: Path, tiny_lm_examples: list
) -> Fixtures:
    return {
        "tmp": tmp_path,
        "encoder": tiny_encoder_dir,
        "bert": tiny_bert_dir,
        "lm": tiny_lm_dir,
        "examples": tiny_lm_examples,  # type: ignore[dict-item]
    }


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CASES])
def test_benchmark_runs_at_micro_size(name: str, fixtures: Fixtures, monkeypatch: pytest.MonkeyPatch) -> None:
    argv, check = CASES[name]
    if name == "bench_train_steps":  # a label store to train on: grad-cos teacher labels, seconds
        fixtures["labels"] = teacher_labels(fixtures)
    out = fixtures["tmp"] / ("results" if name != "bench_train_steps" else "results/train_steps")
    run_benchmark(name, [*argv(fixtures), "--out", out], monkeypatch)
    check(out)


def test_method_columns_large_lm_section_at_micro_size(
    fixtures: Fixtures, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bench_method_columns.py --smollm2 DIR`` (the LoRA cost section), on the tiny LM's folder."""
    out = fixtures["tmp"] / "results"
    argv = ["--smollm2", fixtures["lm"], "--smollm2-rows", 12, "--proj-dim", 16, "--encoder", fixtures["encoder"],
            "--work", fixtures["tmp"] / "work", "--out", out]  # fmt: skip
    run_benchmark("bench_method_columns", argv, monkeypatch)
    sm = read_json(out / "method_columns.json")["smollm2"]
    assert sm["build"]["rows"] == 12 and sm["build"]["params"] == "lora"
    assert sm["end_to_end"]["airrep"]["recompute"]["total_ms"] > 0


def teacher_labels(f: Fixtures) -> Path:
    rows = [e.to_row() for e in f["examples"] if e.prompt]  # type: ignore[attr-defined]
    corpus = write_corpus(f["tmp"] / "train.jsonl", rows)
    cfg = airsearch.LabelConfig(
        corpus=[str(corpus)], lm=str(f["lm"]), out=str(f["tmp"] / "labels"), teacher="gradcos", splits=3,
        dev_size=4, pool_size=12, subset_size=4, subsets_per_split=4,
    )  # fmt: skip
    airsearch.generate_labels(cfg, quiet=True)
    return f["tmp"] / "labels"


def scripts() -> list[Path]:
    return sorted(BENCH.glob("*.py"))


def test_every_benchmark_script_has_a_smoke_run() -> None:
    """Each script with a ``main`` is run above or by the test named in ``COVERED_ELSEWHERE``."""
    runnable = {
        p.stem for p in scripts() if "def main(argv: list[str] | None = None) -> int:" in p.read_text()
    }
    with_main = {p.stem for p in scripts() if "\ndef main(" in p.read_text()}
    assert with_main == runnable, "every main takes argv and returns an exit status"
    assert runnable == set(CASES) | set(COVERED_ELSEWHERE)
    for name, test_file in COVERED_ELSEWHERE.items():
        assert f"{name}.py" in (ROOT / test_file).read_text()


def test_benchmarks_import_airsearch_only_through_the_front_door() -> None:
    """No benchmark imports an airsearch module or a name outside ``airsearch.__all__`` (code and the
    code strings a script runs in a subprocess alike), but for ``ALLOWED_INTERNAL``."""
    public = set(airsearch.__all__)
    bad = []
    for path in scripts():
        tree = ast.parse(path.read_text())
        code_strings = [  # e.g. bench_ann_sweep.py's SELECT_CODE, run with python -c
            n.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and "\nfrom airsearch" in n.value
        ]
        sources = [tree, *map(ast.parse, code_strings)]
        for source in sources:
            for node in ast.walk(source):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airsearch"):
                    allowed = {"airsearch", *ALLOWED_INTERNAL.get(path.name, set())}
                    if node.module not in allowed:
                        bad.append(f"{path.name}: from {node.module} import ...")
                    bad += [f"{path.name}: {a.name}" for a in node.names if a.name not in public]
                elif isinstance(node, ast.Import):
                    for a in node.names:
                        if a.name.startswith("airsearch.") and a.name not in ALLOWED_INTERNAL.get(
                            path.name, set()
                        ):
                            bad.append(f"{path.name}: import {a.name}")
    assert not bad, bad


def test_the_shared_options_parse_one_way() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        from bench_options import RESULTS, bench_parser
    finally:
        sys.path.remove(str(BENCH))
    ap = bench_parser("doc", out=RESULTS / "x", work=None, seed=3, scales=("a", "b"), scale="a", quiet=True)
    args = ap.parse_args([])
    assert (args.out, args.work, args.seed, args.scale, args.quiet) == (RESULTS / "x", None, 3, "a", False)
    args = ap.parse_args(["--out", "o", "--work", "w", "--seed", "1", "--scale", "b", "--quiet"])
    assert (args.out, args.work, args.seed, args.scale, args.quiet) == (Path("o"), Path("w"), 1, "b", True)
    with pytest.raises(SystemExit):
        ap.parse_args(["--scale", "c"])
    assert not hasattr(bench_parser("doc").parse_args([]), "out")
