"""Issue 13: connections that trickle a request head (or send nothing) are closed by the real
`binwatch api` process once `api_header_timeout_s` has passed, while normal requests made
meanwhile are answered."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from core.influx import InfluxClient
from core.settings import Settings
from devices.registry import BinTags
from tests.api_process import ApiProcess
from tests.helpers import ADMIN_HEADERS

pytestmark = pytest.mark.registry_backends(
    "sqlite",
    reason="slow and stalled HTTP clients are uvicorn's and the admission gate's business, before"
    " any registry query",
)

HEAD_TIMEOUT_S = 2.0
TRICKLERS = 30
IDLERS = 10
GIVE_UP_S = 15.0
"""A connection still open this long after connecting has not been cut: the test fails."""


async def _slow_client(port: int, *, trickle: bool) -> float:
    """Connect, then send a header line every 0.3 s (or nothing); seconds until the server
    closed the connection, or GIVE_UP_S when it never did."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if trickle:
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        n = 0
        while time.monotonic() - started < GIVE_UP_S:
            if trickle:
                writer.write(f"X-Slow-{n}: {n}\r\n".encode())
                n += 1
            try:
                if await asyncio.wait_for(reader.read(1024), 0.3) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                continue
            except ConnectionError:
                return time.monotonic() - started
        return GIVE_UP_S
    finally:
        writer.close()


async def _normal_requests(url: str, count: int) -> list[int]:
    codes = []
    async with httpx.AsyncClient(base_url=url, headers=ADMIN_HEADERS, timeout=10) as client:
        for _ in range(count):
            codes.append((await client.get("/api/v1/sites")).status_code)
            await asyncio.sleep(0.2)
    return codes


def test_slow_and_idle_request_heads_are_cut_after_the_bound(
    settings: Settings, pilot_bins: dict[str, BinTags], tmp_path: Path
) -> None:
    influx = InfluxClient(settings)
    influx.ensure_database(settings.raw_retention)
    influx.close()
    bounded = settings.model_copy(update={"api_header_timeout_s": HEAD_TIMEOUT_S})
    with ApiProcess(bounded, tmp_path / "api.log") as api:

        async def run() -> tuple[list[float], list[int]]:
            slow = [_slow_client(api.port, trickle=True) for _ in range(TRICKLERS)]
            idle = [_slow_client(api.port, trickle=False) for _ in range(IDLERS)]
            normal = _normal_requests(api.url, 15)  # over 3 s, while the slow ones hang on
            *closed, codes = await asyncio.gather(*slow, *idle, normal)
            return closed, codes  # type: ignore[return-value]

        closed, codes = asyncio.run(run())
        after = httpx.get(f"{api.url}/api/v1/sites", headers=ADMIN_HEADERS, timeout=10)
    assert codes == [200] * 15, codes
    assert after.status_code == 200
    assert max(closed) < HEAD_TIMEOUT_S + 4, sorted(closed)  # every one was cut...
    assert min(closed) >= HEAD_TIMEOUT_S - 0.2, sorted(closed)  # ...and none before the bound


def _non_reader(port: int) -> socket.socket:
    """A connection with a tiny receive window that asks for 1.5 MB 8 times over (pipelined,
    more than loopback's socket buffers hold) and reads nothing."""
    conn = socket.socket()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.connect(("127.0.0.1", port))
    conn.sendall(b"GET /docs/assets/swagger-ui-bundle.js HTTP/1.1\r\nHost: x\r\n\r\n" * 8)
    return conn


def _body_staller(port: int) -> socket.socket:
    """A connection that announces a 100-byte JSON body, sends one byte of it and stops."""
    conn = socket.create_connection(("127.0.0.1", port))
    conn.sendall(
        b"POST /api/v1/alerts/1/ack HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: {ADMIN_HEADERS['Authorization']}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    return conn


STALL_S = 2.0


@pytest.mark.parametrize(
    ("stuck_client", "logged"),
    [(_non_reader, "took none of its answer"), (_body_staller, "sent none of its request body")],
    ids=["non-readers", "body-stallers"],
)
def test_stalled_clients_lose_their_slot(
    settings: Settings,
    pilot_bins: dict[str, BinTags],
    tmp_path: Path,
    stuck_client: Callable[[int], socket.socket],
    logged: str,
) -> None:
    """With 2 slots, 4 clients that stall (never read their answers, or never finish their
    bodies) would hold both for good; after `api_stall_timeout_s` they are cut off and others
    are served again."""
    small = settings.model_copy(
        update={"api_max_concurrency": 2, "api_queue_wait_s": 0.2, "api_stall_timeout_s": STALL_S}
    )
    with ApiProcess(small, tmp_path / "api.log") as api:
        stuck = [stuck_client(api.port) for _ in range(4)]
        try:
            time.sleep(0.5)
            during = httpx.get(f"{api.url}/api/v1/sites", headers=ADMIN_HEADERS, timeout=10)
            started = time.monotonic()
            after = during
            while after.status_code != 200 and time.monotonic() - started < 15:
                time.sleep(0.2)
                after = httpx.get(f"{api.url}/api/v1/sites", headers=ADMIN_HEADERS, timeout=10)
            freed_after = time.monotonic() - started
            if stuck_client is _body_staller:
                stuck[0].settimeout(10)
                told = stuck[0].recv(4096)
                assert told.startswith(b"HTTP/1.1 408") and logged.encode() in told, told
        finally:
            for conn in stuck:
                conn.close()
        log = api.log_tail()
    assert during.status_code == 503 and during.headers["Retry-After"] == "1"  # slots were held
    assert after.status_code == 200, log
    assert freed_after < STALL_S * 2 + 3, freed_after  # two rounds of stalls at most
    assert f"{logged} for 2 s" in log
