"""``ServeConfig``: the options of ``airsearch serve`` (and of :func:`airsearch.indexers.serve.create_app`)."""

from __future__ import annotations

import dataclasses
import ipaddress

from airsearch.indexers.config import method_config_field

from airsearch.config import CommandConfig, require
from airsearch.methods.plugin import gradient_method_names
from airsearch.methods.registry import MethodConfig, method_config_from

F = dataclasses.field
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; a non-loopback bind is announced with a warning."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(kw_only=True)
class ServeConfig(CommandConfig):
    """Serve an index over HTTP: a JSON API and one web page (read-only).

    With ``lm``, the gradient methods offered for rerank and token views, and the method columns the
    page searches, take every option of the nested ``method_config`` (parameter set ``params``, K-FAC /
    EK-FAC ``precondition`` ...): each method's factors are fitted once, at its first use, on a seeded
    sample of the table's rows (or ``factors_sample``), or read from ``factors``, and kept for the
    server's life.
    """

    db: str = F(metadata={"help": "LanceDB directory"})
    table: str | None = F(default=None, metadata={"help": "table name (default: the only table)"})
    host: str = F(default="127.0.0.1", metadata={"help": "bind address (non-loopback prints a warning)"})
    port: int = F(default=8000, metadata={"help": "TCP port"})
    rerank_methods: tuple[str, ...] = F(
        default=("gradcos", "haif"),
        metadata={"help": "methods offered for rerank with --lm (repeatable)", "flag": "--rerank-method"},
    )
    encoder: str | None = F(default=None, metadata={"help": "encoder (default: the one the index records)"})
    token: str | None = F(
        default=None,
        metadata={"help": "require 'Authorization: Bearer TOKEN' on the API (default: $AIRSEARCH_TOKEN)"},
    )
    allow_sql: bool = F(
        default=False, metadata={"help": "accept raw SQL 'where' text from clients (trusted clients only)"}
    )
    cors_origin: tuple[str, ...] = F(
        default=(), metadata={"help": "allow this browser origin (repeatable); no CORS by default"}
    )
    max_body_bytes: int = F(default=1_000_000, metadata={"help": "largest request body"})
    max_k: int = F(default=100, metadata={"help": "largest k per query"})
    max_batch: int = F(default=32, metadata={"help": "most queries in one request"})
    max_text_chars: int = F(default=20_000, metadata={"help": "longest prompt or response"})
    max_candidates: int = F(default=200, metadata={"help": "most rerank candidates"})
    max_targets: int = F(default=1000, metadata={"help": "most selection targets"})
    max_select: int = F(default=100_000, metadata={"help": "most rows in one selection export"})
    exact: bool = F(default=False, metadata={"help": "exact search even when an ANN index exists"})
    threads: int = F(
        default=1, metadata={"help": "torch threads per request (requests run in parallel; 0: torch default)"}
    )
    method_config: MethodConfig = method_config_field(
        "the options of the served methods; --lm (target LM folder) enables rerank, token views and "
        "method-column search"
    )

    def validate(self) -> None:
        super().validate()
        require(bool(self.db), "db", "is required (the index directory)")
        require(0 < self.port < 65536, "port", "must be in 1..65535")
        for name in ("max_body_bytes", "max_k", "max_batch", "max_text_chars", "max_candidates"):
            require(getattr(self, name) > 0, name, "must be positive")
        require(self.threads >= 0, "threads", "must be >= 0")
        require(self.max_targets > 0 and self.max_select > 0, "max_targets", "limits must be positive")
        if self.lm:  # the methods are offered (and their modules, with torch, loaded) only with an LM
            served = list(gradient_method_names())
            unknown = [m for m in self.rerank_methods if m not in served]
            require(not unknown, "rerank_methods", f"unknown or unsupported {unknown}; served: {served}")
        require(
            self.precondition == "none" or bool(self.lm),
            "precondition",
            "preconditions the gradient methods, which need --lm",
        )
        require(self.token is None or len(self.token) >= 8, "token", "must be at least 8 characters")

    def served_method(self, method: str) -> MethodConfig:
        """The registry config of served method ``method`` (every option of the nested config)."""
        return method_config_from(self, method)
