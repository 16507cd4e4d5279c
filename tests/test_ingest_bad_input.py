"""Bad input among good, through the real broker, ingest and InfluxDB: every valid reading is
stored, every bad one is counted under its reason and dead-lettered, and ingest carries on."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.influx import InfluxClient
from core.lineprotocol import point, tag_set
from core.settings import Settings
from core.sql import make_engine
from devices.arrivals import Arrival
from devices.contract import Reading, TopicKind, Topics
from devices.models import DeadLetter, Operator
from devices.registry import BinTags
from ingest.service import Ingestor
from tests.conftest import count_points, running_ingest
from tests.helpers import wait_for
from tests.mqtt_helpers import publish_all

NOW = datetime.now(UTC).replace(microsecond=0)


def valid(index: int) -> bytes:
    reading = Reading(
        ts=NOW - timedelta(seconds=index),
        seq=index,
        fill_pct=float(index % 100),
        deposits=4,
        contaminated=1,
    )
    return reading.model_dump_json(exclude_none=True).encode()


def bad_payloads(topic: str, unknown_topic: str) -> list[tuple[str, str, bytes]]:
    """(expected reason, topic, payload) for each way the contract can be broken."""
    ts = int(NOW.timestamp() * 1000)
    return [
        ("malformed_json", topic, b'{"ts": 17, "fill_pct": '),
        ("wrong_type", topic, json.dumps({"ts": ts, "fill_pct": "full"}).encode()),
        ("wrong_type", topic, json.dumps({"ts": ts, "fill_pct": 5, "deposits": True}).encode()),
        ("out_of_range", topic, json.dumps({"ts": ts, "fill_pct": 140}).encode()),
        ("missing_field", topic, json.dumps({"fill_pct": 10}).encode()),
        (
            "inconsistent",
            topic,
            json.dumps({"ts": ts, "fill_pct": 5, "deposits": 2, "contaminated": 5}).encode(),
        ),
        ("unknown_bin", unknown_topic, valid(0)),
        # Longer than dead_letters.topic holds: PostgreSQL would refuse the letter forever.
        ("bad_topic", unknown_topic.replace("no-such-bin", "x" * 600), valid(0)),
        ("payload_too_large", topic, b"[" + b" " * (1024 * 1024) + b"]"),
        ("not_utf8", topic, b'{"ts": \xff\xfe}'),
        ("unknown_field", topic, json.dumps({"ts": ts, "fill_pct": 5, "lid": "open"}).encode()),
        ("bad_timestamp", topic, json.dumps({"ts": ts // 1000, "fill_pct": 5}).encode()),
    ]


def test_bad_messages_are_dead_lettered_and_the_good_ones_all_stored(
    settings: Settings, pilot_bins: dict[str, BinTags], ingest: Ingestor
) -> None:
    topics = Topics(settings.topic_prefix)
    bin_ids = sorted(pilot_bins)[:20]
    bad = bad_payloads(
        topics.bin(bin_ids[0], TopicKind.telemetry), topics.bin("no-such-bin", TopicKind.telemetry)
    )
    messages: list[tuple[str, bytes]] = []
    good = 0
    for index in range(1, 601):  # 600 good readings with every bad kind spread among them
        messages.append(
            (topics.bin(bin_ids[index % len(bin_ids)], TopicKind.telemetry), valid(index))
        )
        good += 1
        if index % 50 == 0 and bad:
            _reason, topic, payload = bad[(index // 50) % len(bad)]
            messages.append((topic, payload))
    for _reason, topic, payload in bad:
        messages.append((topic, payload))
    expected_reasons = Counter(reason for reason, _t, _p in bad)
    expected_reasons.update(bad[(i // 50) % len(bad)][0] for i in range(50, 601, 50))
    publish_all(settings, messages)

    rejected = sum(expected_reasons.values())
    wait_for(
        lambda: ingest.metrics.value("binwatch_ingest_received_messages_total") >= len(messages),
        timeout=30,
        what="every message to be handled",
    )
    assert count_points(settings) == good
    for reason, count in expected_reasons.items():
        assert ingest.metrics.value("binwatch_ingest_rejected_total", reason=reason) == count, (
            reason
        )
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        letters = session.scalars(select(DeadLetter)).all()
    engine.dispose()
    assert len(letters) == rejected
    assert Counter(letter.reason for letter in letters) == expected_reasons
    oversized = next(letter for letter in letters if letter.reason == "payload_too_large")
    assert oversized.payload_size == 1024 * 1024 + 2 and len(oversized.payload) == 64 * 1024
    assert all(letter.detail and letter.topic for letter in letters)
    # Grafana's view of the same: counts per reason in InfluxDB, written after each batch.
    influx = InfluxClient(settings)
    try:
        series = influx.query('SELECT sum("count") AS n FROM "deadletters" GROUP BY "reason"')
    finally:
        influx.close()
    assert {s.tags["reason"]: s.rows()[0]["n"] for s in series} == expected_reasons

    # Still running: one more good reading is stored.
    publish_all(settings, [(topics.bin(bin_ids[0], TopicKind.telemetry), valid(900))])
    wait_for(
        lambda: count_points(settings) == good + 1, timeout=15, what="the reading after the flood"
    )


def test_points_influxdb_refuses_are_dead_lettered_and_the_rest_of_the_batch_stored(
    settings: Settings, pilot_bins: dict[str, BinTags], ingest: Ingestor
) -> None:
    topics = Topics(settings.topic_prefix)
    victim, *others = sorted(pilot_bins)[:10]
    # Someone wrote temp_c as a string into this shard: InfluxDB now refuses float temp_c there.
    client = InfluxClient(settings)
    client.write(
        [
            point(
                "telemetry",
                tag_set({"bin": "intruder"}),
                {"temp_c": "hot"},
                int(NOW.timestamp() * 1000),
            )
        ]
    )
    client.close()
    conflicting = Reading(ts=NOW - timedelta(seconds=1), fill_pct=30.0, temp_c=21.5)
    messages = [
        (topics.bin(b, TopicKind.telemetry), valid(i)) for i, b in enumerate(others, start=2)
    ]
    messages.insert(
        4,
        (
            topics.bin(victim, TopicKind.telemetry),
            conflicting.model_dump_json(exclude_none=True).encode(),
        ),
    )
    publish_all(settings, messages)

    wait_for(
        lambda: ingest.metrics.value("binwatch_ingest_dead_lettered_total") == 1,
        timeout=30,
        what="the refused point to be dead-lettered",
    )
    assert count_points(settings) == len(others)
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        (letter,) = session.scalars(select(DeadLetter)).all()
    engine.dispose()
    assert letter.reason == "rejected_by_influxdb"
    assert "field type conflict" in letter.detail and "temp_c" in letter.detail
    assert letter.topic == topics.bin(victim, TopicKind.telemetry)
    assert letter.payload.startswith(b"telemetry,bin=" + victim.encode())


def test_a_row_the_registry_refuses_is_dead_lettered_once_never_retried(
    settings: Settings, pilot_bins: dict[str, BinTags], registry_backend: str
) -> None:
    """A permanent registry failure in an arrival hook, raised by the real database: confined
    to the readings that cause it and dead-lettered (`hook_failed`), the rest acknowledged;
    ingest never retries it (docs/ingest.md, "transient vs permanent")."""
    topics = Topics(settings.topic_prefix)
    victim, *others = sorted(pilot_bins)[:6]
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        taken = session.scalars(select(Operator.id)).first()

    def record(arrivals: list[Arrival]) -> None:
        """Reads the registry for each arrival, as the real hooks do; the victim's arrivals
        write a row it cannot take: a name longer than its column (PostgreSQL refuses it,
        DataError) under an id already taken (SQLite, which ignores lengths, IntegrityError)."""
        with Session(engine) as session:
            for arrival in arrivals:
                session.get(Operator, taken)
                if arrival.bin_id == victim:
                    session.add(Operator(id=taken, name="x" * 201))
            session.commit()

    messages = [(topics.bin(b, TopicKind.telemetry), valid(i)) for i, b in enumerate(others)]
    messages.insert(2, (topics.bin(victim, TopicKind.telemetry), valid(50)))
    try:
        with running_ingest(settings, on_arrivals=record) as ingest:
            publish_all(settings, messages)
            wait_for(
                lambda: (
                    ingest.metrics.value("binwatch_ingest_received_messages_total") == len(messages)
                ),
                timeout=30,
                what="every message to be handled and acknowledged",
            )
            assert ingest.metrics.value("binwatch_ingest_write_errors_total") == 0  # no retry
            assert ingest.metrics.value("binwatch_ingest_rejected_total", reason="hook_failed") == 1
            # Still running: the next batch passes.
            publish_all(settings, [(topics.bin(others[0], TopicKind.telemetry), valid(60))])
            wait_for(
                lambda: count_points(settings) == len(messages) + 1,
                timeout=15,
                what="the reading after the refused one",
            )
        with Session(engine) as session:
            (letter,) = session.scalars(select(DeadLetter)).all()
    finally:
        engine.dispose()
    refusal = {"sqlite": "IntegrityError", "postgresql": "DataError"}[registry_backend]
    assert (letter.reason, letter.bin_id) == ("hook_failed", victim)
    assert refusal in letter.detail, letter.detail
