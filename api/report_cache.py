"""The heavy read-only answers (a site's, an area's or an operator's compliance report, a
ranking, the site list), remembered for a few seconds in this process: everyone opening their
screens at nine asks for the same rankings, month reports and site overview; a report costs
several InfluxDB queries and registry reads, the overview a registry page of ORM rows (issue 18's
profiles: the slowest calls of the mix, then the largest route).

An entry is keyed by everything that changes the answer (the route, its subject, the checked
report span; for the site list the caller's visible sites and the query) and never by the
caller's identity: the routes check the caller's scope before they look here, so an answer is
only ever served to callers who may see its subject. Identical misses
that arrive while the report is being computed wait for that one computation (single flight)
instead of starting their own. A failed computation is not remembered: its error goes to the
callers that waited for it, and the next caller tries again.

Staleness: an answer is computed from data read at most `ttl_s` before it is served (the entry's
age counts from when its computation began), or, for a caller that joined a computation in
flight, from data read since that computation began. 0 turns the cache off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.admission import InfluxGate

Value = TypeVar("Value")


class ReportCache(Generic[Value]):
    """At most `size` answers (the oldest go first), each for `ttl_s` seconds. Used on the
    event loop only: no locks."""

    def __init__(self, ttl_s: float, size: int = 256) -> None:
        self._ttl, self._size = ttl_s, size
        self._entries: dict[Hashable, tuple[float, Value]] = {}
        self._pending: dict[Hashable, asyncio.Future[Value]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[Value]]) -> Value:
        """The answer remembered for `key`, or the one `compute()` gives (awaited once however
        many callers ask meanwhile)."""
        if self._ttl <= 0:
            return await compute()
        began = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and began < entry[0]:
            return entry[1]
        pending = self._pending.get(key)
        if pending is None:
            # A task of its own, so that a caller who goes away (a closed connection cancels its
            # request) does not cancel the answer the others wait for.
            pending = asyncio.ensure_future(compute())
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._settle(key, began, done))
        return await asyncio.shield(pending)

    def _settle(self, key: Hashable, began: float, done: asyncio.Future[Value]) -> None:
        del self._pending[key]
        if done.cancelled() or done.exception() is not None:
            return
        now = time.monotonic()
        for stale in [k for k, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[stale]
        self._entries.pop(key, None)  # re-inserted last: the oldest entry stays first
        while len(self._entries) >= self._size:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (began + self._ttl, done.result())


async def remembered(
    request: Request, key: Hashable, build: Callable[[Session], Value], *, reads_influx: bool
) -> Value:
    """`build`'s answer for `key` from the app's cache, or computed on a route thread with a
    registry session of its own (the request that started it may go away while others wait for
    it) and, when it `reads_influx`, one of the InfluxDB slots (api.admission.InfluxGate), which
    callers served from the cache never take. The caller's scope is checked before."""
    state = request.app.state

    def compute() -> Value:
        with state.sessions() as session:
            return build(session)

    async def run() -> Value:
        if not reads_influx:
            return await run_in_threadpool(compute)
        gate: InfluxGate = state.influx_gate
        async with gate.slot():
            return await run_in_threadpool(compute)

    cache: ReportCache[Value] = state.reports
    return await cache.get(key, run)
