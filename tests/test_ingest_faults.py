"""Faults with real processes, killed for real: nothing published with QoS 1 is lost, nothing is
stored twice (InfluxDB counts exactly what was published), memory stays within its bound."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from binwatch.servers import InfluxServer, MosquittoServer, free_port
from core.settings import Settings
from devices.registry import BinTags
from tests.conftest import count_points
from tests.helpers import wait_for
from tests.mqtt_helpers import publish_all
from tests.processes import IngestProcess, readings

pytestmark = pytest.mark.registry_backends(
    "sqlite",
    reason="the slowest tests, about killing Mosquitto, InfluxDB and ingest; the registry only"
    " names the fleet here (its own faults: test_registry_errors.py, on PostgreSQL)",
)

# InfluxDB stays down this long in the outage test. The issue asked for a minute; the buffer is
# full within the first seconds and each second after is one more sample of a flat line, so 20 s
# fails on the same growth a minute would (and keeps `make test` within CI's time).
OUTAGE_S = 20
# A stream a test kills something in the middle of (`Stream`): paced, so that ingest, at
# 4,000/s or at 15,000/s, never stores faster than it arrives; it goes on STREAM_AFTER_S after
# the kill, at most STREAM_MAX readings in all.
STREAM_PER_S = 4_000
STREAM_AFTER_S = 1.0
STREAM_MAX = 60_000


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    """A broker this test may restart without disturbing the others."""
    broker = MosquittoServer(tmp_path / "broker", free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def own_influx(tmp_path: Path) -> Iterator[InfluxServer]:
    database = InfluxServer(tmp_path / "influx", free_port())
    database.start()
    yield database
    database.stop()


@pytest.fixture
def ingest_process(
    settings: Settings, pilot_bins: dict[str, BinTags], tmp_path: Path
) -> Iterator[IngestProcess]:
    process = IngestProcess(settings, tmp_path / "ingest.log")
    yield process
    process.stop()


class Stream:
    """Readings published at STREAM_PER_S in a thread until `end()`: a test kills something
    while the stream still flows, however late a loaded machine lets it see the progress it
    waits for (a stream of fixed length was sometimes all stored before the kill landed)."""

    def __init__(self, settings: Settings, bins: list[str]) -> None:
        self.published = 0
        self._messages = readings(settings, bins, STREAM_MAX)
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(settings,), daemon=True)
        self._thread.start()

    def _run(self, settings: Settings) -> None:
        flowing = itertools.takewhile(lambda _m: not self._ended.is_set(), self._messages)
        self.published = publish_all(settings, flowing, per_second=STREAM_PER_S)

    def end(self) -> int:
        """Let it flow a while longer, stop it: how many readings the broker acknowledged."""
        time.sleep(STREAM_AFTER_S)
        self._ended.set()
        self._thread.join(120)
        assert not self._thread.is_alive(), "the publisher did not finish"
        return self.published


def wait_for_exactly(settings: Settings, expected: int, *, timeout: float) -> None:
    wait_for(lambda: count_points(settings) >= expected, timeout=timeout, what=f"{expected} points")
    assert count_points(settings) == expected


def test_ingest_killed_mid_stream_loses_nothing(
    settings: Settings, pilot_bins: dict[str, BinTags], ingest_process: IngestProcess
) -> None:
    ingest_process.start()
    stream = Stream(settings, sorted(pilot_bins))
    wait_for(lambda: count_points(settings) >= 3_000, timeout=60, what="ingest to be mid-stream")
    ingest_process.kill()  # SIGKILL: whatever it held unacknowledged must come back
    stored_at_kill = count_points(settings)
    published = stream.end()
    ingest_process.start()
    wait_for_exactly(settings, published, timeout=120)
    assert stored_at_kill < published, "the kill came too late to test anything"


def test_broker_restart_mid_stream_loses_nothing(
    settings: Settings,
    pilot_bins: dict[str, BinTags],
    own_broker: MosquittoServer,
    ingest_process: IngestProcess,
) -> None:
    settings = settings.model_copy(update={"mqtt_url": own_broker.url})
    ingest_process.env["BINWATCH_MQTT_URL"] = own_broker.url
    bins = sorted(pilot_bins)
    before, after = readings(settings, bins, 20_000), readings(settings, bins, 5_000, offset=20_000)
    ingest_process.start()
    publish_all(settings, before)  # every one acknowledged by the broker
    own_broker.restart()  # while ingest still drains the queue: the rest is on the broker's disk
    wait_for(
        lambda: ingest_process.metric("binwatch_ingest_reconnects_total") == 1,
        timeout=30,
        what="ingest to reconnect by itself",
    )
    publish_all(settings, after)
    wait_for_exactly(settings, len(before) + len(after), timeout=120)


def test_influxdb_down_loses_nothing_and_memory_stays_bounded(
    settings: Settings,
    pilot_bins: dict[str, BinTags],
    own_influx: InfluxServer,
    ingest_process: IngestProcess,
) -> None:
    buffer = 2_000
    settings = settings.model_copy(update={"influx_url": own_influx.url, "ingest_buffer": buffer})
    ingest_process.env.update(
        BINWATCH_INFLUX_URL=own_influx.url, BINWATCH_INGEST_BUFFER=str(buffer)
    )
    bins = sorted(pilot_bins)
    first, during = readings(settings, bins, 5_000), readings(settings, bins, 10_000, offset=5_000)
    ingest_process.start()
    publish_all(settings, first)
    wait_for_exactly(settings, len(first), timeout=60)
    rss_before = ingest_process.rss_kib()

    own_influx.kill()
    down_since = time.monotonic()
    publish_all(settings, during)  # five times the buffer: the broker must hold the rest
    depths, rss = [], []
    while time.monotonic() - down_since < OUTAGE_S:
        depths.append(ingest_process.metric("binwatch_ingest_buffer_messages") or 0)
        rss.append(ingest_process.rss_kib())
        time.sleep(1)
    assert (ingest_process.metric("binwatch_ingest_write_errors_total") or 0) > 0
    own_influx.start()

    wait_for_exactly(settings, len(first) + len(during), timeout=120)
    assert max(depths) <= buffer, f"buffer held {max(depths)} messages, bound {buffer}"
    assert max(depths) > 0
    # Flat memory during the outage: the first sample already holds a full buffer.
    assert max(rss) - rss[1] < 20 * 1024, (
        f"ingest grew {(max(rss) - rss[1]) / 1024:.0f} MiB while InfluxDB was down"
    )
    assert max(rss) - rss_before < 100 * 1024


def test_two_workers_one_killed_lose_nothing(
    settings: Settings, pilot_bins: dict[str, BinTags], tmp_path: Path
) -> None:
    workers = IngestProcess(settings, tmp_path / "workers.log", workers=2)
    try:
        workers.start()
        stream = Stream(settings, sorted(pilot_bins))
        wait_for(
            lambda: count_points(settings) >= 3_000, timeout=60, what="both workers mid-stream"
        )
        victim = workers.worker_pids()[1]
        os.kill(victim, signal.SIGKILL)
        published = stream.end()
        wait_for(
            lambda: victim not in workers.worker_pids() and len(workers.worker_pids()) == 2,
            timeout=30,
            what="the supervisor to restart the killed worker",
        )
        wait_for_exactly(settings, published, timeout=120)
    finally:
        workers.stop()


def test_a_process_whose_port_was_taken_is_launched_again_on_fresh_ports(
    settings: Settings, pilot_bins: dict[str, BinTags], tmp_path: Path
) -> None:
    """The tests' harness: a port chosen free can be taken before the child binds it (an
    outgoing connection's local port comes from the same range), which failed a fresh clone's
    run once (two ingest workers, 2026-12-03). The child says so and is launched again."""
    ingest = IngestProcess(settings, tmp_path / "ingest.log")
    taken = ingest.metrics_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with ingest:
            assert ingest.metrics_port != taken
            assert ingest.metric("binwatch_ingest_subscribed") == 1
    assert f"cannot serve /metrics on 127.0.0.1:{taken} (Address already in use)" in (
        (tmp_path / "ingest.log").read_text()
    )
