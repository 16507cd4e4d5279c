"""The simulator's MQTT boundary: publishes what `simulator.model` produces, paced and lossless.

One shared connection carries the whole fleet. A real bin has its own connection whose MQTT will
says `online: false`; a will belongs to one connection and names one topic, so the shared
connection cannot have one standing for hundreds of bins. A clean stop therefore publishes
`online: false` for every bin itself; a simulator killed outright leaves them `online: true`.
(One connection per bin would need a socket and a paho thread per bin: not worth it for a demo
and load tool, so it is not offered.)

Nothing is lost: every message is QoS 1, a bounded window of them awaits its PUBACK (so memory
stays flat in flood mode whatever the fleet size), and `run_simulation` returns only once the
broker has acknowledged everything, statuses included.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as paho

from core.errors import BinwatchError
from core.mqtt import Connection, is_auth_failure, make_client, sub_account
from core.settings import Settings
from devices.contract import Event, Reading, Status, TopicKind, Topics
from devices.registry import BinTags
from simulator.faults import ANNOUNCED_BY_SENDER, Fault, Injector
from simulator.model import FIRST_FILL_MAX_PCT, FleetModel, Resumed, resume_start

log = logging.getLogger(__name__)

QOS = 1
# A broker on the same network answers CONNECT in milliseconds; 10 s allows for a slow start
# without leaving someone staring at a wrong address.
CONNECT_TIMEOUT_S = 10.0
# Messages published and not yet acknowledged: enough to keep a loopback broker busy at its
# ~20,000 messages/s ceiling (FACTS.md), small enough that a flood never grows memory.
WINDOW = 1000
# No PUBACK at all for this long means the broker is gone for good, not merely busy.
ACK_TIMEOUT_S = 30.0
# How often `on_progress` hears from us: often enough for a live status line.
PROGRESS_EVERY_S = 1.0
# Rate pacing sleeps only once it is this far ahead, so it does not sleep per message.
PACE_SLACK_S = 0.005
# An unbounded accelerated run (the demo) starts this far back: two hours of history show within
# two minutes at speed 60, then the fleet reports in real time. A resumed run (the demo's
# restart) starts where each bin's stored data ends instead, but no further back than this.
UNBOUNDED_BACKFILL = timedelta(hours=2)
# A paced run's round published more than an interval after its own `ts` is history: each bin
# sends it as a real bin flushes its offline buffer, in arrays of up to this many readings (the
# clock-skew rule knows that an array's readings are old by right: alerts/rules.py).
REPLAY_BATCH = 10
# MQTT 5 §3.2.2.3.3: a server that sends no Receive Maximum accepts 65,535 in flight.
DEFAULT_RECEIVE_MAXIMUM = 65535


class SimulatorError(BinwatchError):
    """The broker refused the simulator, or stopped acknowledging what it sent."""


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What a run delivered: `published` readings (all acknowledged), over `elapsed_s` seconds
    from CONNACK to the last PUBACK, and the last reading each bin sent."""

    published: int
    elapsed_s: float
    rounds: int
    last: dict[str, Reading]


class _Publisher:
    """A paho client with a bounded window of unacknowledged QoS 1 messages.

    paho's own `max_queued_messages_set` makes `publish` fail when its queue is full; counting
    PUBACKs in `on_publish` lets `publish` wait instead, which is the back-pressure a flood needs.
    The counters take no lock (each has one writer: `_sent` the caller, `_acked` paho's network
    thread), and a full window sleeps until half of it is acknowledged: a lock or a wake-up per
    message would cost the publisher a third of its throughput.
    """

    def __init__(
        self, settings: Settings, client_id: str, *, on_fault: Callable[[str], None] | None = None
    ) -> None:
        """`on_fault` hears every fault sent to the faults topic (`binwatch demo --inject`)."""
        self._endpoint = settings.mqtt_endpoint()
        self._faults_topic = Topics(settings.topic_prefix).simulator_faults()
        self._on_fault = on_fault
        self._connection: Connection = make_client(settings, client_id, persistent=False)
        self._connected = threading.Event()
        self._wakeup = threading.Event()
        self._wake_at: int | None = None
        self._refusal: str | None = None
        self._sent = 0
        self._acked = 0
        self._limit = WINDOW
        client = self._connection.client
        # The window is kept here (`_limit`); paho's own limit walks every unacknowledged message
        # on each PUBACK, which cost ~40 % of the publish rate (docs/performance.md).
        client.max_inflight_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message

    def open(self) -> None:
        """Connect and wait for the CONNACK; a refusal or silence is a `SimulatorError`."""
        where = f"{self._endpoint.host}:{self._endpoint.port}"
        self._connection.start()
        if not self._connected.wait(CONNECT_TIMEOUT_S) or self._refusal is not None:
            self._connection.stop()
            if self._refusal is not None:
                raise SimulatorError(
                    f"MQTT broker at {where} refused the simulator: {self._refusal}"
                )
            raise SimulatorError(
                f"no answer from an MQTT broker at {where} within {CONNECT_TIMEOUT_S:.0f} s"
                " (is Mosquitto running, is BINWATCH_MQTT_URL right?)"
            )

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Send one QoS 1 message, first waiting while the window is full."""
        if self._refusal is not None or self._sent - self._acked >= self._limit:
            self._wait_until_in_flight(self._limit // 2, "room in the publish window")
        self._sent += 1
        info = self._connection.client.publish(topic, payload, qos=QOS, retain=retain)
        # NO_CONN: paho keeps QoS 1 messages while it reconnects and sends them afterwards.
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            raise SimulatorError(f"paho could not queue a message: {paho.error_string(info.rc)}")

    def drain(self) -> None:
        """Return once the broker has acknowledged every message sent."""
        self._wait_until_in_flight(0, "the last acknowledgements")

    def close(self) -> None:
        # A normal DISCONNECT, so a broker would discard a will rather than publish it.
        self._connection.stop()

    def _wait_until_in_flight(self, at_most: int, what: str) -> None:
        """Sleep until no more than `at_most` messages await a PUBACK; fail if PUBACKs stop."""
        while True:
            if self._refusal is not None:
                raise SimulatorError(f"the broker refused the simulator: {self._refusal}")
            if self._sent - self._acked <= at_most:
                return
            acked = self._acked
            self._wakeup.clear()
            self._wake_at = at_most
            # Checked again after arming: a PUBACK between the first check and here set nothing.
            if self._sent - self._acked > at_most and self._refusal is None:
                self._wakeup.wait(ACK_TIMEOUT_S)
            self._wake_at = None
            if self._acked == acked and self._refusal is None:
                raise SimulatorError(
                    f"no PUBACK from the broker for {ACK_TIMEOUT_S:.0f} s while waiting for {what}"
                    f" ({self._sent - self._acked} messages unacknowledged)"
                )

    # paho's network thread calls these: they only record and signal, so they cannot raise.
    def _on_connect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            if is_auth_failure(reason) or not self._connected.is_set():
                self._refusal = str(reason)
                self._wakeup.set()
                self._connected.set()
            else:
                log.warning("MQTT broker refused a reconnect (%s); paho retries", reason)
            return
        # MQTT 5 §3.3.4: never more unacknowledged QoS 1 PUBLISHes than the server's Receive
        # Maximum (stock Mosquitto says 20), or it disconnects us. paho neither applies it nor
        # lets its own in-flight limit change once connected, so the window enforces it.
        self._limit = min(WINDOW, getattr(properties, "ReceiveMaximum", DEFAULT_RECEIVE_MAXIMUM))
        if self._on_fault is not None:
            # In on_connect, so a reconnect (with a clean start) subscribes again.
            self._connection.client.subscribe(self._faults_topic, qos=QOS)
        if self._connected.is_set():
            log.info("reconnected to the MQTT broker; paho resends what was unacknowledged")
        self._connected.set()

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any
    ) -> None:
        if reason.is_failure:
            log.warning("lost the MQTT broker (%s); paho reconnects", reason)

    def _on_message(self, _client: paho.Client, _userdata: Any, message: Any) -> None:
        if self._on_fault is None:
            return
        try:
            self._on_fault(message.payload.decode())
        except (UnicodeDecodeError, ValueError) as exc:
            log.warning("ignored a fault on %s: %s", message.topic, exc)

    def _on_publish(
        self, _client: paho.Client, _userdata: Any, _mid: int, reason: Any, _properties: Any
    ) -> None:
        self._acked += 1
        if reason.is_failure and self._refusal is None:
            # e.g. 0x87 Not authorized: a broker ACL that does not let this user speak for bins.
            self._refusal = f"PUBACK {reason}"
            self._wakeup.set()
        wake_at = self._wake_at
        if wake_at is not None and self._sent - self._acked <= wake_at:
            self._wakeup.set()


def default_start(
    now: datetime, *, interval_s: float, speed: float, rounds: int | None, duration_s: float | None
) -> datetime:
    """Where simulated time starts when the caller does not say.

    A bounded run starts in the past, by as much as its simulated span outruns the clock, so its
    history ends about when the run does: no reading lies in the future (at speed 60 an hour of
    running would otherwise write 60 hours ahead) and dashboards show it at once. An unbounded
    accelerated run starts `UNBOUNDED_BACKFILL` ago: it replays that history at its speed, then
    goes on in real time, since `run_simulation` never publishes a reading before its `ts`.
    """
    if rounds is not None:
        simulated = rounds * interval_s
        real = simulated / speed if speed > 0 else 0.0
    elif duration_s is not None and speed > 0:
        simulated, real = duration_s * speed, duration_s
    else:
        return now - UNBOUNDED_BACKFILL if speed > 1 else now
    return now - timedelta(seconds=max(0.0, simulated - real))


def run_simulation(
    settings: Settings,
    bins: Iterable[BinTags],
    *,
    interval_s: float,
    speed: float,
    seed: int,
    start: datetime | None = None,
    rounds: int | None = None,
    duration_s: float | None = None,
    rate: float | None = None,
    stop: threading.Event | None = None,
    on_progress: Callable[[int], None] | None = None,
    between_rounds: Callable[[FleetModel], None] | None = None,
    injector: Injector | None = None,
    resume: Mapping[str, Resumed] | None = None,
    listen_for_faults: bool = False,
    first_fill_max: float = FIRST_FILL_MAX_PCT,
) -> SimulationResult:
    """Publish the fleet's readings until `rounds` are done, `duration_s` (real seconds) has
    passed or `stop` is set; statuses go `online: true` first and `online: false` at the end.

    Simulated time advances `interval_s` per round. Rounds are `interval_s / speed` real seconds
    apart; `speed=0` or a `rate` (readings per second, a steady load for benchmarks) publishes as
    fast as allowed instead. Setting `stop` (e.g. from a SIGINT handler) is the clean way out.
    `between_rounds` may change the model between two rounds (the crews empty bins there, so
    the model is never changed while a round is being computed). `resume` (each bin's last
    stored reading, simulator.resume) continues every bin from there: no period is written
    twice, and without `start` the run begins where the stored data ends. `listen_for_faults`
    takes faults from the faults topic while running (`binwatch demo --inject`).
    `first_fill_max`: the bins that do not resume start at a fill drawn from 0 to it (%).
    """
    if rounds is None and duration_s is None and stop is None:
        raise ValueError("give rounds, duration_s or a stop event: the run must be able to end")
    if interval_s <= 0 or speed < 0 or (rate is not None and rate <= 0):
        raise ValueError("interval_s and rate must be positive and speed not negative")
    bins = list(bins)
    if not bins:
        raise ValueError("no bins to simulate")
    stop = stop or threading.Event()
    if start is None:
        start = default_start(
            datetime.now(UTC),
            interval_s=interval_s,
            speed=speed,
            rounds=rounds,
            duration_s=duration_s,
        )
        if resume:
            start = resume_start(start, resume, (b.bin for b in bins), interval_s=interval_s)
    model = FleetModel(
        bins,
        seed=seed,
        start=start,
        interval_s=interval_s,
        timezone=settings.timezone,
        resume=resume,
        first_fill_max=first_fill_max,
    )
    topics = Topics(settings.topic_prefix)
    telemetry = {bin_id: topics.bin(bin_id, TopicKind.telemetry) for bin_id in model.bin_ids}
    if listen_for_faults and injector is None:
        injector = Injector([])
    publisher = _Publisher(
        settings,
        f"binwatch-simulator-{uuid.uuid4().hex[:12]}",
        on_fault=injector.arrive if listen_for_faults and injector is not None else None,
    )
    publisher.open()
    began, wall_began = time.monotonic(), time.time()
    deadline = began + duration_s if duration_s is not None else float("inf")
    round_gap_s = interval_s / speed if speed > 0 and rate is None else 0.0
    last: dict[str, Reading] = {}
    held: dict[str, list[bytes]] = {}  # replayed readings not yet sent, per bin
    published = done_rounds = 0
    next_progress = began + PROGRESS_EVERY_S
    status_ts = model.next_ts
    try:
        _publish_statuses(publisher, topics, model.bin_ids, Status(ts=status_ts, online=True))
        for current in model.rounds():
            if rounds is not None and current.index >= rounds:
                break
            # A bin cannot measure the future: a round is due by the pace, and not before its ts.
            due = max(
                began + current.index * round_gap_s, began + current.ts.timestamp() - wall_began
            )
            if not _wait_until(due, deadline, stop):
                break
            before = published
            replaying = round_gap_s > 0 and time.time() - current.ts.timestamp() > interval_s
            if not replaying:
                _flush(publisher, telemetry, held)
            readings: Sequence[tuple[str, Reading]] = current.readings
            if injector is not None:
                readings, events = injector.apply(current.ts, current.readings)
                for bin_id, event in events:
                    publisher.publish(
                        topics.bin(bin_id, TopicKind.event), event.model_dump_json().encode()
                    )
            for bin_id, reading in readings:
                now = time.monotonic()
                if rate is not None and began + published / rate - now > PACE_SLACK_S:
                    stop.wait(began + published / rate - now)
                    now = time.monotonic()
                if stop.is_set() or now >= deadline:
                    break
                body = reading.model_dump_json(exclude_none=True).encode()
                if replaying:
                    buffer = held.setdefault(bin_id, [])
                    buffer.append(body)
                    if len(buffer) >= REPLAY_BATCH:
                        publisher.publish(telemetry[bin_id], _array(held.pop(bin_id)))
                else:
                    publisher.publish(telemetry[bin_id], body)
                last[bin_id] = reading
                published += 1
                if on_progress is not None and now >= next_progress:
                    on_progress(published)
                    next_progress = now + PROGRESS_EVERY_S
            if published > before:
                status_ts = current.ts
            if published - before < len(readings):
                break
            done_rounds += 1
            if between_rounds is not None:
                between_rounds(model)
        _flush(publisher, telemetry, held)
        _publish_statuses(publisher, topics, model.bin_ids, Status(ts=status_ts, online=False))
        publisher.drain()
        elapsed_s = time.monotonic() - began
    finally:
        publisher.close()
    if on_progress is not None:
        on_progress(published)
    return SimulationResult(published=published, elapsed_s=elapsed_s, rounds=done_rounds, last=last)


def inject_fault(settings: Settings, kind: str, bin_id: str, *, now: datetime) -> None:
    """Make a running simulator's bin misbehave from now on (`binwatch demo --inject`): a fire
    or tilt event is published here at once, as the bin would send it; the fault goes to the
    simulator's faults topic, which changes the bin's readings from its next round (hot, a
    drained battery, or none at all). `ValueError` for an unknown kind; `SimulatorError` when
    the broker refuses or does not answer."""
    spec = f"{kind}:{bin_id}"
    Fault.parse(f"{spec}@0")  # the checks a running simulator will make
    # Its own account (`simulator-inject`): the running simulator holds `simulator`, and the
    # broker makes a client id its user name, so the same account would knock the demo off.
    publisher = _Publisher(
        sub_account(settings, "inject"), f"binwatch-inject-{uuid.uuid4().hex[:12]}"
    )
    publisher.open()
    try:
        if kind in ANNOUNCED_BY_SENDER:
            event = Event.model_validate({"ts": now, "type": kind, "detail": "injected"})
            topic = Topics(settings.topic_prefix).bin(bin_id, TopicKind.event)
            publisher.publish(topic, event.model_dump_json().encode())
        publisher.publish(Topics(settings.topic_prefix).simulator_faults(), spec.encode())
        publisher.drain()
    finally:
        publisher.close()


def _array(readings: list[bytes]) -> bytes:
    return b"[" + b",".join(readings) + b"]"


def _flush(
    publisher: _Publisher, telemetry: Mapping[str, str], held: dict[str, list[bytes]]
) -> None:
    """Send every bin's held replayed readings, as the array a bin sends once back online."""
    for bin_id, readings in held.items():
        publisher.publish(telemetry[bin_id], _array(readings))
    held.clear()


def _publish_statuses(
    publisher: _Publisher, topics: Topics, bin_ids: Iterable[str], status: Status
) -> None:
    """The retained presence of every bin, as each bin's own connection (and will) would say it."""
    payload = status.model_dump_json().encode()
    for bin_id in bin_ids:
        publisher.publish(topics.bin(bin_id, TopicKind.status), payload, retain=True)


def _wait_until(when: float, deadline: float, stop: threading.Event) -> bool:
    """Sleep until the monotonic time `when`; False if the run must end first."""
    pause = min(when, deadline) - time.monotonic()
    if pause > 0:
        stop.wait(pause)
    return not stop.is_set() and time.monotonic() < deadline
