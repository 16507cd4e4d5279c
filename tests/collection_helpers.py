"""Shared pieces of the collection tests: a collector on the real servers, ingest workers with
the threshold hook, a recorder of MQTT messages, and requests made straight in the registry."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from sqlalchemy.orm import Session

from alerts.service import Alerter
from binwatch.commands.alerter import build_alerter
from binwatch.commands.collector import build_collector
from collection import store
from collection.hook import ThresholdHook
from collection.lifecycle import COLLECTOR
from collection.models import CollectionRequest
from collection.rules import Policy, Rule
from collection.service import Collector
from core.settings import Settings
from core.sql import make_engine, session_factory
from core.ticker import Resources
from ingest.service import Ingestor
from tests.conftest import running_ingest


@contextmanager
def running_collector(settings: Settings, *, failures: int = 0) -> Iterator[Collector]:
    """A collector whose ticks the test calls itself; fails the test unless exactly `failures`
    steps or items raised."""
    resources = Resources(settings)
    resources.influx.ensure_database(settings.raw_retention)
    collector, close = build_collector(resources)
    try:
        yield collector
    finally:
        close()
        resources.close()
    assert collector.failures == failures, "collector steps or items raised (see the log)"


def tick(collector: Collector, now: datetime) -> None:
    """One tick, then wait for the webhook attempts it queued to be recorded."""
    collector.tick(now)
    assert collector.webhooks.wait_idle(60), "webhook attempts still in flight"


def tick_alerter(alerter: Alerter, now: datetime) -> None:
    """One tick, then wait for the webhook attempts it queued to be recorded."""
    alerter.tick(now)
    assert alerter.deliverer.webhooks.wait_idle(60), "webhook attempts still in flight"


@contextmanager
def running_alerter(settings: Settings, *, failures: int = 0) -> Iterator[Alerter]:
    """An alerter whose ticks the test calls itself; fails the test unless exactly `failures`
    steps or items raised."""
    resources = Resources(settings)
    alerter, close = build_alerter(resources)
    try:
        yield alerter
    finally:
        close()
        resources.close()
    assert alerter.failures == failures, "alerter steps or items raised (see the log)"


@contextmanager
def hooked_ingest(
    settings: Settings, *, worker: int = 0, shared: bool = False
) -> Iterator[Ingestor]:
    """An ingest worker in a thread with the collection threshold hook, as `binwatch ingest`
    runs it."""
    hook = ThresholdHook(settings)
    try:
        with running_ingest(
            settings, worker_index=worker, shared=shared, on_stored=hook
        ) as ingestor:
            yield ingestor
    finally:
        hook.close()


class Recorder:
    """Every message published under a topic filter, in arrival order."""

    def __init__(self, settings: Settings, topic_filter: str) -> None:
        endpoint = settings.mqtt_endpoint()
        self.messages: list[tuple[str, bytes]] = []
        self._client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"rec-{uuid.uuid4().hex[:8]}"
        )
        subscribed = threading.Event()
        self._client.on_message = lambda _c, _u, m: self.messages.append(
            (m.topic, bytes(m.payload))
        )
        self._client.on_subscribe = lambda *_: subscribed.set()
        if endpoint.username:
            self._client.username_pw_set(endpoint.username, endpoint.password)
        self._client.connect(endpoint.host, endpoint.port)
        self._client.subscribe(topic_filter, qos=1)
        self._client.loop_start()
        assert subscribed.wait(10), "recorder not subscribed"

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@contextmanager
def recording(settings: Settings, topic_filter: str) -> Iterator[Recorder]:
    recorder = Recorder(settings, topic_filter)
    try:
        yield recorder
    finally:
        recorder.close()


def requests_of(settings: Settings, **filters: Any) -> list[CollectionRequest]:
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            return store.list_requests(session, **filters)[0]
    finally:
        engine.dispose()


def open_manual(settings: Settings, bin_id: str, now: datetime | None = None) -> int:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine, expire_on_commit=False) as session:
            opened = store.open_request(
                session,
                bin_id=bin_id,
                rule=Rule.manual,
                reason="test",
                now=now or datetime.now(UTC),
                policy=Policy.of(settings.collection),
                actor=COLLECTOR,
            )
            return opened.request.id
    finally:
        engine.dispose()
