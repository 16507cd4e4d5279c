"""No single bin can stop the others (issue 12), through a real Mosquitto running the exported
password file and ACL, real InfluxDB and ingest with its real hooks: each hostile payload a bin
can publish on its own topics costs at most that message, and every valid reading of the other
bins published around it is stored."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import paho.mqtt.client as paho
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.hook import AlertHook
from collection.hook import ThresholdHook
from core.settings import Settings
from core.sql import make_engine
from devices.arrivals import Arrival
from devices.contract import Reading, TopicKind, Topics
from devices.models import DeadLetter
from devices.registry import BinTags
from security import mqtt_auth
from tests import test_mqtt_auth
from tests.conftest import count_points, dead_letter_parts, running_ingest
from tests.helpers import wait_for
from tests.mqtt_helpers import publish_all
from tests.test_mqtt_auth import Secured

secured = test_mqtt_auth.secured  # the broker with the exported password file and ACL

NOW = datetime.now(UTC).replace(microsecond=0)
TS = int(NOW.timestamp() * 1000)


def _reading(**fields: object) -> bytes:
    return json.dumps({"ts": TS, "fill_pct": 5, **fields}).encode()


def _raw(ts: int | str = TS, **fields: str) -> bytes:
    """A reading with fields written as raw JSON text (1e400, NaN, huge integers)."""
    body = "".join(f', "{name}": {text}' for name, text in fields.items())
    return f'{{"ts": {ts}, "fill_pct": 5{body}}}'.encode()


# (name, topic kind, payload, retained, what it must cost: readings dead-lettered per reason)
HOSTILE: list[tuple[str, TopicKind, bytes, bool, dict[str, int]]] = [
    *(
        (
            f"{field}={value}",
            TopicKind.telemetry,
            _raw(**{field: value}),
            False,
            {"out_of_range": 1},
        )
        for field, value in [
            ("seq", str(2**63)),
            ("seq", str(2**64)),
            ("deposits", str(2**64)),
            ("contaminated", str(2**63)),
            *(
                (f, v)
                for f in ("fill_pct", "weight_kg", "battery_pct", "temp_c")
                for v in ("1e400", "-1e400", "NaN")
            ),
        ]
    ),
    ("seq 10^5000", TopicKind.telemetry, _raw(seq="9" * 5000), False, {"malformed_json": 1}),
    ("unclosed nesting", TopicKind.telemetry, b"[" * 200_000, False, {"malformed_json": 1}),
    (
        "nesting in a field",
        TopicKind.telemetry,
        _raw(weight_kg="[" * 950 + "]" * 950),
        False,
        {"malformed_json": 1},
    ),
    (
        "nested event",
        TopicKind.event,
        b'{"a": ' * 3000 + b"1" + b"}" * 3000,
        False,
        {"malformed_json": 1},
    ),
    (
        "array of 3,500 overflowing readings",
        TopicKind.telemetry,
        b"[" + b",".join(_raw(TS - n, deposits=str(2**64)) for n in range(3500)) + b"]",
        False,
        {"out_of_range": 3500},
    ),
    (
        "unicode digits in ts",
        TopicKind.telemetry,
        _reading(ts="٢٠٢٦-11-27T08:00:00+08:00"),
        False,
        {"bad_timestamp": 1},
    ),
    ("surrogate ts", TopicKind.telemetry, _raw(ts='"\\ud800"'), False, {"bad_timestamp": 1}),
    ("unicode key", TopicKind.telemetry, _reading(满=1), False, {"unknown_field": 1}),
    ("surrogate key", TopicKind.telemetry, _raw(**{"\\ud800": "1"}), False, {"wrong_type": 1}),
    (
        "surrogate detail",
        TopicKind.event,
        json.dumps({"ts": TS, "type": "fire", "detail": "\ud800"}).encode(),
        False,
        {"wrong_type": 1},
    ),
    (
        "unicode type",
        TopicKind.event,
        json.dumps({"ts": TS, "type": "火"}).encode(),
        False,
        {"wrong_type": 1},
    ),
    (
        "unicode status",
        TopicKind.status,
        json.dumps({"ts": "在线", "online": True}).encode(),
        False,
        {"bad_timestamp": 1},
    ),
    (
        "retained junk",
        TopicKind.telemetry,
        b'{"junk": "\xe5\x9e\x83\xe5\x9c\xbe"}',
        True,
        {"missing_field": 1},
    ),
    ("retained nesting", TopicKind.event, b"[" * 5000, True, {"malformed_json": 1}),
    # NUL: no PostgreSQL text holds it, so no string a bin sends may carry it into the registry
    # (an event's detail becomes its alert's), and a dead letter's detail that quotes one is
    # still kept, on either database.
    ("NUL in a key", TopicKind.telemetry, _raw(**{"lid\\u0000": "1"}), False, {"unknown_field": 1}),
    (
        "NUL in a buffered reading's key",
        TopicKind.telemetry,
        b"[" + _raw(**{"\\u0000": "1"}) + b"]",
        False,
        {"unknown_field": 1},
    ),
    (
        "NUL in an event's detail",
        TopicKind.event,
        json.dumps({"ts": TS, "type": "fire", "detail": "smoke\u0000"}).encode(),
        False,
        {"wrong_type": 1},
    ),
    (
        "NUL after ts",  # datetime.fromisoformat read up to the NUL: the time was stored
        TopicKind.telemetry,
        _raw(ts=f'"{NOW:%Y-%m-%dT%H:%M:%S}Z\\u0000junk"'),
        False,
        {"bad_timestamp": 1},
    ),
]


class BinClient:
    """A bin's own MQTT account (MQTT 5, QoS 1, waiting for each PUBACK)."""

    def __init__(self, secured: Secured, user: str) -> None:
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"{user}-{uuid.uuid4().hex[:6]}",
            protocol=paho.MQTTv5,
        )
        self.client.username_pw_set(user, secured.passwords[user])
        self.client.connect("127.0.0.1", secured.broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published(), f"the broker did not take {payload[:60]!r} on {topic}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def fleet(secured: Secured, pilot_bins: dict[str, BinTags]) -> Iterator[dict[str, BinClient]]:
    """Six bin accounts more than `secured` issues, each connected as itself."""
    extra = sorted(set(pilot_bins) - set(secured.passwords))[:6]
    engine = make_engine(secured.settings.database_url)
    with Session(engine) as session:
        for name in extra:
            secured.passwords[name] = mqtt_auth.issue(session, name, now=NOW).password
        assert secured.broker.auth_dir is not None
        mqtt_auth.export(session, secured.broker.auth_dir, prefix=secured.settings.topic_prefix)
    engine.dispose()
    secured.broker.reload()
    bins = sorted(name for name in secured.passwords if name != "ingest")
    clients: dict[str, BinClient] = {}
    try:
        for name in bins:
            client = wait_for(partial(_connected, secured, name), timeout=10, what=name)
            assert client is not None
            clients[name] = client
        yield clients
    finally:
        for client in clients.values():
            client.close()


def _connected(secured: Secured, name: str) -> BinClient | None:
    """A connected client, or None while the reloaded broker does not know the account yet."""
    client = BinClient(secured, name)
    try:
        wait_for(client.client.is_connected, timeout=2, what=f"{name}'s CONNACK")
    except AssertionError:
        client.close()
        return None
    return client


def _valid(index: int) -> bytes:
    ts = NOW - timedelta(seconds=index + 1)
    reading = Reading(ts=ts, seq=index, fill_pct=float(index % 80), deposits=5, contaminated=1)
    return reading.model_dump_json(exclude_none=True).encode()


def test_hostile_payloads_cost_only_themselves(
    secured: Secured, fleet: dict[str, BinClient]
) -> None:
    attacker, *others = sorted(fleet)
    topics = Topics(secured.settings.topic_prefix)
    settings = secured.settings.model_copy(update={"mqtt_url": secured.url("ingest")})
    stored_hook, alert_hook = ThresholdHook(settings), AlertHook(settings)
    expected: Counter[str] = Counter()
    valid = 0
    try:
        with running_ingest(settings, on_stored=stored_hook, on_arrivals=alert_hook) as ingest:
            published = 0
            for _name, kind, payload, retain, costs in HOSTILE:
                fleet[attacker].publish(topics.bin(attacker, kind), payload, retain=retain)
                expected.update(costs)
                published += 1
                for other in others:
                    fleet[other].publish(topics.bin(other, TopicKind.telemetry), _valid(valid))
                    valid += 1
                    published += 1
            wait_for(
                lambda: (
                    ingest.metrics.value("binwatch_ingest_received_messages_total") >= published
                ),
                timeout=30,
                what="every message to be handled",
            )
            wait_for(lambda: count_points(settings) == valid, timeout=10, what="valid readings")
            assert dead_letter_parts(settings) == expected
            # still running: the attacker's own valid reading goes through
            fleet[attacker].publish(topics.bin(attacker, TopicKind.telemetry), _valid(10_000))
            wait_for(lambda: count_points(settings) == valid + 1, timeout=10, what="one more")
            # /health is honest: nothing held unacknowledged, so not stalled (the batch's
            # hooks, dead letters and acknowledgements follow its write: wait for them too)
            wait_for(
                lambda: ingest.health()[1]["oldest_unacked_s"] is None,
                timeout=10,
                what="ingest to hold nothing unacknowledged",
            )
            healthy, body = ingest.health()
            assert healthy and body["status"] == "ok"
        # Retained junk is handled once: not again when ingest reconnects with its session, nor
        # when a new session subscribes (the broker names a session after its account, so the
        # new one is a worker account, `ingest-0`, with ingest's password).
        fresh = secured.url("ingest").replace("//ingest:", "//ingest-0:", 1)
        for n, url in enumerate((settings.mqtt_url, fresh)):
            again = settings.model_copy(update={"mqtt_url": url})
            with running_ingest(again) as ingest:
                topic = topics.bin(others[0], TopicKind.telemetry)
                fleet[others[0]].publish(topic, _valid(20_000 + n))
                wait_for(
                    lambda i=ingest: i.metrics.value("binwatch_ingest_stored_points_total") == 1,  # type: ignore[misc]
                    timeout=15,
                    what="the sentinel reading",
                )
                assert ingest.metrics.value("binwatch_ingest_dead_lettered_total") == 0
        assert dead_letter_parts(settings) == expected
    finally:
        stored_hook.close()
        alert_hook.close()


def test_a_hook_that_fails_on_one_bins_readings_costs_only_those(
    secured: Secured, fleet: dict[str, BinClient]
) -> None:
    """What a seq of 2^63 did to the alert hook before the contract bounded it: the registry
    raised OverflowError, and the batch was retried forever, for every bin."""
    attacker, *others = sorted(fleet)
    topics = Topics(secured.settings.topic_prefix)
    settings = secured.settings.model_copy(update={"mqtt_url": secured.url("ingest")})
    alerts = AlertHook(settings)
    seen: list[str] = []

    def hook(arrivals: list[Arrival]) -> None:
        if any(arrival.bin_id == attacker for arrival in arrivals):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        alerts(arrivals)
        seen.extend(arrival.bin_id for arrival in arrivals)

    try:
        with running_ingest(settings, on_arrivals=hook) as ingest:
            for round_ in range(5):
                fleet[attacker].publish(topics.bin(attacker, TopicKind.telemetry), _valid(round_))
                for n, other in enumerate(others):
                    topic = topics.bin(other, TopicKind.telemetry)
                    fleet[other].publish(topic, _valid(round_ * 10 + n))
            wait_for(
                lambda: ingest.metrics.value("binwatch_ingest_dead_lettered_total") == 5,
                timeout=20,
                what="the attacker's readings to be dead-lettered",
            )
            wait_for(lambda: len(seen) == 5 * len(others), timeout=10, what="the others hooked")
        assert count_points(settings) == 5 * (len(others) + 1)  # stored, all of them
        assert dead_letter_parts(settings) == {"hook_failed": 5}
        assert set(seen) == set(others)
    finally:
        alerts.close()


def test_a_bug_met_while_storing_dead_letters_the_batch_instead_of_looping(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    bin_id = sorted(pilot_bins)[0]
    topic = Topics(settings.topic_prefix).bin(bin_id, TopicKind.telemetry)
    with running_ingest(settings, bugs_expected=True) as ingest:
        write = ingest._write_isolating  # noqa: SLF001 - the test plants a bug in the write path

        def planted(parts: list[Any]) -> Any:
            if any(part.message.seq == 1 for part in parts):
                raise RuntimeError("a bug planted by the test")
            return write(parts)

        ingest._write_isolating = planted  # type: ignore[method-assign]  # noqa: SLF001
        publish_all(settings, [(topic, b"[" + _valid(0) + b"," + _valid(1) + b"]")])
        wait_for(
            lambda: ingest.metrics.value("binwatch_ingest_dead_lettered_total") == 1,
            timeout=15,
            what="the batch to be dead-lettered",
        )
        publish_all(settings, [(topic, _valid(2))])
        wait_for(lambda: count_points(settings) == 1, timeout=15, what="the next reading")
    (letter,) = _rows(settings)
    assert (letter.reason, letter.parts) == ("ingest_error", 1)
    assert "RuntimeError: a bug planted by the test" in letter.detail
    assert [r["seq"] for r in json.loads(letter.payload)] == [0, 1]  # replayable as it came


def _rows(settings: Settings) -> list[DeadLetter]:
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        rows = list(session.scalars(select(DeadLetter)).all())
    engine.dispose()
    return rows
