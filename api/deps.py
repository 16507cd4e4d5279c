"""Dependencies of the route handlers, as `Annotated` aliases: what a handler needs is in its
signature, and everything comes from the app state built once in `api.main`'s lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

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
