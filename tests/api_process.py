"""`binwatch api` as a real child process on a free loopback port, and a closed-loop load driver
for it: the tests of load, memory and slow clients need the real server, not a TestClient."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from binwatch.servers import free_port
from core.settings import Settings
from tests.helpers import ADMIN_HEADERS
from tests.processes import BinwatchChild


class ApiProcess(BinwatchChild):
    """`python -m binwatch api --port P [--workers N]` with the test's settings; `code`: the
    checkout whose binwatch runs (`-m` imports from the working folder; a benchmark compares
    two), this one by default."""

    def __init__(
        self, settings: Settings, log_path: Path, *, workers: int = 1, code: Path | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = ["api", "--port", str(self.port), "--workers", str(workers)]
        super().__init__(settings, command, log_path, {}, cwd=code)

    def new_ports(self) -> bool:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv[self.argv.index("--port") + 1] = str(self.port)
        return True

    def ready(self) -> bool:
        """It answers /health (503 too: InfluxDB may have no database yet)."""
        self.alive()
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    def rss_kib(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@dataclass
class LoadResult:
    """What a closed-loop run saw: answers by status, the slowest one, and the 503s that came
    without a Retry-After (a client could not know when to come back)."""

    seconds: float
    statuses: Counter[int | str] = field(default_factory=Counter)
    slowest_s: float = 0.0
    bare_503: int = 0

    @property
    def answered(self) -> int:
        return sum(n for status, n in self.statuses.items() if isinstance(status, int))

    @property
    def per_s(self) -> float:
        return self.statuses[200] / self.seconds

    def __str__(self) -> str:
        return (
            f"{self.statuses[200] / self.seconds:.0f} ok/s over {self.seconds:.1f} s, "
            f"statuses {dict(self.statuses)}, slowest {self.slowest_s:.2f} s"
        )


async def _client(
    base_url: str, paths: list[str], until: float, timeout: float, result: LoadResult, n: int
) -> None:
    async with httpx.AsyncClient(base_url=base_url, headers=ADMIN_HEADERS, timeout=timeout) as c:
        i = n
        while time.monotonic() < until:
            started = time.monotonic()
            back_after = 0.0
            try:
                answer = await c.get(paths[i % len(paths)])
            except httpx.TimeoutException:
                result.statuses["timeout"] += 1
            except httpx.HTTPError as exc:
                result.statuses[type(exc).__name__] += 1
            else:
                result.statuses[answer.status_code] += 1
                if answer.status_code == 503 and "retry-after" not in answer.headers:
                    result.bare_503 += 1
                if answer.status_code == 503:
                    back_after = float(answer.headers.get("retry-after", 1))
            # how long the answer took, not the wait a 503 asks for after it
            result.slowest_s = max(result.slowest_s, time.monotonic() - started)
            await asyncio.sleep(back_after)
            i += 1


def closed_loop(
    base_url: str, paths: list[str], *, clients: int, seconds: float, timeout: float
) -> LoadResult:
    """`clients` clients, each sending its next GET as soon as the last is answered (a 503's
    Retry-After honoured), for `seconds`; a request unanswered after `timeout` counts as one."""

    async def run() -> LoadResult:
        result = LoadResult(seconds)
        until = time.monotonic() + seconds
        await asyncio.gather(
            *(_client(base_url, paths, until, timeout, result, n) for n in range(clients))
        )
        return result

    return asyncio.run(run())
