"""`binwatch ingest` as a real child process, for tests that kill it, and the readings they send."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from binwatch.servers import free_port
from core.settings import Settings
from devices.contract import Reading, TopicKind, Topics
from tests.helpers import wait_for


class IngestProcess:
    """`python -m binwatch ingest [--workers N]` with the test's settings."""

    def __init__(self, settings: Settings, log_path: Path, *, workers: int = 1) -> None:
        self.workers = workers
        self.metrics_port = free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            **settings.as_env(),
            "BINWATCH_INGEST_METRICS_PORT": str(self.metrics_port),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "binwatch", "ingest", "--workers", str(self.workers)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        for worker in range(self.workers):
            wait_for(
                lambda w=worker: self.metric("binwatch_ingest_subscribed", worker=w) == 1,  # type: ignore[misc]
                timeout=30,
                what=f"ingest worker {worker} to subscribe (log: {self.log_path})",
            )

    def metric(self, name: str, *, worker: int = 0, **labels: str) -> float | None:
        """A sample from a worker's /metrics; None while it does not answer."""
        assert self.process is not None and self.process.poll() is None, self.log_tail()
        try:
            text = httpx.get(
                f"http://127.0.0.1:{self.metrics_port + worker}/metrics", timeout=2
            ).text
        except httpx.HTTPError:
            return None
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return None

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

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])


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
