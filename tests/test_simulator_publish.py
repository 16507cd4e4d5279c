"""The simulator against a real Mosquitto, checked by `mosquitto_sub`, a client nobody here wrote."""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

import simulator.publisher as publisher
from binwatch.servers import free_port
from core.settings import Settings
from devices.contract import Reading, Status
from devices.registry import BinTags
from simulator.model import FleetModel
from simulator.publisher import SimulatorError, run_simulation
from tests.helpers import wait_for

pytestmark = [
    pytest.mark.servers,
    pytest.mark.registry_backends(
        "sqlite",
        reason="the simulator and Mosquitto are under test; the registry only lists the fleet",
    ),
]

START = datetime(2026, 11, 23, 3, 30, tzinfo=UTC)  # 11:30 in the city: kitchen bins are busy
BINS = [
    BinTags(
        bin=f"bin-{stream}",
        site="site-1",
        site_type="compound",
        stream=stream,
        community="c1",
        street="st1",
        district="d1",
        operator="op1",
    )
    for stream in ("kitchen", "recyclable", "residual")
]


@dataclass
class Subscriber:
    """A running `mosquitto_sub -v -d`: `lines` gets what it prints, debug lines included."""

    process: subprocess.Popen[str]
    lines: queue.Queue[str]
    pump: threading.Thread

    def messages(self, prefix: str) -> list[tuple[str, str]]:
        """(topic, payload) of every message printed so far under `prefix`; once the process
        has exited, all it printed (the pump thread may still be copying its last lines)."""
        if self.process.poll() is not None:
            self.pump.join(timeout=10)
        found = []
        while not self.lines.empty():
            line = self.lines.get_nowait().rstrip("\n")
            if line.startswith(prefix):
                topic, payload = line.split(" ", 1)
                found.append((topic, payload))
        return found


def subscribe(settings: Settings, topic: str, *extra: str) -> Subscriber:
    """Start `mosquitto_sub` and return once its SUBACK is in (`-d` prints it), so nothing
    published afterwards can be missed."""
    endpoint = settings.mqtt_endpoint()
    process = subprocess.Popen(
        [
            # Line-buffered: into a pipe, its stdio would sit on the SUBACK line indefinitely.
            "stdbuf",
            "-oL",
            "mosquitto_sub",
            "-h",
            endpoint.host,
            "-p",
            str(endpoint.port),
            "-t",
            topic,
            "-q",
            "1",
            "-v",
            "-d",
            "-W",
            "30",
            *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    pumping = threading.Thread(target=pump, daemon=True)
    pumping.start()

    def subscribed() -> bool:
        # The broker sends nothing, retained messages included, before the SUBACK.
        while not lines.empty():
            if "received SUBACK" in lines.get_nowait():
                return True
        return False

    wait_for(subscribed, timeout=10, what=f"mosquitto_sub to subscribe to {topic}")
    return Subscriber(process, lines, pumping)


@pytest.fixture
def subscribers() -> Iterator[list[Subscriber]]:
    started: list[Subscriber] = []
    yield started
    for sub in started:
        if sub.process.poll() is None:
            sub.process.terminate()
        sub.process.wait(timeout=10)


def test_every_reading_arrives_once_and_statuses_end_offline(
    settings: Settings, subscribers: list[Subscriber]
) -> None:
    prefix = settings.topic_prefix
    telemetry = subscribe(settings, f"{prefix}/bins/+/telemetry", "-C", "15")
    subscribers.append(telemetry)

    result = run_simulation(settings, BINS, interval_s=60, speed=0, seed=4, start=START, rounds=5)

    assert telemetry.process.wait(timeout=20) == 0, "mosquitto_sub did not get its 15 messages"
    received = telemetry.messages(f"{prefix}/bins/")
    assert len(received) == 15
    by_bin: dict[str, list[Reading]] = {}
    for topic, payload in received:
        by_bin.setdefault(topic.split("/")[-2], []).append(Reading.model_validate_json(payload))
    model = FleetModel(BINS, seed=4, start=START, interval_s=60, timezone=settings.timezone)
    expected: dict[str, list[Reading]] = {}
    for _ in range(5):
        for bin_id, reading in model.step().readings:
            expected.setdefault(bin_id, []).append(reading)
    assert by_bin == expected
    assert result.published == 15
    assert result.rounds == 5
    assert result.last == {bin_id: readings[-1] for bin_id, readings in expected.items()}

    statuses = subscribe(settings, f"{prefix}/bins/+/status", "--retained-only", "-C", "3")
    subscribers.append(statuses)
    assert statuses.process.wait(timeout=20) == 0
    retained = {
        topic.split("/")[-2]: Status.model_validate_json(payload)
        for topic, payload in statuses.messages(f"{prefix}/bins/")
    }
    assert retained == {b.bin: Status(ts=expected[b.bin][-1].ts, online=False) for b in BINS}


def test_a_stop_event_ends_the_run_between_rounds_with_bins_offline(
    settings: Settings, subscribers: list[Subscriber]
) -> None:
    stop = threading.Event()
    # At speed 1 the second round is a minute away: the stop must cut that wait short.
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    try:
        result = run_simulation(settings, BINS, interval_s=60, speed=1, seed=1, stop=stop)
    finally:
        timer.cancel()
    assert result.published == 3
    assert result.elapsed_s < 10
    statuses = subscribe(
        settings, f"{settings.topic_prefix}/bins/+/status", "--retained-only", "-C", "3"
    )
    subscribers.append(statuses)
    assert statuses.process.wait(timeout=20) == 0
    offline = [Status.model_validate_json(p) for _t, p in statuses.messages(settings.topic_prefix)]
    assert [s.online for s in offline] == [False] * 3


def test_no_broker_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publisher, "CONNECT_TIMEOUT_S", 1.0)
    nowhere = Settings(mqtt_url=f"mqtt://127.0.0.1:{free_port()}")
    with pytest.raises(SimulatorError, match="no answer from an MQTT broker"):
        run_simulation(nowhere, BINS, interval_s=60, speed=0, seed=1, rounds=1)


def test_no_reading_is_published_before_its_own_time(settings: Settings) -> None:
    # A bin cannot measure the future, so a run that is ahead of the clock waits for it.
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    result = run_simulation(settings, BINS, interval_s=60, speed=0, seed=1, rounds=1, start=ahead)
    assert result.published == len(BINS)
    assert datetime.now(UTC) >= ahead
