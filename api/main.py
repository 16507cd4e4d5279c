"""The FastAPI app, assembled: routers, the translation of binwatch's exceptions into HTTP
answers, and the lifespan that owns the InfluxDB client and the registry engine."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from api.admission import BUSY, Admission, InfluxGate
from api.auth import KeyCache, RateLimiter
from api.console import mount_console
from api.console.crew import PHOTO_PATHS
from api.console.pages import as_page
from api.docs_pages import serve_docs
from api.error_responses import with_declared_errors
from api.limits import BodySizeLimit, RepresentableJson
from api.report_cache import ReportCache
from api.routes import API_PHOTO_PATHS, api_router, health_router
from collection.photo_store import photo_store
from core.errors import (
    InvalidRequest,
    NotAllowed,
    NotFound,
    SinkRejected,
    SinkUnavailable,
    StoreUnavailable,
)
from core.influx import InfluxClient
from core.settings import Settings
from core.sql import is_transient_failure, make_engine, session_factory

log = logging.getLogger(__name__)

DESCRIPTION = """\
Registry, latest state and time series of the smart bins of the city's garbage-sorting pilot.

Every endpoint but `/health` needs an API key (`Authorization: Bearer …`); what it shows is
scoped to the key's role: admins see everything, managers their sites, operators the sites
their company serves. Outside that scope reads are 404 and actions 403.

Times are RFC 3339 in UTC. Sorting accuracy is always 1 − Σcontaminated / Σchecked_deposits over the
readings in question (a ratio of sums), and null where there were no deposits.
"""

SINK_UNAVAILABLE = "InfluxDB unavailable, try again"
REGISTRY_UNAVAILABLE = "registry database unavailable, try again"
PHOTOS_UNAVAILABLE = (
    "the photo store is unavailable: nothing was stored, send the photo again later"
)
# Retry-After of those two: a server that went away (a restart, a failover) is back within
# seconds, and a client told when to come back does not hammer the replicas meanwhile.
UNAVAILABLE_RETRY_S = 2


def create_app(settings: Settings) -> FastAPI:
    """An app serving `settings`; nothing is connected until the lifespan starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One connection per admitted request: none ever waits for the pool (api.admission);
        # should one all the same, it gets a 503 after 2 s rather than hanging. The database
        # group's pool figures are for the other processes; its timeouts hold here too.
        engine = make_engine(
            settings.database_url,
            pool_size=settings.api.max_concurrency,
            max_overflow=0,
            pool_timeout=2,
            connect_timeout=settings.database.connect_timeout_s,
            statement_timeout=settings.database.statement_timeout_s,
        )
        influx = InfluxClient(settings, query_timeout_s=settings.api.influx_timeout_s)
        app.state.settings = settings
        app.state.influx = influx
        app.state.influx_gate = InfluxGate(
            limit=min(settings.api.influx_concurrency, settings.api.max_concurrency),
            wait_s=settings.api.queue_wait_s,
        )
        app.state.sessions = session_factory(engine)
        app.state.limiter = RateLimiter(settings.api.rate_per_s, settings.api.rate_burst)
        app.state.keys = KeyCache(settings.api.key_cache_s)
        app.state.photos = photo_store(settings.route)
        # The compliance routes' and the site list's answers, for a few seconds (the routes
        # check the caller's scope before they look there).
        app.state.reports = ReportCache[object](settings.api.report_cache_s)
        try:
            yield
        finally:
            influx.close()
            engine.dispose()

    app = FastAPI(
        title="binwatch",
        description=DESCRIPTION,
        version=metadata.version("binwatch"),
        lifespan=lifespan,
        docs_url=None,  # served from the package by api.docs_pages, not from a CDN
        redoc_url=None,
    )
    app.openapi = with_declared_errors(app)  # type: ignore[method-assign]
    serve_docs(app)
    app.add_middleware(RepresentableJson)  # inside the size cap, which bounds what it reads
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.api.max_body,
        # a crew's tap may carry a photo: its own cap, and room for the form around it
        larger=(
            re.compile(f"{re.escape(PHOTO_PATHS)}|{API_PHOTO_PATHS}"),
            settings.route.photo_max_kb * 1024 + settings.api.max_body,
        ),
    )
    app.add_middleware(
        Admission,
        limit=settings.api.max_concurrency,
        wait_s=settings.api.queue_wait_s,
        stall_s=settings.api.stall_timeout_s,
        page=as_page,
    )
    app.include_router(health_router)
    app.include_router(api_router)
    mount_console(app, settings)
    for error, handler in _HANDLERS.items():
        app.add_exception_handler(error, _console_aware(handler))
    # An address nothing serves: the API's JSON, on the console a page (api.console.pages).
    app.add_exception_handler(HTTPException, _console_aware(http_exception_handler))
    return app


def _console_aware(
    handler: Callable[[Request, Any], Awaitable[Response]],
) -> Callable[[Request, Exception], Awaitable[Response]]:
    """`handler`'s answer, except that a person on a console page reads it as a page in their
    language that says what to do, not the API's JSON (api.console.pages.as_page)."""

    async def handle(request: Request, exc: Exception) -> Response:
        return await as_page(request, await handler(request, exc))

    return handle


def _detail(code: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=code, content={"detail": message})


async def _not_found(_request: Request, exc: Exception) -> Response:
    return _detail(status.HTTP_404_NOT_FOUND, str(exc))


async def _not_allowed(_request: Request, exc: Exception) -> Response:
    return _detail(status.HTTP_403_FORBIDDEN, str(exc))


async def _invalid(_request: Request, exc: Exception) -> Response:
    return _detail(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))


async def _sink_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return _unavailable(SINK_UNAVAILABLE, retry_after_s=UNAVAILABLE_RETRY_S)


async def _photos_unavailable(request: Request, exc: Exception) -> Response:
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return _unavailable(PHOTOS_UNAVAILABLE, retry_after_s=UNAVAILABLE_RETRY_S)


async def _registry_unavailable(request: Request, exc: Exception) -> Response:
    # A transient failure is the database's side (unreachable, locked, not migrated yet),
    # never the request's: try again. A permanent one is a bug here, and stays a 500.
    if not is_transient_failure(exc):
        raise exc
    log.error("%s %s: registry database: %s", request.method, request.url.path, exc)
    return _unavailable(REGISTRY_UNAVAILABLE, retry_after_s=UNAVAILABLE_RETRY_S)


def _unavailable(message: str, *, retry_after_s: int) -> Response:
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": message},
        headers={"Retry-After": str(retry_after_s)},
    )


async def _pool_exhausted(request: Request, exc: Exception) -> Response:
    log.warning("%s %s: no registry connection free: %s", request.method, request.url.path, exc)
    return _unavailable(BUSY.format(retry=1), retry_after_s=1)


async def _sink_rejected(request: Request, exc: Exception) -> Response:
    # Parameters are checked before any query is built, so a rejected query is our side's
    # (or InfluxDB's) fault, not the client's: a bad gateway, not a bad request.
    log.error("%s %s: InfluxDB rejected the query: %s", request.method, request.url.path, exc)
    message = exc.message if isinstance(exc, SinkRejected) else str(exc)
    return _detail(status.HTTP_502_BAD_GATEWAY, f"InfluxDB rejected the query: {message}")


async def _request_invalid(_request: Request, exc: Exception) -> Response:
    """FastAPI's own 422 body (`loc` names the parameter), minus pydantic's "Value error, "
    prefix on the messages our validators write. The offending `input` is echoed only when it
    can be written back as JSON."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    for error in errors:
        error["msg"] = str(error.get("msg", "")).removeprefix("Value error, ")
        error.pop("ctx", None)
        if "input" in error and not _encodable(error["input"]):
            del error["input"]
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": jsonable_encoder(errors)},
    )


def _encodable(value: object) -> bool:
    try:
        json.dumps(jsonable_encoder(value), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        return False
    return True


_HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    NotFound: _not_found,
    NotAllowed: _not_allowed,
    InvalidRequest: _invalid,
    SinkUnavailable: _sink_unavailable,
    SinkRejected: _sink_rejected,
    StoreUnavailable: _photos_unavailable,
    DBAPIError: _registry_unavailable,
    PoolTimeout: _pool_exhausted,
    RequestValidationError: _request_invalid,
}
