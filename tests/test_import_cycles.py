"""No import cycles between product modules, counting every import: at module level, inside functions,
and under ``if TYPE_CHECKING:`` (a type-only cycle is still two modules that each need the other).

The one exception is the front door's ``if TYPE_CHECKING:`` block (``airsearch/__init__.py``), which
names every layer for type checkers and never runs (the same exception as the layering test).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"airsearch": "airsearch", "indexers": "airsearch.indexers", "trainers": "airsearch.trainers",
            "cli": "airsearch.cli"}  # fmt: skip
FRONT_DOOR = "airsearch"


def product_modules(root: Path = ROOT) -> dict[str, tuple[Path, bool]]:
    """``{dotted module name: (file, is a package)}`` of every product module, as installed."""
    out = {}
    for folder, name in PACKAGES.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            out[".".join([name, *(parts[:-1] if is_pkg else parts)])] = (path, is_pkg)
    return out


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _nodes(node: ast.AST, *, skip_type_checking: bool) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if skip_type_checking and _is_type_checking(child):
            for other in child.orelse:
                yield other
                yield from _nodes(other, skip_type_checking=True)
            continue
        yield child
        yield from _nodes(child, skip_type_checking=skip_type_checking)


def _owner(name: str, modules: dict[str, tuple[Path, bool]]) -> str | None:
    """The product module an import of ``name`` loads (``a.b.C`` -> ``a.b``), or None."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """``{module: {imported product module: first line}}``; relative imports resolved."""
    modules = product_modules(root)
    graph: dict[str, dict[str, int]] = {}
    for module, (path, is_pkg) in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        package = module if is_pkg else module.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in _nodes(tree, skip_type_checking=module == FRONT_DOOR):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_owner(a.name, modules) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                for a in node.names:  # ``from pkg import submodule`` imports the submodule
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in modules else _owner(base, modules))
            for target in targets:
                if target and target != module:
                    edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def import_cycles(root: Path = ROOT) -> list[list[str]]:
    """Every group of modules that import each other (strongly connected components), as
    ``module:line -> module`` steps."""
    graph = import_graph(root)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                members = set(group)
                groups.append(
                    sorted(
                        f"{a}:{line} -> {b}" for a in group for b, line in graph[a].items() if b in members
                    )
                )

    for v in graph:
        if v not in index:
            visit(v)
    return groups


def test_no_import_cycles_between_product_modules() -> None:
    assert import_cycles() == []


def test_every_kind_of_import_cycle_is_detected(tmp_path: Path) -> None:
    for folder in PACKAGES:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "airsearch" / "sub").mkdir()
    (tmp_path / "airsearch" / "sub" / "__init__.py").write_text("")
    write = lambda rel, text: (tmp_path / rel).write_text(text)  # noqa: E731
    # inside a function, and a relative import back
    write("airsearch/a.py", "def f():\n    from airsearch.b import g\n")
    write("airsearch/b.py", "from .a import f\n")
    # ``from package import module`` and a type-only import back
    write("airsearch/sub/c.py", "from airsearch.sub import d\n")
    write(
        "airsearch/sub/d.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..sub.c import X\n",
    )
    # across installed layers, three long
    write("indexers/e.py", "import airsearch.trainers.f\n")
    write("trainers/f.py", "from airsearch.cli.g import h\n")
    write("cli/g.py", "class X:\n    def m(self):\n        from airsearch.indexers import e\n")
    # not cycles: a one-way chain, the front door's type-only names, a module importing itself
    write("airsearch/ok.py", "from airsearch.a import f\nimport airsearch.ok\n")
    write(
        "airsearch/__init__.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from airsearch.ok import f\n",
    )
    write("trainers/front_user.py", "from airsearch import f\n")
    cycles = import_cycles(tmp_path)
    assert sorted(cycles) == sorted(
        [
            ["airsearch.a:2 -> airsearch.b", "airsearch.b:1 -> airsearch.a"],
            ["airsearch.sub.c:1 -> airsearch.sub.d", "airsearch.sub.d:3 -> airsearch.sub.c"],
            [
                "airsearch.cli.g:3 -> airsearch.indexers.e",
                "airsearch.indexers.e:1 -> airsearch.trainers.f",
                "airsearch.trainers.f:1 -> airsearch.cli.g",
            ],
        ]
    ), cycles
