"""``create_app(ServeConfig)``: the ASGI app of ``airsearch serve`` (FastAPI; OpenAPI at /openapi.json,
docs at /docs: a page shipped in the package that renders the OpenAPI JSON, so it works offline;
FastAPI's own Swagger UI would fetch its scripts from a CDN).

Routes (all under ``/api`` read the index and never write it):

* ``GET /api/health``: status, table, row count, version (no token needed);
* ``GET /api/info``: the table's description, filterable columns, modes, methods, limits;
* ``POST /api/query``: proponents / opponents / Eq. 7 groups for one query or a batch;
* ``GET /api/rows/{id}``: one stored row;
* ``POST /api/explain``: token-level explanation of one (query, row) score;
* ``POST /api/select``: a training-data selection (App. G) streamed as a JSONL download;
* ``GET /``: the web page (static files shipped with the package, no external fetches).

Safety: an optional bearer token on every ``/api`` route but health, a body size limit checked before
the body is read, per-request limits answered with JSON 4xx errors, and CORS only for origins given.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from importlib import resources
from typing import Any

from airsearch.errors import AirsearchError, MissingDependency

try:
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException
except ImportError:  # pragma: no cover - the [serve] extra is missing
    raise MissingDependency("fastapi", "serve", "airsearch serve") from None

from airsearch.indexers.explain import RowNotFound
from airsearch.indexers.serve.config import ServeConfig
from airsearch.indexers.serve.schemas import ExplainRequest, QueryRequest, SelectRequest
from airsearch.indexers.serve.service import Forbidden, LimitError, SearchService

from airsearch import __version__
from airsearch.encoder import AirRepEncoder

TOKEN_ENV = "AIRSEARCH_TOKEN"


def error_body(message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    """The JSON of every error: the message and the request field it is about. Server paths are not
    sent: any in the message are cut to their last part (:func:`without_paths`)."""
    return {"error": {"message": without_paths(message), "field": field, **extra}}


_PATH = re.compile(r"(?<![\w.\-])(?:/[^\s/,'\"():;]+){2,}/?")


def without_paths(text: str) -> str:
    """``text`` with every file path of two or more parts replaced by ``.../<last part>``."""
    return _PATH.sub(lambda m: ".../" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(send)
        # a streamed (chunked) body is read here, up to the limit, before the app sees any of it:
        # over the limit is a 413, never the app's "error parsing the body"
        chunks, seen, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message]), send)
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                return await self._refuse(send)
            more = message.get("more_body", False)
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _refuse(self, send: Any) -> None:
        response = JSONResponse(
            error_body(f"request body over {self.limit} bytes (max_body_bytes)", "body"), status_code=413
        )
        await response({"type": "http"}, None, send)


def _replay(messages: list[dict], then: Any = None) -> Any:
    """An ASGI ``receive`` that gives ``messages`` first, then waits on ``then`` (disconnects)."""
    queue = list(messages)

    async def receive() -> dict:
        if queue:
            return queue.pop(0)
        if then is None:
            return {"type": "http.disconnect"}
        return await then()

    return receive


def create_app(cfg: ServeConfig, *, encoder: AirRepEncoder | None = None) -> FastAPI:
    """The server's ASGI app on ``cfg.db`` (``encoder``: an already loaded encoder, e.g. in tests)."""
    if cfg.token is None and os.environ.get(TOKEN_ENV):
        cfg = cfg.replace(token=os.environ[TOKEN_ENV])
    service = SearchService(cfg, encoder=encoder)
    app = FastAPI(
        docs_url=None,  # Swagger UI / ReDoc load from a CDN: /docs is the packaged page below
        redoc_url=None,
        title="airsearch",
        version=__version__,
        description="Training-data attribution search: AirRep retrieval, BM25/hybrid, token explanations.",
    )
    app.state.service = service
    _errors(app)

    def authorised(request: Request) -> None:
        if cfg.token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), cfg.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(authorised)]

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return service.reading(service.health)

    @app.get("/api/info", dependencies=auth)
    def table_info() -> dict[str, Any]:
        return service.reading(service.info)

    @app.post("/api/query", dependencies=auth)
    def run_query(req: QueryRequest) -> dict[str, Any]:
        return service.reading(service.query, req)

    @app.get("/api/rows", dependencies=auth)
    def row_by_query(id: str) -> dict[str, Any]:  # noqa: A002 - the query parameter's name
        return service.reading(service.row, id)

    @app.get("/api/rows/{row_id:path}", dependencies=auth)  # an id may hold '/'
    def row(row_id: str) -> dict[str, Any]:
        return service.reading(service.row, row_id)

    @app.post("/api/explain", dependencies=auth)
    def explain(req: ExplainRequest) -> dict[str, Any]:
        return service.reading(service.explain, req)

    @app.post("/api/select", dependencies=auth)
    def selection(req: SelectRequest) -> StreamingResponse:
        return StreamingResponse(
            service.reading(service.select_lines, req),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="selection.jsonl"'},
        )

    static = resources.files("airsearch.indexers.serve") / "static"

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def api_docs() -> FileResponse:
        return FileResponse(str(static / "docs.html"), media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(str(static / "favicon.svg"), media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    if cfg.cors_origin:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cfg.cors_origin),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    return app


def _errors(app: FastAPI) -> None:
    """Every error is JSON ``{"error": {"message", "field", ...}}`` with a 4xx status."""

    @app.exception_handler(AirsearchError)
    def airsearch_error(_: Request, e: AirsearchError) -> JSONResponse:
        status = {Forbidden: 403, LimitError: 422, RowNotFound: 404}.get(type(e), 400)
        return JSONResponse(error_body(e.message, e.field, row=e.row), status_code=status)

    @app.exception_handler(RequestValidationError)
    def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        details = [
            {"field": ".".join(str(p) for p in err.get("loc", ())), "message": err.get("msg", "")}
            for err in e.errors()
        ]
        first = details[0] if details else {"field": None, "message": "invalid request"}
        return JSONResponse(
            error_body(f"invalid request: {first['message']}", first["field"], details=details),
            status_code=422,
        )

    @app.exception_handler(Exception)
    def unexpected(request: Request, e: Exception) -> JSONResponse:
        """A failure that is not the request's fault: a damaged table (503, naming the damaged part),
        else 500; either way one message without server paths (the traceback goes to the log)."""
        from airsearch.indexers.damage import diagnose_failure

        damage = diagnose_failure(e, request.app.state.service.cfg.db, request.app.state.service.cfg.table)
        if damage is not None:
            return JSONResponse(error_body(damage.message, "table"), status_code=503)
        logging.getLogger("airsearch.serve").error("request failed", exc_info=e)
        return JSONResponse(error_body(f"internal error ({type(e).__name__}); see the server log"), 500)

    @app.exception_handler(HTTPException)
    def http_error(_: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(e.detail)), status_code=e.status_code, headers=e.headers)
