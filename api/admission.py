"""Admission: at most `limit` requests are served at once; the next ones wait up to `wait_s` for
a slot and then get a quick 503 with Retry-After instead of queueing without bound.

Why it exists: the registry pool holds one connection per request in flight, and FastAPI runs
every sync dependency and route on a shared pool of 40 threads. With more requests in flight than
connections, the threads blocked on the pool were the ones the connection holders needed for
their next step: 100 clients made every request wait out the pool's 30 s timeout (issue 13). The
engine is sized to `limit` (api.main), so an admitted request never waits for a connection."""

from __future__ import annotations

import asyncio
import json
import logging
import math

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

BUSY = "the API is serving as many requests as it can; retry after {retry} s"


class _SlowReader(Exception):
    pass


class Admission:
    """An ASGI middleware around the app: a semaphore with a bounded wait. A client that stops
    reading its answer would hold its slot for good (the server waits for the socket to drain):
    a piece of the answer not taken within `send_timeout_s` ends the request and the
    connection, and frees the slot."""

    def __init__(self, app: ASGIApp, *, limit: int, wait_s: float, send_timeout_s: float) -> None:
        self.app = app
        self.limit = limit
        self.wait_s = wait_s
        self.send_timeout_s = send_timeout_s
        self._slots: asyncio.Semaphore | None = None  # made in the server's event loop
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:  # a new server loop (tests), new slots
            self._slots, self._loop = asyncio.Semaphore(self.limit), loop
        try:
            await asyncio.wait_for(self._slots.acquire(), self.wait_s)
        except TimeoutError:
            await busy(send)
            return

        async def timed_send(message: Message) -> None:
            try:
                await asyncio.wait_for(send(message), self.send_timeout_s)
            except TimeoutError:
                raise _SlowReader from None

        try:
            await self.app(scope, receive, timed_send)
        except _SlowReader:
            # Returning with the answer unfinished makes the server close the connection.
            log.warning(
                "%s %s: the client read nothing for %g s; connection closed",
                scope["method"],
                scope["path"],
                self.send_timeout_s,
            )
        finally:
            self._slots.release()


async def busy(send: Send, retry_s: float = 1) -> None:
    """A 503 with Retry-After (whole seconds, at least 1)."""
    retry = max(1, math.ceil(retry_s))
    body = json.dumps({"detail": BUSY.format(retry=retry)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
