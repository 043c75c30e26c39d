"""Run the server with uvicorn: ``serve(ServeConfig)`` (the Python API of ``airsearch serve``)."""

from __future__ import annotations

import errno
import sys

from airsearch.indexers.serve.app import create_app
from airsearch.indexers.serve.config import ServeConfig, is_loopback

from airsearch.errors import InputError


def bind_warning(host: str) -> str | None:
    """The warning printed for a bind address other people can reach (``None`` for loopback)."""
    if is_loopback(host):
        return None
    return (
        f"warning: binding {host}: anyone who can reach this machine can query the index; "
        "set a bearer token (--token or $AIRSEARCH_TOKEN) and prefer 127.0.0.1 behind a proxy"
    )


def check_port(host: str, port: int) -> None:
    """Refuse, before the banner, an address that cannot be bound (in use, or not this machine's)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError as e:
            why = (
                "is in use (another server?)"
                if e.errno == errno.EADDRINUSE
                else f"cannot be bound ({e.strerror})"
            )
            raise InputError(f"{host}:{port} {why}; choose another --port", field="port") from None


def serve(cfg: ServeConfig) -> None:
    """Serve ``cfg.db`` at ``http://cfg.host:cfg.port`` until interrupted."""
    import torch
    import uvicorn

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # one intra-op thread per request: concurrent requests scale
    warning = bind_warning(cfg.host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    check_port(cfg.host, cfg.port)
    app = create_app(cfg)
    check_port(cfg.host, cfg.port)  # again: loading the index took a while
    print(f"airsearch serve: http://{cfg.host}:{cfg.port}/  (API docs at /docs)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", server_header=False)
