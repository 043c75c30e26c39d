"""``airsearch serve``: a read-only HTTP API and one web page over an index (see :mod:`.app`).

``create_app`` and ``serve`` need the ``[serve]`` extra (FastAPI, uvicorn); they load on first use, so
the rest of airsearch works without it.
"""

from __future__ import annotations

import importlib
from typing import Any

from airsearch.indexers.serve.config import ServeConfig, is_loopback

_LAZY = {"create_app": "app", "serve": "run", "bind_warning": "run"}
__all__ = ["ServeConfig", "bind_warning", "create_app", "is_loopback", "serve"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
