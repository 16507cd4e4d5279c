"""The registry's PostgreSQL stopped under a running ingest worker: the failure is transient, so
ingest holds the batch unacknowledged and retries; once the server is back, the collection
request and the dead letter that waited are both written, once, and nothing is lost. A worker
that starts while it is down waits for the fleet before it subscribes, rather than calling every
bin unknown."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from binwatch.servers import PostgresServer
from core.settings import Settings
from core.sql import make_engine
from devices.contract import Reading, TopicKind, Topics
from devices.models import DeadLetter
from ingest.service import Ingestor
from tests.collection_helpers import hooked_ingest, requests_of
from tests.conftest import count_points, running_ingest
from tests.helpers import wait_for
from tests.mqtt_helpers import publish_all

pytestmark = [
    pytest.mark.servers,
    pytest.mark.registry_backends("postgresql", reason="a SQLite file has no server to stop"),
]

KITCHEN = "sz-peoples-government-s1-kitchen"  # threshold 75 %


def _letters(settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            return session.scalar(select(func.count()).select_from(DeadLetter)) or 0
    finally:
        engine.dispose()


def test_ingest_holds_the_batch_while_postgresql_is_down_and_loses_nothing(
    settings: Settings, own_postgres: tuple[PostgresServer, str]
) -> None:
    server, url = own_postgres
    settings = settings.model_copy(update={"database_url": url, "database_connect_timeout_s": 2})
    topics = Topics(settings.topic_prefix)
    now = datetime.now(UTC).replace(microsecond=0)
    full = Reading(ts=now - timedelta(minutes=1), fill_pct=90.0, deposits=1)
    with hooked_ingest(settings) as ingest:
        server.stop()
        publish_all(
            settings,
            [
                (topics.bin(KITCHEN, TopicKind.telemetry), full.model_dump_json().encode()),
                (topics.bin(KITCHEN, TopicKind.telemetry), b"{not json"),
            ],
        )
        wait_for(
            lambda: ingest.metrics.value("binwatch_ingest_write_errors_total") >= 2,
            timeout=30,
            what="ingest to meet the stopped registry and retry",
        )
        assert ingest.metrics.value("binwatch_ingest_received_messages_total") == 0  # held
        server.start()
        wait_for(
            lambda: ingest.metrics.value("binwatch_ingest_received_messages_total") == 2,
            timeout=30,
            what="the held batch to be stored once the registry is back",
        )
        assert count_points(settings) == 1
    assert _letters(settings) == 1
    [request] = requests_of(settings)
    assert (request.bin_id, request.rule, request.trigger_fill_pct) == (KITCHEN, "threshold", 90.0)


def test_a_worker_started_while_postgresql_is_down_waits_for_the_fleet_and_letters_nothing(
    settings: Settings, own_postgres: tuple[PostgresServer, str]
) -> None:
    server, url = own_postgres
    settings = settings.model_copy(update={"database_url": url, "database_connect_timeout_s": 2})
    topic = Topics(settings.topic_prefix).bin(KITCHEN, TopicKind.telemetry)
    now = datetime.now(UTC).replace(microsecond=0)
    readings = [
        (
            topic,
            Reading(ts=now - timedelta(seconds=30 - i), fill_pct=10.0).model_dump_json().encode(),
        )
        for i in range(5)
    ]
    with running_ingest(settings):
        pass  # its persistent session: the broker keeps what is published for it from now on
    server.stop()
    publish_all(settings, readings)
    ingestor = Ingestor(settings)
    stop = threading.Event()
    thread = threading.Thread(target=ingestor.run, args=(stop,), daemon=True)
    thread.start()
    try:
        time.sleep(3)
        assert thread.is_alive() and not ingestor.subscribed.is_set()  # waiting for the fleet
        server.start()
        wait_for(
            lambda: count_points(settings) == len(readings),
            timeout=60,
            what="the readings stored once the registry is back",
        )
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert _letters(settings) == 0  # none called an unknown bin
