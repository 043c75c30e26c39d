"""Every ```python block of README.md and of the manual (docs/usage/*.md) runs as written: README's in
README order in one working folder, the manual's pages in the manual's order in another, each folder
holding the files the blocks name (slices of the bundled sample, and the models and gold labels the
blocks take as given), with the real packaged all-MiniLM-L6-v2 and tiny target LMs."""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import pytest

import airsearch
from airsearch import (
    FinetuneConfig,
    LabelConfig,
    TinyLMConfig,
    build_tiny_lm,
    finetune,
    generate_labels,
    load_corpus,
    load_lm,
    sample_corpus_path,
    sample_queries_path,
    save_lm,
    write_rows,
)

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
USAGE = ROOT / "docs" / "usage"
# the manual's pages in the order their examples build on each other (the index first, then the LM,
# labels, gradient methods and the evaluation that use it)
USAGE_ORDER = ("index-query-select", "serve-explain", "lm", "labels-train", "gradient-methods", "evaluation")
FENCE = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def python_blocks(path: Path = README) -> list[tuple[int, str]]:
    """(line of the first code line, code) of every ```python block of ``path``, in file order."""
    text = path.read_text()
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def usage_pages() -> list[Path]:
    return [USAGE / f"{name}.md" for name in USAGE_ORDER]


def documents() -> list[Path]:
    return [README, *usage_pages()]


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_every_usage_page_with_examples_is_run() -> None:
    """A new page of the manual with Python examples must join USAGE_ORDER, or its examples go unrun."""
    unrun = [p.name for p in sorted(USAGE.glob("*.md")) if p not in usage_pages() and python_blocks(p)]
    assert not unrun, f"add {unrun} to USAGE_ORDER in tests/test_readme.py"
    assert all(p.is_file() for p in usage_pages())


def test_readme_blocks_import_only_the_front_door() -> None:
    blocks = [(path, line, code) for path in documents() for line, code in python_blocks(path)]
    assert len(python_blocks(README)) >= 5 and len(blocks) >= 17
    for path, line, code in blocks:
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module == "airsearch", f"{where(path, line)} imports from {node.module}"
                assert all(hasattr(airsearch, a.name) for a in node.names), where(path, line)
            assert not isinstance(node, ast.Import), f"{where(path, line)}: use `from airsearch import ...`"


def test_readme_blocks_with_worker_pools_guard_their_entry_point() -> None:
    """Local worker processes are spawned: a copied script must not start them again on import."""
    pools = [
        (path, line, code)
        for path in documents()
        for line, code in python_blocks(path)
        if re.search(r"workers=[2-9]", code)
    ]
    assert pools, "the manual shows a worker pool"
    for path, line, code in pools:
        assert 'if __name__ == "__main__":' in code, where(path, line)


def _rows_of_tasks(rows: list, tasks: list[str], per_task: int) -> list:
    return [e for t in tasks for e in [r for r in rows if r.metadata["task"] == t][:per_task]]


def prepare(folder: Path) -> None:
    """The inputs the README and the manual name: ``train.jsonl`` (4 sample tasks x 12 rows), ``test.jsonl`` and
    ``targets.jsonl`` (held-out sample queries of those tasks), ``eval.jsonl`` (2 other tasks, disjoint
    from the training rows), a micro target LM ``runs/lm0`` fine-tuned into ``runs/ckpt1`` and
    ``runs/lm_ft`` (DDA's checkpoints), and the gold label store ``runs/gold`` on ``eval.jsonl``."""
    rows = load_corpus(sample_corpus_path()).examples
    tasks = sorted({e.metadata["task"] for e in rows})
    train = _rows_of_tasks(rows, tasks[:4], 12)
    queries = _rows_of_tasks(load_corpus(sample_queries_path()).examples, tasks[:4], 2)
    write_rows(folder / "train.jsonl", train)
    write_rows(folder / "test.jsonl", queries)
    write_rows(folder / "targets.jsonl", queries[::2])
    write_rows(folder / "eval.jsonl", _rows_of_tasks(rows, tasks[4:6], 12))

    micro = TinyLMConfig(
        vocab_size=600, hidden_size=32, layers=1, heads=2, intermediate_size=64, steps=20, min_frequency=1
    )
    lm0 = build_tiny_lm(train, folder / "runs" / "lm0", micro, show_progress=False)
    names = iter(["ckpt1", "lm_ft"])
    finetune(
        load_lm(lm0),
        train[:8],
        FinetuneConfig(epochs=2, lr=1e-3, batch_size=4),
        on_epoch_end=lambda epoch, lm: save_lm(lm, folder / "runs" / next(names)),
        show_progress=False,
    )
    gold = LabelConfig(
        corpus=[str(folder / "eval.jsonl")],
        lm=str(lm0),
        out=str(folder / "runs" / "gold"),
        splits=1,
        dev_size=6,
        pool_size=12,
        subset_size=4,
        subsets_per_split=4,
        epochs=1,
        lr=1e-3,
    )
    generate_labels(gold, quiet=True)


def run_blocks(path: Path) -> None:
    for line, code in python_blocks(path):
        # padded so that a traceback names the document's own line numbers
        compiled = compile("\n" * (line - 1) + code, str(path), "exec")
        try:
            exec(compiled, {"__name__": "__main__"})
        except Exception as e:
            raise AssertionError(f"the block at {where(path, line)} failed: {e!r}") from e


@pytest.mark.slow
def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch) -> None:
    prepare(tmp_path)
    shutil.copytree(tmp_path / "runs" / "lm0", tmp_path / "runs" / "lm")  # README: "a target LM runs/lm"
    monkeypatch.chdir(tmp_path)
    run_blocks(README)

    # what the blocks made, each where the README says
    assert airsearch.info("runs/db").tables[0].rows == 48
    attributed = json.loads((tmp_path / "runs" / "attr" / "results.json").read_text())
    assert len(attributed["results"]) == 8
    assert airsearch.LabelStore.open("runs/labels").progress().complete
    assert airsearch.AirRepEncoder.load("runs/airrep", device="cpu").info.trained


@pytest.mark.slow
def test_usage_python_blocks_run_as_written(tmp_path, monkeypatch) -> None:
    prepare(tmp_path)
    monkeypatch.chdir(tmp_path)
    for page in usage_pages():
        run_blocks(page)

    # what the blocks made, each where the manual says
    assert airsearch.info("runs/db").tables[0].rows == 48
    assert (tmp_path / "selected.parquet").is_file()
    assert (tmp_path / "selected.parquet.manifest.json").is_file()
    assert (tmp_path / "runs" / "lm" / "config.json").is_file()
    labels = airsearch.LabelStore.open("runs/labels")
    assert labels.progress().complete and len(labels.splits()) == 3
    assert airsearch.AirRepEncoder.load("runs/airrep", device="cpu").info.trained
    attributed = json.loads((tmp_path / "runs" / "attr" / "results.json").read_text())
    assert len(attributed["results"]) == 8
    assert airsearch.load_daunce("runs/daunce").losses.shape == (4, 48 + 8)  # K x (train + test)
    lds = json.loads((tmp_path / "runs" / "eval_lds" / "lds.json").read_text())
    assert set(lds["methods"]) == {"airrep", "base", "bm25"}
