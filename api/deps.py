"""Dependencies of the route handlers, as `Annotated` aliases: what a handler needs is in its
signature, and everything comes from the app state built once in `api.main`'s lifespan."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.admission import InfluxGate
from api.schemas import EVERY_REGEX, ID_REGEX, EveryParam, TimeParam, Window
from collection.photo_store import PhotoStore
from core.influx import InfluxClient
from core.settings import Settings

# Dependencies that neither block nor do I/O are `async def`: FastAPI runs a plain `def` on its
# thread pool, and each such hop costs the event loop a round trip (issue 18's profile).

P = ParamSpec("P")
R = TypeVar("R")


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One registry session per request, closed when the response is sent. Making one does no
    I/O, nor does closing one whose transaction has ended (`release`), so both happen on the
    event loop; only a session still holding its connection is closed on a route thread (its
    rollback talks to the database). A plain `def` dependency cost two hops to the thread pool
    per request, a sixth of the event loop's work (docs/performance.md)."""
    session: Session = request.app.state.sessions()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


async def get_influx(request: Request) -> AsyncIterator[InfluxClient]:
    """The InfluxDB client, with one of the slots for requests that read InfluxDB held until
    the request is done (api.admission.InfluxGate: 503 with Retry-After when none comes free)."""
    gate: InfluxGate = request.app.state.influx_gate
    async with gate.slot():
        yield request.app.state.influx


async def get_photos(request: Request) -> PhotoStore:
    """Where the crews' photos are kept (a folder or an S3 bucket: collection/photo_store.py)."""
    photos: PhotoStore = request.app.state.photos
    return photos


def on_one_thread(handler: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """A blocking route handler, run on the thread pool in one hop, the registry sessions it
    was given closed on that thread when it is done, and its answer checked against the
    response model on the event loop. FastAPI runs a plain `def` handler on the thread pool,
    then checks its answer there in a second hop, and `get_session` closes a session still in
    its transaction in a third: each hop is a hand-off the event loop pays for (issue 18's
    profile: ~5 % of the API's time in its thread queue's notify) and, on a busy machine, a
    wait for the GIL that the request's latency pays. Closing on the handler's thread is what
    `get_session` would do later (its rollback); the answer is built by then. FastAPI reads
    the handler's parameters (its dependencies) through `functools.wraps`; decorate below
    the route decorator."""

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return handler(*args, **kwargs)
        finally:
            for value in kwargs.values():
                if isinstance(value, Session) and value.in_transaction():
                    value.close()

    @functools.wraps(handler)
    async def route(*args: P.args, **kwargs: P.kwargs) -> R:
        return await run_in_threadpool(run, *args, **kwargs)

    return route


def release(session: Session) -> None:
    """End the session's read transaction so its registry connection goes back to the pool now,
    not when the response is sent: before an InfluxDB call, and between the steps of a request,
    which FastAPI runs on different threads. What was read stays usable
    (`expire_on_commit=False`); a later read checks a connection out again."""
    session.commit()


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
InfluxDep = Annotated[InfluxClient, Depends(get_influx)]
PhotosDep = Annotated[PhotoStore, Depends(get_photos)]

_ID_RULE = "1–64 letters, digits, '_', '.' or '-', starting with a letter or digit"
SiteId = Annotated[str, Path(pattern=ID_REGEX, description=f"a site id: {_ID_RULE}")]
BinId = Annotated[str, Path(pattern=ID_REGEX, description=f"a bin id: {_ID_RULE}")]


async def reading_window(
    settings: SettingsDep,
    start: Annotated[
        TimeParam,
        Query(
            description="RFC 3339 with a UTC offset or Z (URL-encode '+' as %2B); default end − 24 h",
        ),
    ] = None,
    end: Annotated[
        TimeParam,
        Query(
            description="RFC 3339 with a UTC offset or Z, exclusive; default now",
        ),
    ] = None,
    every: Annotated[
        EveryParam,
        Query(
            pattern=EVERY_REGEX,
            description="bucket width (InfluxQL duration, 1m to 366d, e.g. 15m, 1h, 1d); "
            "omit for raw readings (at most 7 days of them)",
        ),
    ] = None,
) -> Window:
    """The checked window of a readings request; InvalidRequest (422) when it cannot be served."""
    return Window.build(
        start=start, end=end, every=every, now=datetime.now(UTC), timezone=settings.timezone
    )


WindowDep = Annotated[Window, Depends(reading_window)]
