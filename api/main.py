"""The FastAPI app, assembled: routers, the translation of binwatch's exceptions into HTTP
answers, and the lifespan that owns the InfluxDB client and the registry engine."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import metadata

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from api.auth import RateLimiter
from api.limits import BodySizeLimit
from api.routes import api_router, health_router
from binwatch.errors import (
    InvalidRequest,
    NotAllowed,
    NotFound,
    SinkRejected,
    SinkUnavailable,
)
from binwatch.influx import InfluxClient
from binwatch.settings import Settings
from devices.db import session_factory
from devices.registry import make_engine
from devices.registry_errors import is_transient

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


def create_app(settings: Settings) -> FastAPI:
    """An app serving `settings`; nothing is connected until the lifespan starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, settings)
        influx = InfluxClient(settings)
        app.state.settings = settings
        app.state.influx = influx
        app.state.sessions = session_factory(engine)
        app.state.limiter = RateLimiter(settings.api_rate_per_s, settings.api_rate_burst)
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
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body)
    app.include_router(health_router)
    app.include_router(api_router)
    for error, handler in _HANDLERS.items():
        app.add_exception_handler(error, handler)
    return app


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
    return _detail(status.HTTP_503_SERVICE_UNAVAILABLE, SINK_UNAVAILABLE)


async def _registry_unavailable(request: Request, exc: Exception) -> Response:
    # A transient failure is the database's side (unreachable, locked, not migrated yet),
    # never the request's: try again. A permanent one is a bug here, and stays a 500.
    if not is_transient(exc):
        raise exc
    log.error("%s %s: registry database: %s", request.method, request.url.path, exc)
    return _detail(status.HTTP_503_SERVICE_UNAVAILABLE, REGISTRY_UNAVAILABLE)


async def _sink_rejected(request: Request, exc: Exception) -> Response:
    # Parameters are checked before any query is built, so a rejected query is our side's
    # (or InfluxDB's) fault, not the client's: a bad gateway, not a bad request.
    log.error("%s %s: InfluxDB rejected the query: %s", request.method, request.url.path, exc)
    message = exc.message if isinstance(exc, SinkRejected) else str(exc)
    return _detail(status.HTTP_502_BAD_GATEWAY, f"InfluxDB rejected the query: {message}")


async def _request_invalid(_request: Request, exc: Exception) -> Response:
    """FastAPI's own 422 body (`loc` names the parameter), minus pydantic's "Value error, "
    prefix on the messages our validators write."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    for error in errors:
        error["msg"] = str(error.get("msg", "")).removeprefix("Value error, ")
        error.pop("ctx", None)
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": jsonable_encoder(errors)},
    )


_HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    NotFound: _not_found,
    NotAllowed: _not_allowed,
    InvalidRequest: _invalid,
    SinkUnavailable: _sink_unavailable,
    SinkRejected: _sink_rejected,
    DBAPIError: _registry_unavailable,
    PoolTimeout: _registry_unavailable,
    RequestValidationError: _request_invalid,
}
