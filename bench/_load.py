"""The load generator of bench/api.py: a lean keep-alive HTTP/1.1 client on asyncio streams, an
open loop (users calling at random times) and a closed loop (clients calling back to back), and
per-call latency statistics.

Why not httpx or Locust: the generator shares the machine's 2 cores with the API it measures,
so every microsecond it spends is taken from the API. In the same 10 s run of 400 closed-loop
clients, httpx's AsyncClient spent 2.5 s of CPU and this client 0.4 s (and httpx's pool added
seconds of its own queueing at 400 connections); Locust would add gevent and a process of its
own for the same work. The client speaks only what the bench needs: one request at a time per
connection, Content-Length bodies, Retry-After."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FOLLOW_UP_TRIES = 5
"""A follow-up (a cancel) refused with 503 is sent again after its Retry-After, up to this many
times: left undone, its bin keeps an open request and the next manual request for it is a 409."""
REQUEST_TIMEOUT_S = 30.0
"""An answer later than this counts as a timeout: the failure issue 18 saw (30 s hangs)."""


@dataclass(frozen=True, slots=True)
class Call:
    """One request of the mix: a name for the tables, the method, path and JSON body."""

    name: str
    method: str
    path: str
    body: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    retry_after: float | None
    body: bytes


class _ClosedBeforeAnswer(Exception):
    """The server had closed the kept-alive connection before this request."""


class Connection:
    """One keep-alive connection to the API; `send` one request at a time."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self._auth = host, port, f"Authorization: Bearer {token}\r\n"
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, call: Call) -> Answer:
        """The answer to `call`. A kept-alive connection the server has closed meanwhile
        (uvicorn closes one idle for 5 s) is reopened and the request sent again, once, as
        browsers do; any other failure is raised."""
        if self._streams is not None:
            try:
                return await self._exchange(call)
            except _ClosedBeforeAnswer:
                self.close()
        self._streams = await asyncio.open_connection(self.host, self.port)
        try:
            return await self._exchange(call)
        except _ClosedBeforeAnswer:  # on a new connection: an error like any other
            self.close()
            raise ConnectionResetError("closed before an answer on a new connection") from None

    async def _exchange(self, call: Call) -> Answer:
        assert self._streams is not None
        reader, writer = self._streams
        body = json.dumps(call.body).encode() if call.body is not None else b""
        head = f"{call.method} {call.path} HTTP/1.1\r\nHost: {self.host}\r\n{self._auth}"
        if call.body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        try:
            await writer.drain()
        except ConnectionError:
            raise _ClosedBeforeAnswer from None
        try:
            first = await reader.readline()
        except ConnectionResetError:  # closed by the server as the request arrived: unread
            raise _ClosedBeforeAnswer from None
        if not first:
            raise _ClosedBeforeAnswer
        try:
            status = int(first.split()[1])
            length, retry_after, close = 0, None, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"retry-after":
                    retry_after = float(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            content = await reader.readexactly(length)
        except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
            self.close()
            raise
        if close:
            self.close()
        return Answer(status, retry_after, content)

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


@dataclass
class Tally:
    """What one call saw over a run: latencies of its 2xx answers, and every status."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int | str] = field(default_factory=Counter)
    bare_503: int = 0  # a 503 without Retry-After: the client cannot know when to come back

    @property
    def ok(self) -> int:
        return sum(
            n for status, n in self.statuses.items() if isinstance(status, int) and status < 300
        )

    @property
    def errors(self) -> int:
        """Anything but a 2xx or a 503 with Retry-After (a 503 with it is the API's documented
        answer to load: come back then)."""
        total = sum(self.statuses.values())
        return total - self.ok - (self.statuses[503] - self.bare_503)

    def percentile(self, q: float) -> float | None:
        if len(self.latencies_s) < 2:
            return self.latencies_s[0] if self.latencies_s else None
        return statistics.quantiles(self.latencies_s, n=1000, method="inclusive")[round(q * 10) - 1]


@dataclass
class Run:
    """A run's tallies by call name, and its wall time and the generator's own CPU."""

    seconds: float
    tallies: dict[str, Tally] = field(default_factory=dict)
    generator_cpu_s: float = 0.0
    slowest_s: float = 0.0

    def tally(self, name: str) -> Tally:
        return self.tallies.setdefault(name, Tally())

    @property
    def ok_per_s(self) -> float:
        return sum(t.ok for t in self.tallies.values()) / self.seconds

    @property
    def errors(self) -> int:
        return sum(t.errors for t in self.tallies.values())

    @property
    def retry_503(self) -> int:
        return sum(t.statuses[503] - t.bare_503 for t in self.tallies.values())


FollowUp = Callable[[Call, Answer], Call | None]
"""What a client sends right after an answer, timed as a call of its own (e.g. cancelling the
manual request it just raised, so the bin can be asked for again), or None. It is also told
how each try of its follow-up went (what it returns then is not sent)."""


async def _timed(conn: Connection, call: Call, run: Run, since: float) -> Answer | None:
    """Send `call`; its latency counts from `since` (an open loop's scheduled time, so a late
    start is not hidden). A 503 with Retry-After is recorded and returned like any answer."""
    tally = run.tally(call.name)
    try:
        answer = await asyncio.wait_for(conn.send(call), REQUEST_TIMEOUT_S)
    except TimeoutError:
        conn.close()
        tally.statuses["timeout"] += 1
        return None
    except (OSError, IndexError, ValueError, asyncio.IncompleteReadError) as exc:
        tally.statuses[type(exc).__name__] += 1
        return None
    took = time.monotonic() - since
    run.slowest_s = max(run.slowest_s, took)
    tally.statuses[answer.status] += 1
    if answer.status == 503 and answer.retry_after is None:
        tally.bare_503 += 1
    if answer.status < 300:
        tally.latencies_s.append(took)
    return answer


async def _call(conn: Connection, call: Call, run: Run, since: float, follow: FollowUp) -> float:
    """One call and its follow-up; returns how long the API asked to wait (0 for none)."""
    answer = await _timed(conn, call, run, since)
    if answer is None:
        return 0.0
    if answer.status == 503:
        return answer.retry_after or 1.0
    after = follow(call, answer)
    for _ in range(FOLLOW_UP_TRIES if after is not None else 0):
        assert after is not None
        followed = await _timed(conn, after, run, time.monotonic())
        if followed is None:
            break
        follow(after, followed)  # how its follow-up went, for the mix to know (it returns None)
        if followed.status != 503:
            break
        await asyncio.sleep(followed.retry_after or 1.0)  # a follow-up refused is tried again
    return 0.0


def open_loop(
    host: str,
    port: int,
    token: str,
    pick: Callable[[random.Random], Call],
    follow: FollowUp,
    *,
    users: int,
    mean_gap_s: float,
    seconds: float,
    seed: int = 18,
) -> Run:
    """`users` users, each calling at exponentially distributed gaps of mean `mean_gap_s` (a
    Poisson stream of users / mean_gap_s calls per second in all), on a connection of its own.
    A call due while the user's last one is unanswered goes out right after it, its latency
    still counted from when it was due. A 503 makes the user wait its Retry-After."""

    async def user(n: int, run: Run, until: float) -> None:
        rng = random.Random(seed * 1000 + n)
        conn = Connection(host, port, token)
        due = time.monotonic() + rng.expovariate(1 / mean_gap_s)
        while due < until:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            wait = await _call(conn, pick(rng), run, due, follow)
            due = max(due + rng.expovariate(1 / mean_gap_s), time.monotonic() + wait)
        conn.close()

    return _drive(seconds, lambda run, until: [user(n, run, until) for n in range(users)])


def closed_loop(
    host: str,
    port: int,
    token: str,
    pick: Callable[[random.Random], Call],
    follow: FollowUp,
    *,
    clients: int,
    seconds: float,
    seed: int = 18,
) -> Run:
    """`clients` clients, each sending its next call as soon as the last is answered (after the
    Retry-After of a 503), on a connection of its own, for `seconds`."""

    async def client(n: int, run: Run, until: float) -> None:
        rng = random.Random(seed * 1000 + n)
        conn = Connection(host, port, token)
        while time.monotonic() < until:
            wait = await _call(conn, pick(rng), run, time.monotonic(), follow)
            if wait:
                await asyncio.sleep(min(wait, max(0.0, until - time.monotonic())))
        conn.close()

    return _drive(seconds, lambda run, until: [client(n, run, until) for n in range(clients)])


def _drive(seconds: float, tasks: Callable[[Run, float], list[Any]]) -> Run:
    async def main() -> Run:
        run = Run(seconds)
        began_cpu = time.process_time()
        began = time.monotonic()
        await asyncio.gather(*tasks(run, began + seconds))
        run.seconds = time.monotonic() - began  # the last answers may land after the deadline
        run.generator_cpu_s = time.process_time() - began_cpu
        return run

    return asyncio.run(main())
