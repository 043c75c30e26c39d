"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package that re-exports names from its submodules imports each submodule only when one of its names
is first used, so that importing a light submodule (a config dataclass) does not drag in torch or
transformers through the package ``__init__``::

    __getattr__, __dir__ = lazy_exports(__name__, {"load_lm": "model", "finetune": "finetune"})
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: each name of ``names`` is read from the submodule
    ``package.<names[name]>`` on first use.

    A name that is also its submodule's name (``finetune`` in ``airsearch.lm.finetune``) stays the
    exported object: importing the submodule would otherwise bind the package attribute to the module.
    """

    class _Package(types.ModuleType):
        def __setattr__(self, name: str, value: Any) -> None:
            if (
                name in names
                and isinstance(value, types.ModuleType)
                and value.__name__ == f"{package}.{name}"
            ):
                value = getattr(value, name)  # the import system binds the submodule; keep the export
            super().__setattr__(name, value)

    sys.modules[package].__class__ = _Package

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
