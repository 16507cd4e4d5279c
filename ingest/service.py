"""Ingest: MQTT in, InfluxDB out, acknowledged only after the write (at-least-once; the writes are
idempotent because a point's time is the bin's own `ts`, so redelivery rewrites the same point).

Two threads share one buffer. paho's network thread decodes each message (pure `decode`) and
appends it; the writer thread takes the buffer when it holds a batch or its oldest message has
waited `ingest_batch_seconds`, writes the points (retrying while InfluxDB is down), stores the
dead letters, and only then acknowledges every message of the batch, in arrival order. Only
faults of the environment are retried; whatever a message holds that a later step cannot
handle costs that message alone (ingest/isolation.py, docs/ingest.md). The broker
sends at most `ingest_buffer` unacknowledged messages (MQTT 5 Receive Maximum), so the buffer is
bounded by the protocol itself: while InfluxDB is down the broker holds the rest."""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import paho.mqtt.client as paho
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy.orm import Session

from core.coverage import (
    late_hours,
    late_lines,
    late_spans,
    open_coverage,
    re_read_from,
    reroll_bin,
)
from core.errors import SinkRejected, SinkUnavailable
from core.influx import InfluxClient
from core.lineprotocol import point, tag_set
from core.mqtt import is_auth_failure, make_client, sub_account
from core.settings import Settings
from core.sql import database_engine
from core.telemetry import ROLLUP_RP, ensure_rollups
from core.times import epoch_ms
from devices.arrivals import Arrival, ArrivalHook, StoredHook
from devices.contract import Event, Reading, Status, TopicKind, Topics
from devices.models import DeadLetter
from devices.registry import add_dead_letters, bin_tags, prune_dead_letters
from devices.retirement import retired_bin_ids
from ingest.decode import Decoded, Rejection, TimeLimits, decode
from ingest.history import History, InfluxReadings
from ingest.isolation import describe, find_refused, is_transient, isolate
from ingest.letters import letters_for
from ingest.metrics import IngestMetrics
from ingest.paho_buffered import BufferedClient, RawPublish

log = logging.getLogger(__name__)

# Backoff while InfluxDB or the registry database is unavailable: quick to notice a recovery,
# capped so a long outage costs one request every few seconds.
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0
# Servers that are still starting get this many tries before ingest gives up (about 2 minutes).
STARTUP_TRIES = 30
# Writes one batch of `ingest_batch_size` points may spend finding the points InfluxDB refuses
# (ingest/isolation.py): each level of the search rewrites the batch at most once, so this costs
# a few batch writes (~28 ms each here), and a bin whose points are refused cannot stall others.
ISOLATION_WRITES = 32
# Dead letters are pruned (retention, cap per bin) at most this often, when letters are stored.
PRUNE_EVERY_S = 10.0
# Dead letters per batch and reason, for Grafana (the rows themselves are in the registry).
DEAD_LETTERS_MEASUREMENT = "deadletters"
_HOUR_MS = 3_600_000
# A batch's bins whose readings reach hours no continuous query re-reads, rolled up again at
# once; with more, the batch's late hours are marked (read raw) until a backfill.
REROLL_BINS = 4


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


def share_group(settings: Settings) -> str:
    """The shared subscription's group of ingest's workers: `BINWATCH_INGEST_SHARE_GROUP`, then,
    on a broker with accounts, a digest of ingest's password, so that only who holds it can name
    the group. Mosquitto hands each message of a group to one member in turn and checks that
    member's read access only then: a bin that joined `$share/binwatch-ingest/…` (any account may
    subscribe to anything, docs/security.md) was handed a third of every bin's readings beside two
    workers, which its ACL then refused to deliver, and they were lost."""
    password = settings.mqtt_endpoint().password
    if not password:
        return settings.ingest.share_group  # no accounts: anyone may read everything anyway
    digest = hmac.new(password.encode(), b"binwatch ingest share group", hashlib.sha256)
    return f"{settings.ingest.share_group}-{digest.hexdigest()[:32]}"


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
            max_past_ms=round(settings.ingest.max_past_s * 1000),
            max_future_ms=round(settings.ingest.max_future_s * 1000),
        )
        self.influx = InfluxClient(settings)
        self._history = History(
            InfluxReadings(self.influx, window_s=settings.ingest.max_past_s, clock=clock)
        )
        self.engine = database_engine(settings)
        self._letter_bins: set[str] = set()  # bins that got dead letters since the last prune
        self._next_prune = 0.0
        self._clock = clock
        self._shared = shared
        self._lock = threading.Condition()
        self._pending: list[_Pending] = []
        self._pending_points = 0
        self._writing = 0  # messages of the batch being stored (taken from _pending, not acked)
        self.metrics.buffer_depth.set_function(lambda: len(self._pending) + self._writing)
        self._writing_since: float | None = None  # receipt of the batch being stored's first
        self.metrics.oldest_unacked.set_function(lambda: self.oldest_unacked_s() or 0.0)
        self._tags: dict[str, str] = {}
        self._sites: dict[str, str] = {}  # bin id → its site, for rolling up late hours again
        self._retired: frozenset[str] = frozenset()
        self._generation = 0
        self._fatal: str | None = None
        # Set once the broker has confirmed the subscriptions: from then on nothing is missed.
        self.subscribed = threading.Event()
        # Each worker of a shared subscription is an account of its own (`ingest-<worker>`):
        # the broker makes a client id its user name, and each worker needs its own session.
        account = sub_account(settings, str(worker)) if shared else settings
        client_id = f"{settings.ingest.client_id}-{worker}" if shared else settings.ingest.client_id
        self._mqtt = make_client(
            account,
            client_id,
            persistent=True,
            receive_maximum=settings.ingest.buffer,
            manual_ack=True,
            client_class=BufferedClient,
        )
        self._client = client = cast(BufferedClient, self._mqtt.client)
        client.read_room = self._buffer_room
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publishes = self._on_publishes
        client.on_subscribe = self._on_subscribe
        client.on_connect_fail = self._on_connect_fail
        self._failed_first_tries = 0

    def _buffer_room(self) -> int:
        """Messages the buffer can take now. Only paho's thread adds to it (what it reads
        after asking this), so the answer can only grow before that thread reads again."""
        return self.settings.ingest.buffer - len(self._pending) - self._writing

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
        filters = topics = self.topics.inbound_filters()
        guessable: list[str] = []
        if self._shared:
            group = share_group(self.settings)
            if group != self.settings.ingest.share_group:
                guessable = [f"$share/{self.settings.ingest.share_group}/{f}" for f in filters]
            filters = [f"$share/{group}/{f}" for f in filters]
        # Subscribing on every connect renews the subscriptions even if the broker lost them.
        client.subscribe([(f, _options(f)) for f in filters])
        if guessable:
            # A persistent session of an earlier version holds the group anyone could name:
            # leave it, once in the new one (the broker answers "no subscription existed" when
            # there was none).
            client.unsubscribe(guessable)
        # Not the group's name: who reads it could join the group (share_group).
        shared = " (a shared subscription)" if self._shared else ""
        log.info("connected to MQTT, subscribing to %s%s", ", ".join(topics), shared)

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
        """A message paho read its own way (the first of each chunk read, or one the short
        way does not take: see `BufferedClient.on_publishes`)."""
        self._hold([self._pending_of(message._topic, message.payload, message.mid, message.qos)])  # noqa: SLF001  (the raw topic: decoded once, below)

    def _on_publishes(self, messages: list[RawPublish]) -> None:
        """The messages of a chunk read the short way, held under one lock."""
        pending_of = self._pending_of
        self._hold([pending_of(topic, payload, mid, qos) for topic, payload, mid, qos in messages])

    def _pending_of(
        self, raw_topic: bytes, payload: bytes | bytearray, mid: int, qos: int
    ) -> _Pending:
        received = self._clock()
        # A broker sends UTF-8 topics only (MQTT 5, 1.5.4); anything else fails as a bad topic.
        topic = raw_topic.decode("utf-8", "replace")
        try:
            decoded = decode(
                topic,
                payload,
                round(received * 1000),
                topics=self.topics,
                tags_of=self._tags.get,
                retired=self._retired,
                max_payload=self.settings.ingest.max_payload,
                limits=self._limits,
            )
        except Exception as exc:
            # A bug must not kill paho's network thread or lose the message: keep it for replay.
            log.exception("ingest failed on a message from %s", topic)
            decoded = Decoded(rejections=[Rejection("ingest_error", repr(exc), bytes(payload))])
        return _Pending(mid, qos, self._generation, topic, decoded, received)

    def _hold(self, held: list[_Pending]) -> None:
        points = sum(len(pending.decoded.lines) for pending in held)
        with self._lock:
            self._pending += held
            self._pending_points += points
            if self._pending_points >= self.settings.ingest.batch_size:
                self._lock.notify()

    def oldest_unacked_s(self) -> float | None:
        """How long the oldest message held and not yet acknowledged has waited; None when
        nothing is held. Read without the lock (from the metrics thread): each read is of one
        attribute, and a list swapped meanwhile only makes the answer a moment old."""
        oldest = self._writing_since
        if oldest is None:
            pending = self._pending
            oldest = pending[0].received_at if pending else None
        return None if oldest is None else max(0.0, self._clock() - oldest)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Stalled (unhealthy) once a held message has waited longer than the bound: InfluxDB
        or the registry not answering, or a batch retried without end, all look like this."""
        age = self.oldest_unacked_s()
        stalled = age is not None and age > self.settings.ingest.stall_after_s
        return not stalled, {
            "status": "stalled" if stalled else "ok",
            "oldest_unacked_s": age,
            "stall_after_s": self.settings.ingest.stall_after_s,
            "buffer_messages": len(self._pending) + self._writing,
            "subscribed": self.subscribed.is_set(),
        }

    # --- the writer thread ---------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self._first_tries(self._prepare_database, "InfluxDB", stop)
        # Without the fleet every reading would be dead-lettered as an unknown bin: the first
        # read must succeed before ingest subscribes, as InfluxDB must answer.
        self._first_tries(self._first_registry_read, "the registry", stop)
        if self.settings.ingest.metrics_port:
            self.metrics.serve(self.settings.ingest.metrics_port + self.worker, self.health)
        self._mqtt.start()
        next_refresh = time.monotonic() + self.settings.ingest.registry_refresh_s
        try:
            while not stop.is_set():
                batch = self._take_batch(stop)
                if self._fatal:
                    raise IngestError(self._fatal)
                if batch:
                    self._store(batch, stop)
                if time.monotonic() >= next_refresh:
                    self.refresh_registry()
                    next_refresh = time.monotonic() + self.settings.ingest.registry_refresh_s
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
        open_coverage(self.influx)

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
            self._read_registry()
        except Exception:
            log.exception("could not read the registry; keeping the %d bins known", len(self._tags))

    def _first_registry_read(self) -> None:
        try:
            self._read_registry()
        except Exception as exc:
            if not is_transient(exc):
                raise
            raise SinkUnavailable(str(exc)) from exc

    def _read_registry(self) -> None:
        with Session(self.engine) as session:
            tags = bin_tags(session, in_service_only=True)
            retired = frozenset(retired_bin_ids(session))
        # One assignment replaces the dict paho's thread reads: no lock needed, never half-built.
        self._tags = {bin_id: tag_set(t.as_tags()) for bin_id, t in tags.items()}
        self._sites = {bin_id: t.site for bin_id, t in tags.items()}
        self._retired = retired

    def _take_batch(self, stop: threading.Event) -> list[_Pending]:
        wait = self.settings.ingest.batch_seconds
        with self._lock:
            while not stop.is_set() and not self._fatal:
                if self._pending_points >= self.settings.ingest.batch_size:
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
            self._writing_since = batch[0].received_at if batch else None
        return batch

    def _store(self, batch: list[_Pending], stop: threading.Event | None) -> None:
        """Write, dead-letter, then acknowledge. Returns only when all is stored, or unacked
        when asked to stop or when a reconnect made the batch redeliverable."""
        try:
            outcome = self._store_unacked(batch, stop)
        finally:
            self._writing, self._writing_since = 0, None
        if outcome is None:
            return
        with self._lock:
            generation = self._generation
        client = self._client
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
    ) -> tuple[list[str], list[str], list[DeadLetter], float] | None:
        try:
            return self._store_parts(batch, stop)
        except Exception as exc:
            # A bug met on this batch: its messages become dead letters, replayable once it is
            # fixed, rather than crashing ingest on the same redelivered batch after each start.
            log.exception("storing a batch failed unexpectedly; dead-lettering its messages")
            later = [
                [Rejection("ingest_error", describe(exc), _message_json(parts))] if parts else []
                for parts in _parts_by_message(batch)
            ]
            letters = self._dead_letters(batch, later)
            if self._retrying(lambda: self._save_letters(letters), stop, batch) is None:
                return None
            return [], [], letters, 0.0

    def _store_parts(
        self, batch: list[_Pending], stop: threading.Event | None
    ) -> tuple[list[str], list[str], list[DeadLetter], float] | None:
        """Check, write, run the hooks, dead-letter: each step retried while the environment
        fails, and what the data makes fail confined to it (ingest/isolation.py)."""
        parts = _parts(batch)
        later: list[list[Rejection]] = [[] for _ in batch]  # rejections after decoding
        readings = [(part.bin_id, part.message) for part in parts if type(part.message) is Reading]
        history = self._retrying(lambda: self._check_history(readings), stop, batch)
        if history is None:
            return None
        if history:
            clashing = {id(readings[index][1]): detail for index, detail in history.items()}
            kept = []
            for part in parts:
                detail = clashing.get(id(part.message))
                if detail is None:
                    kept.append(part)
                else:
                    later[part.source].append(Rejection("rewrites_history", detail, _json(part)))
            parts = kept
        started = time.monotonic()
        refused = self._retrying(lambda: self._write_isolating(parts), stop, batch)
        if refused is None:
            return None
        write_s = time.monotonic() - started
        lines = [part.line for part in parts]
        refused_lines: list[str] = []
        if refused:
            gone: set[int] = set()
            for group, message in refused:
                for part in group:
                    gone.add(id(part))
                    refused_lines.append(part.line)
                    later[part.source].append(
                        Rejection("rejected_by_influxdb", message, part.line.encode())
                    )
            parts = [part for part in parts if id(part) not in gone]
        self._history.stored(
            [(part.bin_id, part.message) for part in parts if type(part.message) is Reading]
        )
        hooks = (
            (self._on_stored, self._run_hook, True),
            (self._on_arrivals, self._run_arrivals, False),
        )
        hook_failed: set[int] = set()
        for hook, run, readings_only in hooks:
            chosen = [p for p in parts if not readings_only or type(p.message) is Reading]
            if hook is None or not chosen:
                continue
            failed = self._retrying(
                lambda c=chosen, r=run: isolate(c, r, group_of=_bin_of_part),  # type: ignore[misc]
                stop,
                batch,
            )
            if failed is None:
                return None
            for part, error in failed:
                if id(part) not in hook_failed:  # one letter per reading, if both hooks fail
                    hook_failed.add(id(part))
                    detail = f"{type(hook).__name__} failed: {describe(error)}"
                    later[part.source].append(Rejection("hook_failed", detail, _json(part)))
        late = self._late_lines(batch)
        if late and self._retrying(lambda: self._mark_late(late), stop, batch) is None:
            return None
        letters = self._dead_letters(batch, later)
        if letters and self._retrying(lambda: self._save_letters(letters), stop, batch) is None:
            return None
        return lines, refused_lines, letters, write_s

    def _late_lines(self, batch: list[_Pending]) -> list[str]:
        """Marks for the hours that got a reading late, so reports read them raw until a rollup
        has re-read them (compliance.rollups, "Coverage"); taken after the readings were stored.

        An hour no continuous query will re-read (a reading more than 6 hours late: an offline
        buffer) is rolled up again here instead, for its bin and site alone, and marked only if
        that failed: marked, it made every report over it read the whole city's raw readings
        until someone ran a backfill, so one bin's 30-day buffer (720 readings, one message)
        turned the city's month report from 1 s into a 10 s time-out (docs/metrics.md). A batch
        with such hours of more than REROLL_BINS bins (a replay of history: a district back
        online, the demo's restart, a bench's flood) is marked as before, for a backfill: each
        bin's roll-up costs ~0.1 s of InfluxDB while the batch waits."""
        written_ms = int(self._clock() * 1000)
        hours = late_hours(
            (epoch_ms(reading.ts) for p in batch for _, reading in p.decoded.readings),
            written_ms=written_ms,
        )
        before_ms = re_read_from(written_ms)
        if not hours or min(hours) >= before_ms:
            return late_lines(hours, written_ms=written_ms) if hours else []
        spans = late_spans(
            (
                (bin_id, epoch_ms(reading.ts))
                for p in batch
                for bin_id, reading in p.decoded.readings
            ),
            before_ms=before_ms,
            most=REROLL_BINS,
        )
        if spans is None or not all(
            self._reroll(bin_id, first, last + _HOUR_MS) for bin_id, (first, last) in spans.items()
        ):
            return late_lines(hours, written_ms=written_ms)
        kept = {hour for hour in hours if hour >= before_ms}
        return late_lines(kept, written_ms=written_ms) if kept else []

    def _reroll(self, bin_id: str, start_ms: int, end_ms: int) -> bool:
        """Roll up one bin's late hours again (core.coverage.reroll_bin); whether it did. A
        failure is logged and leaves the hours to be marked late (read raw) as before."""
        site_id = self._sites.get(bin_id)
        if site_id is None:
            return False
        try:
            reroll_bin(
                self.influx, bin_id=bin_id, site_id=site_id, start_ms=start_ms, end_ms=end_ms,
                timezone=self.settings.timezone,
            )  # fmt: skip
        except Exception:
            log.exception("could not roll up %s's late hours again; marking them late", bin_id)
            return False
        return True

    def _mark_late(self, lines: list[str]) -> bool:
        """True once written or refused (`_retrying` takes None for "give up"). A refusal is a
        permanent fault, logged and not retried: it must not hold the readings behind it."""
        try:
            self.influx.write(lines, retention_policy=ROLLUP_RP)
        except SinkRejected as exc:
            log.error("late-hour marks refused; those hours may be read from rollups: %s", exc)
        return True

    def _check_history(self, readings: list[tuple[str, Reading]]) -> dict[int, str]:
        """The history check's verdicts; if InfluxDB refuses the check itself (not the data's
        fault), the batch is stored unchecked rather than held: storing every valid reading
        comes first, and the error is logged."""
        try:
            return self._history.conflicts(readings)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.error("history check failed, batch stored unchecked: %s", describe(exc))
            return {}

    def _write_isolating(self, parts: list[_Part]) -> list[tuple[list[_Part], str]]:
        """Write in batches of `ingest_batch_size`; InfluxDB stores the good points of a refused
        write but does not say which line was bad (FACTS.md), so a refused batch is searched,
        bin by bin, then halving, in a bounded number of writes (ingest/isolation.py).
        Re-sending stored points is harmless, since the same series and time overwrite."""
        refused: list[tuple[list[_Part], str]] = []
        size = self.settings.ingest.batch_size
        for start in range(0, len(parts), size):
            by_bin: dict[str, list[_Part]] = {}
            for part in parts[start : start + size]:
                by_bin.setdefault(part.bin_id, []).append(part)
            refused += find_refused(
                list(by_bin.values()), self._write_parts, max_writes=ISOLATION_WRITES
            )
        return refused

    def _write_parts(self, parts: list[_Part]) -> None:
        try:
            self.influx.write([part.line for part in parts])
        except SinkRejected as exc:
            if exc.status == 404:
                self._prepare_database()
                raise SinkUnavailable(f"database was missing, recreated: {exc.message}") from exc
            raise

    def _retrying(
        self, action: Callable[[], Any], stop: threading.Event | None, batch: list[_Pending]
    ) -> Any:
        """Run `action` until it succeeds; None if asked to stop first, or once a reconnect
        has made the whole batch redeliverable (holding it would double the memory bound).
        Only faults of the environment are retried (ingest/isolation.py); an error the data
        caused is the caller's to confine, and reaching here is a bug that must not loop."""
        delay = RETRY_MIN_S
        while True:
            try:
                return action()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.metrics.write_errors.inc()
                log.warning("storing a batch failed, retrying in %.1f s: %s", delay, exc)
            if stop is None or stop.wait(delay) or batch[-1].generation != self._generation:
                return None
            delay = min(delay * 2, RETRY_MAX_S)

    def _dead_letters(
        self, batch: list[_Pending], later: list[list[Rejection]]
    ) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        for pending, rejections in zip(batch, later, strict=True):
            if pending.decoded.rejections or rejections:
                letters += letters_for(
                    pending.topic,
                    self._bin_of_topic(pending.topic),
                    pending.received_at,
                    pending.decoded.rejections + rejections,
                )
        return letters

    def _bin_of_topic(self, topic: str) -> str:
        try:
            return self.topics.parse_bin_topic(topic).bin_id
        except ValueError:
            return ""

    def _run_hook(self, parts: list[_Part]) -> None:
        assert self._on_stored is not None
        self._on_stored([(part.bin_id, part.message) for part in parts])  # type: ignore[misc]

    def _run_arrivals(self, parts: list[_Part]) -> None:
        assert self._on_arrivals is not None
        self._on_arrivals([Arrival(p.bin_id, p.message, p.received_at, p.buffered) for p in parts])

    def _save_letters(self, letters: list[DeadLetter]) -> bool:
        """Store the letters, then prune (at most every PRUNE_EVERY_S) past the retention and
        the cap of the bins that just got some. A letter the database cannot take is logged and
        dropped rather than retried forever: there is no dead letter for a dead letter."""
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                add_dead_letters(session, letters)
        except Exception as exc:
            if is_transient(exc) or len(letters) == 1:
                if not is_transient(exc):
                    log.error("dead letter dropped, the database refused it: %s", exc)
                    return True
                raise
            for letter in letters:
                self._save_letters([letter])
        self._letter_bins.update(letter.bin_id for letter in letters)
        now = self._clock()
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY_S
            self._prune(now)
        return True

    def _prune(self, now: float) -> None:
        settings = self.settings
        before = datetime.fromtimestamp(now - settings.dead_letter_retention_days * 86400, tz=UTC)
        bins, self._letter_bins = self._letter_bins, set()
        try:
            with Session(self.engine) as session:
                dropped = prune_dead_letters(
                    session, before=before, per_bin=settings.dead_letter_max_per_bin, bins=bins
                )
        except Exception:
            log.exception("pruning dead letters failed; trying again later")
            self._letter_bins |= bins
            return
        if dropped:
            log.info("pruned %d dead letters (their counts are kept)", dropped)

    def _account(
        self,
        batch: list[_Pending],
        lines: list[str],
        refused: list[str],
        letters: list[DeadLetter],
        write_s: float,
    ) -> None:
        m = self.metrics
        m.received.inc(len(batch))
        m.stored.inc(len(lines) - len(refused))
        m.dead_lettered.inc(sum(letter.parts for letter in letters))
        for letter in letters:
            m.rejected.labels(letter.reason).inc(letter.parts)
        now_ms = round(self._clock() * 1000)
        # What Grafana shows of ingest itself (its only datasource is InfluxDB): a heartbeat per
        # batch, and how many messages the batch dead-lettered, per reason.
        worker = str(self.worker)
        stats = [
            point(DEAD_LETTERS_MEASUREMENT, tag_set({"reason": reason, "worker": worker}),
                  {"count": count}, now_ms)
            for reason, count in _parts_by_reason(letters).items()
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


def _options(topic_filter: str) -> SubscribeOptions:
    """QoS 1, and retained messages handled once (MQTT 5 Retain Handling, spec 3.8.3.1):
    telemetry and events are never retained by contract, so one the broker holds retained was
    already delivered live when published, or is junk: none is sent at subscribe time. Statuses
    are retained by design: sent when the subscription is new (a new session learns every
    bin's presence), not again on each reconnect of the persistent session."""
    status = topic_filter.endswith(f"/{TopicKind.status.value}")
    return SubscribeOptions(
        qos=1,
        retainHandling=(
            SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
            if status
            else SubscribeOptions.RETAIN_DO_NOT_SEND
        ),
    )


class _Part(NamedTuple):
    """A valid part of a batch's message: its line, and what the hooks get."""

    line: str
    bin_id: str
    message: Reading | Event | Status
    received_at: float
    source: int  # its message's index in the batch
    buffered: bool  # a reading that came in an array (an offline buffer)


def _parts(batch: list[_Pending]) -> list[_Part]:
    parts: list[_Part] = []
    for source, pending in enumerate(batch):
        decoded = pending.decoded
        # A message is of one kind, and each valid part of it has its line, in order.
        messages: Sequence[tuple[str, Reading | Event | Status]] = (
            decoded.readings or decoded.events or decoded.statuses
        )
        at = pending.received_at
        parts += [
            _Part(line, bin_id, message, at, source, decoded.buffered)
            for line, (bin_id, message) in zip(decoded.lines, messages, strict=True)
        ]
    return parts


def _parts_by_message(batch: list[_Pending]) -> list[list[_Part]]:
    by_message: list[list[_Part]] = [[] for _ in batch]
    for part in _parts(batch):
        by_message[part.source].append(part)
    return by_message


def _message_json(parts: list[_Part]) -> bytes:
    """A message's valid parts as the JSON a bin sends (an array for several readings)."""
    if len(parts) == 1:
        return _json(parts[0])
    return b"[" + b",".join(_json(part) for part in parts) + b"]"


def _bin_of_part(part: _Part) -> str:
    return part.bin_id


def _json(part: _Part) -> bytes:
    """A part as the JSON a bin sends, so its dead letter can be replayed."""
    return part.message.model_dump_json(exclude_none=True).encode()


def _parts_by_reason(letters: list[DeadLetter]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for letter in letters:
        counts[letter.reason] += letter.parts
    return counts
