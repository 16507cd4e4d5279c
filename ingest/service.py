"""Ingest: MQTT in, InfluxDB out, acknowledged only after the write (at-least-once; the writes are
idempotent because a point's time is the bin's own `ts`, so redelivery rewrites the same point).

Two threads share one buffer. paho's network thread decodes each message (pure `decode`) and
appends it; the writer thread takes the buffer when it holds a batch or its oldest message has
waited `ingest_batch_seconds`, writes the points (retrying while InfluxDB is down), stores the
dead letters, and only then acknowledges every message of the batch, in arrival order. The broker
sends at most `ingest_buffer` unacknowledged messages (MQTT 5 Receive Maximum), so the buffer is
bounded by the protocol itself: while InfluxDB is down the broker holds the rest."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from binwatch.errors import SinkRejected, SinkUnavailable
from binwatch.influx import InfluxClient
from binwatch.mqtt import is_auth_failure, make_client
from binwatch.rollups import ensure_rollups
from binwatch.settings import Settings
from devices.contract import Event, Reading, Status, Topics
from devices.models import DEAD_LETTER_TOPIC_MAX, DeadLetter
from devices.registry import add_dead_letters, bin_tags, make_engine
from devices.registry_errors import is_transient
from ingest.decode import Decoded, Rejection, TimeLimits, decode
from ingest.lineprotocol import point, tag_set
from ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)

# Newly registered bins are picked up this often (their readings are dead-lettered, and can be
# replayed, until then).
REGISTRY_REFRESH_S = 10.0
# Backoff while InfluxDB or the registry database is unavailable: quick to notice a recovery,
# capped so a long outage costs one request every few seconds.
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0
# Servers that are still starting get this many tries before ingest gives up (about 2 minutes).
STARTUP_TRIES = 30
# Dead letters keep at most this much of a payload: enough to see what was wrong and to replay
# any reading that fits the contract, without letting a flood of huge payloads fill the disk.
DEAD_LETTER_PAYLOAD_MAX = 64 * 1024
# Dead letters per batch and reason, for Grafana (the rows themselves are in the registry).
DEAD_LETTERS_MEASUREMENT = "deadletters"


StoredHook = Callable[[list[tuple[str, Reading]]], None]
"""Called with each batch's valid readings (bin id, reading) once they are stored and before they
are acknowledged, so a rule acting on them (collection requests) runs at least once per reading;
it is retried like the write while it raises, so it must be idempotent."""


class Arrival(NamedTuple):
    """A valid message part as stored: what a bin sent, and when ingest received it (a named
    tuple: one is made per reading of every batch, and a tuple is the cheapest to make)."""

    bin_id: str
    message: Reading | Event | Status
    received_at: float  # epoch seconds, ingest's clock


ArrivalHook = Callable[[list[Arrival]], None]
"""Like `StoredHook`, for rules that need events and statuses as well as readings (alerts), and
when each arrived: called with every valid reading, event and status of a stored batch, in
arrival order, before the batch is acknowledged; retried while it raises, so idempotent too."""


@dataclass(slots=True)
class _Pending:
    mid: int
    qos: int
    generation: int
    topic: str
    decoded: Decoded
    received_at: float


class IngestError(RuntimeError):
    """Ingest cannot go on (refused credentials); the message says what to fix."""


class Ingestor:
    """One ingest worker. `run(stop)` blocks until `stop` is set, then flushes what it holds."""

    def __init__(
        self,
        settings: Settings,
        *,
        worker: int = 0,
        shared: bool = False,
        clock: Callable[[], float] = time.time,
        on_stored: StoredHook | None = None,
        on_arrivals: ArrivalHook | None = None,
    ) -> None:
        self.settings = settings
        self._on_stored = on_stored
        self._on_arrivals = on_arrivals
        self.worker = worker
        self.metrics = IngestMetrics()
        self.topics = Topics(settings.topic_prefix)
        self._limits = TimeLimits(
            max_past_ms=round(settings.ingest_max_past_s * 1000),
            max_future_ms=round(settings.ingest_max_future_s * 1000),
        )
        self.influx = InfluxClient(settings)
        self.engine = make_engine(settings.database_url, settings)
        self._clock = clock
        self._shared = shared
        self._lock = threading.Condition()
        self._pending: list[_Pending] = []
        self._pending_points = 0
        self._writing = 0  # messages of the batch being stored (taken from _pending, not acked)
        self.metrics.buffer_depth.set_function(lambda: len(self._pending) + self._writing)
        self._tags: dict[str, str] = {}
        self._generation = 0
        self._fatal: str | None = None
        # Set once the broker has confirmed the subscriptions: from then on nothing is missed.
        self.subscribed = threading.Event()
        client_id = f"{settings.ingest_client_id}-{worker}" if shared else settings.ingest_client_id
        self._mqtt = make_client(
            settings,
            client_id,
            persistent=True,
            receive_maximum=settings.ingest_buffer,
            manual_ack=True,
        )
        client = self._mqtt.client
        client.read_paused = self._buffer_full
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_connect_fail = self._on_connect_fail
        self._failed_first_tries = 0

    def _buffer_full(self) -> bool:
        return len(self._pending) + self._writing >= self.settings.ingest_buffer

    # --- paho's thread -------------------------------------------------------------------

    def _on_connect(
        self, client: paho.Client, _u: Any, _f: Any, reason: paho.ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            if is_auth_failure(reason):
                self._fatal = (
                    f"the broker refused ingest's credentials ({reason}); check BINWATCH_MQTT_URL"
                )
                with self._lock:
                    self._lock.notify()
            log.warning("MQTT connection refused: %s", reason)
            return
        with self._lock:
            self._generation += 1
            if self._generation > 1:
                self.metrics.reconnects.inc()
            # The broker redelivers everything unacknowledged on the new connection, so what
            # the old one left here would only be held twice: memory stays within one buffer.
            self._pending, self._pending_points = [], 0
        filters = self.topics.inbound_filters()
        if self._shared:
            filters = [f"$share/{self.settings.ingest_share_group}/{f}" for f in filters]
        # Subscribing on every connect renews the subscriptions even if the broker lost them.
        client.subscribe([(f, 1) for f in filters])
        log.info("connected to MQTT, subscribing to %s", ", ".join(filters))

    def _on_connect_fail(self, _c: paho.Client, _u: Any) -> None:
        if self._generation:
            return  # an outage after start: paho goes on retrying with backoff, as it should
        self._failed_first_tries += 1
        endpoint = self.settings.mqtt_endpoint()
        log.warning(
            "broker at %s:%s not reachable (try %d of %d)",
            endpoint.host,
            endpoint.port,
            self._failed_first_tries,
            STARTUP_TRIES,
        )
        if self._failed_first_tries >= STARTUP_TRIES:
            self._fatal = f"gave up: broker at {endpoint.host}:{endpoint.port} not reachable"
            with self._lock:
                self._lock.notify()

    def _on_subscribe(
        self, _c: paho.Client, _u: Any, _mid: int, reasons: list[paho.ReasonCode], _p: Any
    ) -> None:
        refused = [str(reason) for reason in reasons if reason.is_failure]
        if refused:
            self._fatal = (
                f"the broker refused ingest's subscriptions ({', '.join(refused)}); check its ACL"
            )
            with self._lock:
                self._lock.notify()
            return
        self.subscribed.set()
        self.metrics.subscribed.set(1)

    def _on_disconnect(
        self, _c: paho.Client, _u: Any, _f: Any, reason: paho.ReasonCode, _p: Any
    ) -> None:
        self.subscribed.clear()
        self.metrics.subscribed.set(0)
        if reason.value != 0:
            log.warning("MQTT disconnected (%s); paho reconnects with backoff", reason)

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        received = self._clock()
        topic = message.topic  # paho decodes the topic on every access: once per message
        try:
            decoded = decode(
                topic,
                message.payload,
                round(received * 1000),
                topics=self.topics,
                tags_of=self._tags.get,
                max_payload=self.settings.ingest_max_payload,
                limits=self._limits,
            )
        except Exception as exc:
            # A bug must not kill paho's network thread or lose the message: keep it for replay.
            log.exception("ingest failed on a message from %s", topic)
            decoded = Decoded(
                rejections=[Rejection("ingest_error", repr(exc), bytes(message.payload))]
            )
        pending = _Pending(message.mid, message.qos, self._generation, topic, decoded, received)
        with self._lock:
            self._pending.append(pending)
            self._pending_points += len(decoded.lines)
            if self._pending_points >= self.settings.ingest_batch_size:
                self._lock.notify()

    # --- the writer thread ---------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self._first_tries(self._prepare_database, "InfluxDB", stop)
        self.refresh_registry()
        if self.settings.ingest_metrics_port:
            self.metrics.serve(self.settings.ingest_metrics_port + self.worker)
        self._mqtt.start()
        next_refresh = time.monotonic() + REGISTRY_REFRESH_S
        try:
            while not stop.is_set():
                batch = self._take_batch(stop)
                if self._fatal:
                    raise IngestError(self._fatal)
                if batch:
                    self._store(batch, stop)
                if time.monotonic() >= next_refresh:
                    self.refresh_registry()
                    next_refresh = time.monotonic() + REGISTRY_REFRESH_S
            with self._lock:
                batch, self._pending, self._pending_points = self._pending, [], 0
            if batch:
                self._store(batch, None)
        finally:
            self._mqtt.stop()
            self.influx.close()
            self.engine.dispose()

    def _prepare_database(self) -> None:
        """The database, its retention policies and the rollups' continuous queries: at
        start, and again if someone dropped the database under a running ingest."""
        self.influx.ensure_database(self.settings.raw_retention)
        ensure_rollups(self.influx, self.settings.timezone)

    def _first_tries(self, action: Callable[[], None], what: str, stop: threading.Event) -> None:
        """At start-up a server may still be coming up (compose starts everything at once):
        try a bounded number of times, logging each, then give up with a clear error."""
        for attempt in range(1, STARTUP_TRIES + 1):
            try:
                action()
                return
            except SinkUnavailable as exc:
                log.warning(
                    "%s not reachable (try %d of %d): %s", what, attempt, STARTUP_TRIES, exc
                )
            if stop.wait(min(RETRY_MAX_S, RETRY_MIN_S * 2**attempt)):
                return
        raise IngestError(f"gave up: {what} not reachable after {STARTUP_TRIES} tries")

    def refresh_registry(self) -> None:
        try:
            with Session(self.engine) as session:
                tags = bin_tags(session)
        except Exception:
            log.exception("could not read the registry; keeping the %d bins known", len(self._tags))
            return
        # One assignment replaces the dict paho's thread reads: no lock needed, never half-built.
        self._tags = {
            bin_id: tag_set(
                {
                    "bin": t.bin,
                    "site": t.site,
                    "site_type": t.site_type,
                    "stream": t.stream,
                    "community": t.community,
                    "street": t.street,
                    "district": t.district,
                    "operator": t.operator,
                }
            )
            for bin_id, t in tags.items()
        }

    def _take_batch(self, stop: threading.Event) -> list[_Pending]:
        wait = self.settings.ingest_batch_seconds
        with self._lock:
            while not stop.is_set() and not self._fatal:
                if self._pending_points >= self.settings.ingest_batch_size:
                    break
                if self._pending:
                    remaining = self._pending[0].received_at + wait - self._clock()
                    if remaining <= 0:
                        break
                    self._lock.wait(remaining)
                else:
                    self._lock.wait(wait)
            batch, self._pending, self._pending_points = self._pending, [], 0
            self._writing = len(batch)
        return batch

    def _store(self, batch: list[_Pending], stop: threading.Event | None) -> None:
        """Write, dead-letter, then acknowledge. Returns only when all is stored, or unacked
        when asked to stop or when a reconnect made the batch redeliverable."""
        try:
            outcome = self._store_unacked(batch, stop)
        finally:
            self._writing = 0
        if outcome is None:
            return
        with self._lock:
            generation = self._generation
        client = self._mqtt.client
        # Packet ids belong to a connection: after a reconnect the broker redelivers these
        # messages, and acking an old id could acknowledge a different, unwritten message.
        current = [pending for pending in batch if pending.generation == generation]
        # In arrival order, queued as a few writes rather than one wake-up and send per message.
        client.ack_many(pending.mid for pending in current if pending.qos == 1)
        for pending in current:
            if pending.qos > 1:
                client.ack(pending.mid, pending.qos)
        self._account(batch, *outcome)

    def _store_unacked(
        self, batch: list[_Pending], stop: threading.Event | None
    ) -> tuple[list[str], list[tuple[str, str]], list[DeadLetter], float] | None:
        lines = [line for pending in batch for line in pending.decoded.lines]
        started = time.monotonic()
        refused = self._retrying(lambda: self._write_all(lines), stop, batch)
        if refused is None:
            return None
        write_s = time.monotonic() - started
        letters = self._dead_letters(batch, refused)
        if letters and self._retrying(lambda: self._save_letters(letters), stop, batch) is None:
            return None
        if self._on_stored is not None:
            stored = [item for pending in batch for item in pending.decoded.readings]
            if stored and self._retrying(lambda: self._run_hook(stored), stop, batch) is None:
                return None
        if self._on_arrivals is not None:
            arrivals = _arrivals(batch)
            if (
                arrivals
                and self._retrying(lambda: self._run_arrivals(arrivals), stop, batch) is None
            ):
                return None
        return lines, refused, letters, write_s

    def _write_all(self, lines: list[str]) -> list[tuple[str, str]]:
        refused: list[tuple[str, str]] = []
        size = self.settings.ingest_batch_size
        for start in range(0, len(lines), size):
            refused += self._write_bisecting(lines[start : start + size])
        return refused

    def _write_bisecting(self, lines: list[str]) -> list[tuple[str, str]]:
        """InfluxDB stores the good points of a rejected batch but does not say which line was
        bad (FACTS.md). Halving finds the refused lines in O(k log n) writes; re-sending stored
        points is harmless, since the same series and time overwrite."""
        if not lines:
            return []
        try:
            self.influx.write(lines)
            return []
        except SinkRejected as exc:
            if exc.status == 404:
                self._prepare_database()
                raise SinkUnavailable(f"database was missing, recreated: {exc.message}") from exc
            if exc.status != 400:
                raise SinkUnavailable(
                    f"InfluxDB refused the write ({exc.status}): {exc.message}"
                ) from exc
            if len(lines) == 1:
                return [(lines[0], exc.message)]
        middle = len(lines) // 2
        return self._write_bisecting(lines[:middle]) + self._write_bisecting(lines[middle:])

    def _retrying(
        self, action: Callable[[], Any], stop: threading.Event | None, batch: list[_Pending]
    ) -> Any:
        """Run `action` until it succeeds; None if asked to stop first, or once a reconnect
        has made the whole batch redeliverable (holding it would double the memory bound)."""
        delay = RETRY_MIN_S
        while True:
            try:
                return action()
            except Exception as exc:  # SinkUnavailable, or the registry database being down
                self.metrics.write_errors.inc()
                if isinstance(exc, SQLAlchemyError) and not is_transient(exc):
                    # Held, not dropped: acknowledging would lose the batch's collection
                    # requests and alerts. Only a fix of the cause helps; say so loudly.
                    log.error("the registry refused a batch (permanent): %s", exc)
                else:
                    log.warning("storing a batch failed, retrying in %.1f s: %s", delay, exc)
            if stop is None or stop.wait(delay) or batch[-1].generation != self._generation:
                return None
            delay = min(delay * 2, RETRY_MAX_S)

    def _dead_letters(
        self, batch: list[_Pending], refused: list[tuple[str, str]]
    ) -> list[DeadLetter]:
        letters = [
            _letter(pending.topic, rejection, pending.received_at)
            for pending in batch
            for rejection in pending.decoded.rejections
        ]
        if refused:
            topic_of = {line: p.topic for p in batch for line in p.decoded.lines}
            for line, message in refused:
                rejection = Rejection("rejected_by_influxdb", message, line.encode())
                letters.append(_letter(topic_of[line], rejection, self._clock()))
        return letters

    def _run_hook(self, readings: list[tuple[str, Reading]]) -> bool:
        assert self._on_stored is not None
        self._on_stored(readings)
        return True

    def _run_arrivals(self, arrivals: list[Arrival]) -> bool:
        assert self._on_arrivals is not None
        self._on_arrivals(arrivals)
        return True

    def _save_letters(self, letters: list[DeadLetter]) -> bool:
        with Session(self.engine, expire_on_commit=False) as session:
            add_dead_letters(session, letters)
        return True

    def _account(
        self,
        batch: list[_Pending],
        lines: list[str],
        refused: list[tuple[str, str]],
        letters: list[DeadLetter],
        write_s: float,
    ) -> None:
        m = self.metrics
        m.received.inc(len(batch))
        m.stored.inc(len(lines) - len(refused))
        m.dead_lettered.inc(len(letters))
        for letter in letters:
            m.rejected.labels(letter.reason).inc()
        now_ms = round(self._clock() * 1000)
        # What Grafana shows of ingest itself (its only datasource is InfluxDB): a heartbeat per
        # batch, and how many messages the batch dead-lettered, per reason.
        worker = str(self.worker)
        stats = [
            point(DEAD_LETTERS_MEASUREMENT, tag_set({"reason": reason, "worker": worker}),
                  {"count": count}, now_ms)
            for reason, count in Counter(letter.reason for letter in letters).items()
        ]  # fmt: skip
        if lines:
            m.batch_points.observe(len(lines))
            m.write_seconds.observe(write_s)
            oldest_wait_ms = (self._clock() - batch[0].received_at) * 1000
            heartbeat = {
                "batch": len(lines),
                "write_ms": write_s * 1000,
                "oldest_wait_ms": oldest_wait_ms,
            }
            stats.append(point("ingest", f",worker={worker}", heartbeat, now_ms))
        if stats:
            try:
                self.influx.write(stats)
            except (SinkUnavailable, SinkRejected) as exc:
                log.info("ingest statistics not written: %s", exc)


def _arrivals(batch: list[_Pending]) -> list[Arrival]:
    arrivals: list[Arrival] = []
    for pending in batch:
        decoded = pending.decoded
        for part in (decoded.readings, decoded.events, decoded.statuses):
            arrivals += [Arrival(bin_id, message, pending.received_at) for bin_id, message in part]
    return arrivals


def _letter(topic: str, rejection: Rejection, received_at: float) -> DeadLetter:
    log.warning("dead-lettered %s from %s: %s", rejection.reason, topic, rejection.detail[:200])
    return DeadLetter(
        received_at=datetime.fromtimestamp(received_at, tz=UTC),
        topic=topic[:DEAD_LETTER_TOPIC_MAX],
        reason=rejection.reason,
        detail=rejection.detail,
        payload=rejection.payload[:DEAD_LETTER_PAYLOAD_MAX],
        payload_size=len(rejection.payload),
    )
