"""`binwatch ingest`, the collector and the alerter as real child processes, for tests that kill
them or run several nodes at once, and the readings they send."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

import httpx
from prometheus_client.parser import text_string_to_metric_families

from binwatch.servers import free_port, port_is_free
from core.settings import Settings
from devices.contract import Reading, TopicKind, Topics
from tests.helpers import wait_for

# How long a child process may take to answer: its imports alone took 8 s, and eight processes
# starting at once over a minute, on the shared 2-core machine at a load of 15.
START_TIMEOUT_S = 180.0
# Each look makes an HTTP client: looking often would only take CPU from the processes starting.
START_POLL_S = 0.5
# Launches of a process whose port was taken between choosing it and binding it (`start`).
PORT_TRIES = 3
PORT_TAKEN = "address already in use"  # binwatch's and uvicorn's words, in lower case


class BinwatchChild:
    """`python -m binwatch <argv>` with the test's settings (and `env` on top), its output in
    `log_path`: started, waited for, stopped, whatever the command."""

    def __init__(
        self,
        settings: Settings,
        argv: list[str],
        log_path: Path,
        env: dict[str, str],
        cwd: Path | None = None,
    ) -> None:
        self.argv = argv
        self.log_path = log_path
        self.cwd = cwd
        self.env = {**os.environ, **settings.as_env(), **env}
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        """Start the process without waiting (a test may start others meanwhile)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "binwatch", *self.argv],
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_until(self, probe: Callable[[], object], what: str) -> None:
        """Until `probe` is true (it fails if the process died); stopped if it never is."""
        try:
            wait_for(
                probe,
                timeout=START_TIMEOUT_S,
                interval=START_POLL_S,
                what=f"{what} (log: {self.log_path})",
            )
        except BaseException:
            self.stop()
            raise

    def start(self) -> None:
        """Launch, then wait until it is up; launched again on fresh ports when a port chosen
        free was taken before the process bound it (an outgoing connection of any process on
        the machine takes its local port from the same range as `free_port`)."""
        for tries_left in reversed(range(PORT_TRIES)):
            began = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.launch()
            try:
                self.wait_up()
                return
            except AssertionError:
                log = self.log_path.read_bytes()[began:].decode(errors="replace")
                taken = PORT_TAKEN in log.lower()
                if not (tries_left and taken and self.new_ports()):
                    raise

    def wait_up(self) -> None:
        self.wait_until(self.ready, f"binwatch {self.argv[0]} to be ready")

    def new_ports(self) -> bool:
        """Choose fresh ports for a launch again; False when the process has none to change."""
        return False

    def ready(self) -> bool:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def alive(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log_tail()
        return True

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 30 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])


class IngestProcess(BinwatchChild):
    """`python -m binwatch ingest [--workers N]` with the test's settings."""

    def __init__(self, settings: Settings, log_path: Path, *, workers: int = 1) -> None:
        self.workers = workers
        self.metrics_port = _free_ports(workers)
        super().__init__(
            settings,
            ["ingest", "--workers", str(workers)],
            log_path,
            {"BINWATCH_INGEST_METRICS_PORT": str(self.metrics_port)},
        )

    def wait_up(self) -> None:
        self.wait_subscribed()

    def new_ports(self) -> bool:
        self.metrics_port = _free_ports(self.workers)
        self.env["BINWATCH_INGEST_METRICS_PORT"] = str(self.metrics_port)
        return True

    def wait_subscribed(self) -> None:
        """Until every worker says it is subscribed. Spawned workers import binwatch each: on a
        busy 2-core machine three took ~30 s to subscribe, hence the generous bound."""
        for worker in range(self.workers):
            self.wait_until(
                lambda w=worker: self.metric("binwatch_ingest_subscribed", worker=w) == 1,  # type: ignore[misc]
                f"ingest worker {worker} to subscribe",
            )

    def metric(self, name: str, *, worker: int = 0, **labels: str) -> float | None:
        """A sample from a worker's /metrics; None while it does not answer."""
        self.alive()
        return scrape(self.metrics_port + worker, name, **labels)

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        if self.workers == 1:
            return [self.process.pid]
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        # multiprocessing also starts a resource tracker; the workers are the spawned ones.
        return [int(pid) for pid in children.split() if b"spawn_main" in _cmdline(pid)]

    def rss_kib(self) -> int:
        """Resident memory of ingest, workers included."""
        total = 0
        assert self.process is not None
        for pid in {self.process.pid, *self.worker_pids()}:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()


class ServiceProcess(BinwatchChild):
    """`python -m binwatch collector|alerter` with the test's settings and its /metrics on a
    free port, so a test runs the services as a deployment does: separate processes."""

    def __init__(self, settings: Settings, command: str, log_path: Path) -> None:
        self.command = command
        self.metrics_port = free_port()
        super().__init__(
            settings,
            [command],
            log_path,
            {f"BINWATCH_{command.upper()}_METRICS_PORT": str(self.metrics_port)},
        )

    def new_ports(self) -> bool:
        self.metrics_port = free_port()
        self.env[f"BINWATCH_{self.command.upper()}_METRICS_PORT"] = str(self.metrics_port)
        return True

    def ready(self) -> bool:
        """Its /metrics answers."""
        self.alive()
        try:
            return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).is_success
        except httpx.HTTPError:
            return False


def scrape(port: int, name: str, **labels: str) -> float | None:
    """A sample of the Prometheus /metrics on 127.0.0.1:`port`; None while nobody answers there
    or the sample is missing."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def _free_ports(count: int) -> int:
    """The first of `count` consecutive free loopback ports: worker n serves its /metrics on
    the first + n. Make the other processes' ports first: the kernel hands out free ports in
    sequence, so the next one asked for would be inside this range."""
    while True:
        first = free_port()
        if all(port_is_free(first + n) for n in range(1, count)):
            return first


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # exited meanwhile
        return b""


def readings(
    settings: Settings, bin_ids: list[str], count: int, *, offset: int = 0
) -> list[tuple[str, bytes]]:
    """`count` valid readings spread over the bins, each bin's a second apart, numbered from
    `offset` so later batches never collide with earlier ones (recent: within retention)."""
    topics = Topics(settings.topic_prefix)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=12)
    messages = []
    for index in range(offset, offset + count):
        bin_id = bin_ids[index % len(bin_ids)]
        reading = Reading(
            ts=start + timedelta(seconds=index // len(bin_ids)),
            seq=index // len(bin_ids),
            fill_pct=float(index % 101),
            deposits=index % 7,
            contaminated=index % 2 * (index % 7 > 0),
        )
        messages.append(
            (
                topics.bin(bin_id, TopicKind.telemetry),
                reading.model_dump_json(exclude_none=True).encode(),
            )
        )
    return messages
