"""Admission: at most `limit` requests are served at once; the next ones wait up to `wait_s` for
a slot and then get a quick 503 with Retry-After instead of queueing without bound.

Why it exists: the registry pool holds one connection per request in flight, and FastAPI runs
every sync dependency and route on a shared pool of 40 threads. With more requests in flight than
connections, the threads blocked on the pool were the ones the connection holders needed for
their next step: 100 clients made every request wait out the pool's 30 s timeout (issue 13). The
engine is sized to `limit` (api.main), so an admitted request never waits for a connection.

Within the gate, requests that read InfluxDB get at most `influx_concurrency` of the slots
(`InfluxGate`, taken by `api.deps.get_influx`): when InfluxDB stalls, the requests waiting on it
keep only those, and registry-only requests (the site list, alerts, collections, a manual
request) still find a slot and answer at once. Each InfluxDB answer is waited for at most
`influx_timeout_s`, then 503 (issue 18).

A slot is held while the request body comes in and while the answer goes out, so a client that
stalls in either would keep it for good: one that sends none of its body, or takes none of its
answer, for `stall_s` is cut off (408 when nothing was answered yet) and the slot is free."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.limits import answer

log = logging.getLogger(__name__)

BUSY = "the API is serving as many requests as it can; retry after {retry} s"


class Stalled(HTTPException):
    """The client sent none of its body for too long. An HTTPException, so FastAPI's body
    reading passes it on (as a 408) instead of turning it into a 400."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            status.HTTP_408_REQUEST_TIMEOUT,
            f"the client sent none of its request body for {seconds:g} s; cut off",
        )


class _AnswerStalled(Exception):
    """The client took none of the answer for too long: not an HTTPException, which FastAPI
    would try to answer, on a response already started."""


class Admission:
    """An ASGI middleware around the app: a semaphore with a bounded wait, and bounded stalls."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        wait_s: float,
        stall_s: float,
        page: Callable[[Request, Response], Awaitable[Response]] | None = None,
    ) -> None:
        """`page`: how an answer reaches a person (the console's `as_page`: a page in their
        language for a console address, the answer itself for the API's)."""
        self.app = app
        self.page = page
        self.limit = limit
        self.wait_s = wait_s
        self.stall_s = stall_s
        self._slots: asyncio.Semaphore | None = None  # made in the server's event loop
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:  # a new server loop (tests), new slots
            self._slots, self._loop = asyncio.Semaphore(self.limit), loop
        if not await _acquire(self._slots, self.wait_s):
            await self._busy(scope, receive, send)
            return
        body_done = False
        answered = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:  # later receives wait for a disconnect, as long as an answer streams
                return await receive()
            try:
                async with asyncio.timeout(self.stall_s):
                    message = await receive()
            except TimeoutError:
                raise Stalled(self.stall_s) from None
            body_done = not message.get("more_body", False)
            return message

        async def timed_send(message: Message) -> None:
            nonlocal answered
            answered = True
            try:
                async with asyncio.timeout(self.stall_s):
                    await send(message)
            except TimeoutError:
                raise _AnswerStalled from None

        try:
            await self.app(scope, timed_receive, timed_send)
        except Stalled as stalled:
            log.warning("%s %s: %s", scope["method"], scope["path"], stalled.detail)
            if not answered:
                await answer(send, stalled.status_code, stalled.detail)
        except _AnswerStalled:
            # Returning with the answer unfinished makes the server close the connection.
            log.warning(
                "%s %s: the client took none of its answer for %g s; cut off",
                scope["method"],
                scope["path"],
                self.stall_s,
            )
        finally:
            self._slots.release()

    async def _busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        """503 with Retry-After, before the app and its exception handlers: a person on the
        console reads a page that says to try again, not the API's JSON."""
        refused = Busy()
        busy = JSONResponse({"detail": refused.detail}, refused.status_code, refused.headers)
        response = busy if self.page is None else await self.page(Request(scope, receive), busy)
        await response(scope, receive, send)


async def _acquire(slots: asyncio.Semaphore, wait_s: float) -> bool:
    """Take a slot, waiting at most `wait_s`; False when none came free. A free slot is taken
    without a timer, and a wait is bounded by `asyncio.timeout`, not `asyncio.wait_for`, which
    on Python 3.11 wraps what it waits for in a task of its own: a task per bounded step was
    a large share of the event loop's work per request (docs/performance.md)."""
    if not slots.locked():
        await slots.acquire()  # returns at once
        return True
    try:
        async with asyncio.timeout(wait_s):
            await slots.acquire()
    except TimeoutError:
        return False
    return True


class Busy(HTTPException):
    """503 with Retry-After: no slot came free within the wait."""

    def __init__(self) -> None:
        super().__init__(
            status.HTTP_503_SERVICE_UNAVAILABLE, BUSY.format(retry=1), headers={"Retry-After": "1"}
        )


class InfluxGate:
    """At most `limit` requests reading InfluxDB at once; the next wait up to `wait_s` for one
    of them to finish, then get 503 with Retry-After (`Busy`)."""

    def __init__(self, *, limit: int, wait_s: float) -> None:
        self.limit = limit
        self.wait_s = wait_s
        self._slots: asyncio.Semaphore | None = None  # made in the server's event loop
        self._loop: asyncio.AbstractEventLoop | None = None

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:  # a new server loop (tests), new slots
            self._slots, self._loop = asyncio.Semaphore(self.limit), loop
        slots = self._slots
        if not await _acquire(slots, self.wait_s):
            raise Busy
        try:
            yield
        finally:
            slots.release()
