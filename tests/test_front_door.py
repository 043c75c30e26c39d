"""``from airsearch import ...`` offers the whole workflow, lazily, and type checkers see every name."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import airsearch

WORKFLOW = (
    "build_index",
    "Searcher",
    "query",
    "select",
    "delete_rows",
    "info",
    "generate_labels",
    "LabelStore",
    "train_encoder",
    "attribute",
    "load_method",
    "eval_lds",
    "eval_classify",
    "eval_trace",
    "eval_select",
)
CONFIGS = (
    "IndexConfig",
    "QueryConfig",
    "SelectConfig",
    "DeleteConfig",
    "InfoConfig",
    "LabelConfig",
    "TrainConfig",
    "AttributeConfig",
    "MethodConfig",
    "TinyLMConfig",
    "DaunceConfig",
    "EvalLdsConfig",
    "EvalClassifyConfig",
    "EvalTraceConfig",
    "EvalSelectConfig",
)


def test_every_name_in_all_resolves_and_is_listed_by_dir() -> None:
    assert len(airsearch.__all__) == len(set(airsearch.__all__))
    assert set(WORKFLOW) | set(CONFIGS) <= set(airsearch.__all__)
    listed = dir(airsearch)
    for name in airsearch.__all__:
        value = getattr(airsearch, name)
        assert getattr(value, "__name__", name) == name, name
        assert name in listed
    namespace: dict[str, object] = {}
    exec(f"from airsearch import {', '.join(airsearch.__all__)}", namespace)
    assert set(airsearch.__all__) <= set(namespace)


def test_every_config_is_a_command_config_and_every_function_is_typed() -> None:
    for name in CONFIGS:
        assert issubclass(getattr(airsearch, name), airsearch.CommandConfig), name
    for name in WORKFLOW:
        fn = getattr(airsearch, name)
        target = fn.__init__ if inspect.isclass(fn) else fn
        hints = inspect.signature(target).parameters
        assert all(p.annotation is not inspect.Parameter.empty for n, p in hints.items() if n != "self"), name


def test_type_checking_block_matches_the_lazy_table() -> None:
    """The ``if TYPE_CHECKING:`` imports (what IDEs see) name exactly what ``__getattr__`` loads."""
    tree = ast.parse(Path(airsearch.__file__).read_text())
    (block,) = [
        n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING"
    ]
    seen = {
        a.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for a in node.names
    }
    assert seen == airsearch._EXPORTS
    assert sorted(seen) == sorted(airsearch.__all__)


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        airsearch.no_such_name  # noqa: B018
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("no AttributeError")


def test_import_airsearch_loads_no_higher_layer_and_no_torch() -> None:
    code = (
        "import sys, airsearch\n"
        "heavy = [m for m in sys.modules if m.startswith(('airsearch.indexers', 'airsearch.trainers',"
        " 'airsearch.cli', 'torch', 'lancedb', 'transformers'))]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
