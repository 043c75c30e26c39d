"""``airsearch serve``: the JSON API and web page over an index (``airsearch.indexers.serve``)."""

from __future__ import annotations

from typing import Any

import click
from airsearch.cli.common import config_options, handle_errors
from airsearch.indexers.serve.config import ServeConfig


@click.command("serve")
@handle_errors
@config_options(ServeConfig)
def serve_cmd(config: ServeConfig) -> Any:
    """Serve an index over HTTP (read-only): a JSON API, its docs at /docs, and a web page at /.

    Binds 127.0.0.1 unless --host says otherwise (then a warning is printed). With --lm, queries can
    be reranked by a gradient method and explanations add its per-token view.
    """
    from airsearch.indexers.precheck import precheck

    precheck(config)  # before the heavy imports
    from airsearch.indexers.serve import serve

    serve(config)
