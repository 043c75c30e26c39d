"""The distribution is one import namespace, and its layers import only downwards."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# folder -> (import name, rank); a module may import only packages of equal or lower rank.
LAYERS: dict[str, tuple[str, int]] = {
    "airsearch": ("airsearch", 0),
    "indexers": ("airsearch.indexers", 1),
    "trainers": ("airsearch.trainers", 2),
    "cli": ("airsearch.cli", 3),
}


def _layer_of_import(name: str) -> int:
    """Rank of the layer an absolute import name belongs to."""
    best = 0
    for import_name, rank in LAYERS.values():
        if name == import_name or name.startswith(import_name + "."):
            best = max(best, rank)
    return best


# The front door re-exports every layer: its ``if TYPE_CHECKING:`` block (never run) is the one place
# the core may name a higher layer (docs/architecture.md); everywhere else the rule holds.
FRONT_DOOR = Path("airsearch") / "__init__.py"


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imports(path: Path, *, skip_type_checking: bool = False) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    if skip_type_checking:
        tree.body = [node for node in tree.body if not _is_type_checking(node)]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.lineno, node.module)] + [
                (node.lineno, f"{node.module}.{a.name}") for a in node.names
            ]
    return out


def upward_imports(root: Path = ROOT) -> list[str]:
    """Every ``file:line imports name`` where a layer imports a layer above it."""
    bad: dict[str, str] = {}  # "file:line" -> the first offending name on that line
    for folder, (_, rank) in LAYERS.items():
        for path in sorted((root / folder).rglob("*.py")):
            front_door = path.relative_to(root) == FRONT_DOOR
            for line, name in _imports(path, skip_type_checking=front_door):
                where = f"{path.relative_to(root)}:{line}"
                if name.split(".")[0] in ("cli", "trainers", "indexers"):
                    bad.setdefault(where, f"{where} imports top-level {name!r}")
                elif name.startswith("airsearch") and _layer_of_import(name) > rank:
                    bad.setdefault(where, f"{where} imports {name} (a higher layer)")
    return list(bad.values())


def test_no_upward_imports() -> None:
    assert upward_imports() == []


def test_upward_import_is_detected(tmp_path: Path) -> None:
    for folder in LAYERS:
        (tmp_path / folder).mkdir()
    (tmp_path / "airsearch" / "bad.py").write_text("from airsearch.trainers.labels import LabelStore\n")
    (tmp_path / "indexers" / "bad.py").write_text("import airsearch.cli.main\n")
    (tmp_path / "trainers" / "ok.py").write_text("from airsearch.indexers import query\n")
    (tmp_path / "cli" / "old.py").write_text("from trainers import runner\n")
    guarded = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from airsearch.indexers import query\n"
    )
    (tmp_path / "airsearch" / "__init__.py").write_text(guarded)  # the front door's exception
    (tmp_path / "airsearch" / "typed.py").write_text(guarded)  # no exception anywhere else
    bad = upward_imports(tmp_path)
    assert len(bad) == 4, bad
    assert any("airsearch/typed.py:3" in b for b in bad)
    assert not any("airsearch/__init__.py" in b for b in bad)
    assert any("airsearch/bad.py:1" in b for b in bad)
    assert any("indexers/bad.py:1" in b for b in bad)
    assert any("cli/old.py:1 imports top-level" in b for b in bad)


def test_every_package_folder_is_installed() -> None:
    """``pyproject.toml`` lists packages explicitly: a new subpackage must be added there."""
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set()
    for folder, (import_name, _) in LAYERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((import_name, *rel)))
    assert found == listed


@pytest.mark.slow
def test_wheel_holds_only_the_airsearch_package(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("airsearch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"airsearch", next(t for t in top if t.endswith(".dist-info"))}
    for sub in ("cli/main.py", "trainers/runner.py", "indexers/query.py", "trainers/evaluation/lds.py"):
        assert f"airsearch/{sub}" in names
    assert any(n.startswith("airsearch/data/sample/") for n in names)
    assert "airsearch/indexers/serve/static/index.html" in names  # the served page ships as package data
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "airsearch = airsearch.cli.main:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_tests_and_benchmarks_import_only_helpers_and_the_package() -> None:
    """Test helpers live in ``conftest.py`` / ``tests/helpers/``: no test module imports another test
    module, and ``benchmarks/`` imports only the installed package (never ``tests``)."""
    bad = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        bad += [
            f"{path.relative_to(ROOT)}:{line} imports {name}"
            for line, name in _imports(path)
            if name.startswith("tests.") and not name.startswith("tests.helpers")
        ]
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        if path.relative_to(ROOT / "benchmarks").parts[0] == "work":  # git-ignored: models, peer venvs
            continue
        bad += [
            f"{path.relative_to(ROOT)}:{line} imports {name}"
            for line, name in _imports(path)
            if name.split(".")[0] in ("tests", "cli", "trainers", "indexers")
        ]
    assert bad == []
