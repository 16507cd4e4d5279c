"""Alerts against real Mosquitto and InfluxDB: each trigger raises one alert, delivered once on
the site's MQTT topic and once to each recipient's webhook, and clears when the condition ends;
offline by will and by silence; the API lists and acknowledges. Time for the alerter is driven
by `Alerter.tick(now)`, never by sleeping."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from alerts import store
from alerts.hook import AlertHook
from alerts.messages import alert_topic
from alerts.models import Alert, SiteContact
from api.main import create_app
from core.influx import InfluxClient
from core.settings import Settings
from core.sql import make_engine
from core.webhooks import verify
from devices.contract import Event, Reading, Status, TopicKind, Topics
from devices.models import AreaContact, Operator
from devices.registry import BinTags
from ingest.service import Ingestor
from tests.collection_helpers import Recorder, recording, running_alerter, tick_alerter
from tests.conftest import running_ingest
from tests.helpers import ADMIN_ACTOR, ADMIN_HEADERS, wait_for
from tests.mqtt_helpers import publish_all
from tests.test_webhooks import Receiver

pytestmark = pytest.mark.servers

BIN = "sz-peoples-government-s1-kitchen"  # community xiaoba, street lvxin, operator op-lvyuan
SECRET = "alert-secret"
ROLES = ("manager", "operator", "community", "squad")


@contextmanager
def alert_ingest(settings: Settings) -> Iterator[Ingestor]:
    """An ingest worker in a thread with the alert hook, as `binwatch ingest` runs it."""
    hook = AlertHook(settings)
    try:
        with running_ingest(settings, on_arrivals=hook) as ingestor:
            yield ingestor
    finally:
        hook.close()


@pytest.fixture
def receivers(settings: Settings, pilot_bins: dict[str, BinTags]) -> Iterator[dict[str, Receiver]]:
    """A webhook receiver for each recipient of BIN's site, configured in the registry."""
    made = {role: Receiver([200]) for role in ROLES}
    tags = pilot_bins[BIN]
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        session.add(
            SiteContact(
                site_id=tags.site,
                name="manager",
                webhook_url=made["manager"].url,
                webhook_secret=SECRET,
            )
        )
        operator = session.get_one(Operator, tags.operator)
        operator.webhook_url, operator.webhook_secret = made["operator"].url, SECRET
        for role, area in (("community", tags.community), ("squad", tags.street)):
            session.merge(
                AreaContact(area_id=area, webhook_url=made[role].url, webhook_secret=SECRET)
            )
        session.commit()
    engine.dispose()
    try:
        yield made
    finally:
        for receiver in made.values():
            receiver.close()


def _alerts(
    settings: Settings, *, state: str | None = None, type: str | None = None
) -> list[Alert]:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            return store.list_alerts(session, state=state, kind=type)[0]
    finally:
        engine.dispose()


def _send(settings: Settings, kind: TopicKind, *messages: Reading | Event | Status) -> None:
    topic = Topics(settings.topic_prefix).bin(BIN, kind)
    publish_all(
        settings, [(topic, m.model_dump_json(exclude_none=True).encode()) for m in messages]
    )


def _notices(recorder: Recorder) -> list[tuple[str, str]]:
    return [(json.loads(p)["type"], json.loads(p)["notice"]) for _t, p in recorder.messages]


def _live_now(settings: Settings) -> dict[str, int]:
    """Alerts live now by type, as the Device health dashboard counts them: the latest `live`
    flag of each bin and type, whichever state tag its point carries."""
    influx = InfluxClient(settings)
    try:
        result = influx.query(
            'SELECT sum("live") FROM (SELECT last("live") AS "live" FROM alerts '
            'GROUP BY "bin", "type") GROUP BY "type"'
        )
    finally:
        influx.close()
    return {s.tags["type"]: s.values[0][1] for s in result}


def _posted(receiver: Receiver) -> list[tuple[str, str]]:
    out = []
    for body, signature in receiver.received:
        assert verify(body, SECRET, signature, now=time.time())
        out.append((json.loads(body)["type"], json.loads(body)["notice"]))
    return out


def test_fire_reaches_everyone_once_and_battery_only_manager_and_operator(
    settings: Settings, pilot_bins: dict[str, BinTags], receivers: dict[str, Receiver]
) -> None:
    site = pilot_bins[BIN].site
    now = datetime.now(UTC).replace(microsecond=0)
    # The fire's hold time passes on the alerter's clock: the bin must not count as silent then.
    settings = settings.model_copy(update={"alert_offline_intervals": 1000})
    with (
        running_alerter(settings) as alerter,
        recording(settings, alert_topic(settings.topic_prefix, site)) as mqtt,
        alert_ingest(settings) as ingest,
    ):
        _send(settings, TopicKind.event, Event(ts=now, type="fire", detail="smoke"))
        # A flapping battery: under 15, back to 20 (inside the band), under again: one alert.
        batteries = [30, 14, 20, 14, 22, 13]
        _send(
            settings,
            TopicKind.telemetry,
            *[
                Reading(ts=now + timedelta(seconds=i), fill_pct=40, battery_pct=b)
                for i, b in enumerate(batteries)
            ],
        )
        _send(settings, TopicKind.event, Event(ts=now + timedelta(seconds=9), type="fire"))
        wait_for(lambda: len(_alerts(settings)) == 2, timeout=10, what="two alerts")
        wait_for(
            lambda: ingest.metrics.value("binwatch_ingest_stored_points_total") == 8,
            timeout=10,
            what="ingest to store all eight",
        )
        tick_alerter(alerter, datetime.now(UTC))
        tick_alerter(alerter, datetime.now(UTC))  # a second tick must not deliver again
        wait_for(lambda: len(mqtt.messages) == 2, timeout=10, what="two MQTT notices")
        assert _live_now(settings) == {"battery_low": 1, "fire": 1}
        assert sorted(_notices(mqtt)) == [("battery_low", "raised"), ("fire", "raised")]
        for role in ("manager", "operator"):
            assert sorted(_posted(receivers[role])) == [
                ("battery_low", "raised"),
                ("fire", "raised"),
            ]
        for role in ("community", "squad"):
            assert _posted(receivers[role]) == [("fire", "raised")]

        # The battery recovers past the clear level; the fire is not seen again for the hold.
        _send(
            settings,
            TopicKind.telemetry,
            Reading(ts=now + timedelta(seconds=20), fill_pct=40, battery_pct=80),
        )
        wait_for(
            lambda: _alerts(settings, type="battery_low", state="cleared"),
            timeout=10,
            what="battery cleared",
        )
        tick_alerter(alerter, datetime.now(UTC) + alerter.limits.event_hold + timedelta(seconds=1))
        wait_for(lambda: len(mqtt.messages) == 4, timeout=10, what="two cleared notices")
    assert sorted(_notices(mqtt)[2:]) == [("battery_low", "cleared"), ("fire", "cleared")]
    assert sorted((a.type, a.state) for a in _alerts(settings)) == [
        ("battery_low", "cleared"),
        ("fire", "cleared"),
    ]
    assert all(a.duration_s is not None and a.duration_s >= 0 for a in _alerts(settings))
    assert len(receivers["community"].received) == 2  # fire raised and cleared, nothing else
    rows = InfluxClient(settings).query("SELECT count(alert_id) FROM alerts GROUP BY state")
    assert {s.tags["state"]: s.values[0][1] for s in rows} == {"active": 2, "cleared": 2}
    assert _live_now(settings) == {"battery_low": 0, "fire": 0}


def test_offline_by_will_and_by_silence_and_back(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    site = pilot_bins[BIN].site
    with (
        running_alerter(settings) as alerter,
        recording(settings, alert_topic(settings.topic_prefix, site)) as mqtt,
        alert_ingest(settings),
    ):
        _send(settings, TopicKind.status, Status(ts=now, online=False))
        wait_for(
            lambda: _alerts(settings, type="offline", state="active"), timeout=10, what="offline"
        )
        _send(settings, TopicKind.telemetry, Reading(ts=now, fill_pct=10))
        wait_for(
            lambda: _alerts(settings, type="offline", state="cleared"),
            timeout=10,
            what="back online",
        )

        # Silence: nothing for N intervals on the alerter's clock, then the bin reports again.
        tick_alerter(alerter, datetime.now(UTC) + alerter.limits.silent_for - timedelta(seconds=5))
        assert len(_alerts(settings, type="offline")) == 1
        tick_alerter(alerter, datetime.now(UTC) + alerter.limits.silent_for + timedelta(seconds=1))
        tick_alerter(alerter, datetime.now(UTC) + alerter.limits.silent_for + timedelta(seconds=30))
        assert len(_alerts(settings, type="offline", state="active")) == 1
        _send(settings, TopicKind.telemetry, Reading(ts=now + timedelta(seconds=1), fill_pct=10))
        wait_for(
            lambda: len(_alerts(settings, type="offline", state="cleared")) == 2,
            timeout=10,
            what="back",
        )
        tick_alerter(alerter, datetime.now(UTC))
        wait_for(lambda: len(mqtt.messages) == 4, timeout=10, what="four notices")
    assert _notices(mqtt) == [("offline", "raised"), ("offline", "cleared")] * 2


def test_a_gap_waits_for_late_readings_and_what_never_comes_is_lost_on_the_alerters_clock(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    """seq 1, 5 and 7 arrive (2–4 and 6 skipped), then 3 and 6 late: after the grace the
    alerter raises one gap for 2 and 4, which never came; a tick before it raises nothing."""
    now = datetime.now(UTC).replace(microsecond=0)
    settings = settings.model_copy(update={"alert_offline_intervals": 1000})
    grace = settings.alert.gap_grace
    with running_alerter(settings) as alerter, alert_ingest(settings):
        _send(
            settings,
            TopicKind.telemetry,
            *(Reading(ts=now + timedelta(seconds=s), seq=s, fill_pct=10) for s in (1, 5, 7)),
        )
        wait_for(lambda: _gap(settings) == (2, 3, 4, 6), timeout=10, what="the gap remembered")
        _send(
            settings,
            TopicKind.telemetry,
            *(Reading(ts=now + timedelta(seconds=s), seq=s, fill_pct=10) for s in (3, 6)),
        )
        wait_for(lambda: _gap(settings) == (2, 4), timeout=10, what="3 and 6 filled")
        tick_alerter(alerter, datetime.now(UTC) + grace - timedelta(seconds=5))
        assert _alerts(settings, type="seq_gap") == []
        tick_alerter(alerter, datetime.now(UTC) + grace + timedelta(seconds=1))
        (alert,) = _alerts(settings, type="seq_gap")
        assert (alert.state, alert.bin_id) == ("active", BIN)
        assert alert.detail.startswith("2 lost: seq 2 … 4 not received within ")
        assert _gap(settings) == ()  # reported: no longer awaited, not raised again
        tick_alerter(
            alerter, datetime.now(UTC) + grace + alerter.limits.gap_hold + timedelta(seconds=2)
        )
        assert [a.state for a in _alerts(settings, type="seq_gap")] == ["cleared"]


def _gap(settings: Settings) -> tuple[int, ...] | None:
    """The seqs BIN's open gap waits for, as the registry remembers them (None: never heard)."""
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            known = store.health(session, [BIN]).get(BIN)
            return None if known is None else known.memory.missing
    finally:
        engine.dispose()


def test_api_lists_filters_and_acknowledges(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with alert_ingest(settings):
        _send(settings, TopicKind.event, Event(ts=now, type="tilt"))
        _send(settings, TopicKind.telemetry, Reading(ts=now, fill_pct=10, battery_pct=5))
        wait_for(lambda: len(_alerts(settings)) == 2, timeout=10, what="two alerts")
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as client:
        page = client.get("/api/v1/alerts", params={"severity": "major"}).json()
        assert page["total"] == 1 and page["items"][0]["type"] == "tilt"
        tilt = page["items"][0]["id"]
        assert (
            client.get("/api/v1/alerts", params={"type": "battery_low", "state": "active"}).json()[
                "total"
            ]
            == 1
        )
        assert client.get("/api/v1/alerts", params={"site_id": "nowhere"}).json()["total"] == 0
        assert client.get("/api/v1/alerts", params={"state": "bogus"}).status_code == 422
        acked = client.post(f"/api/v1/alerts/{tilt}/ack", json={"note": "Wang is on it"})
        assert acked.status_code == 200, acked.text
        body = acked.json()
        assert (body["state"], body["acknowledged_by"]) == ("acknowledged", ADMIN_ACTOR)
        assert [e["kind"] for e in body["events"]] == ["raised", "acknowledged"]
        again = client.post(f"/api/v1/alerts/{tilt}/ack", json={})
        assert again.status_code == 409 and "bootstrap-admin" in again.json()["detail"]
        assert client.post("/api/v1/alerts/999/ack", json={}).status_code == 404
        # Free text is a note, never the actor.
        assert client.post(f"/api/v1/alerts/{tilt}/ack", json={"by": "li"}).status_code == 422
        assert client.get(f"/api/v1/alerts/{tilt}").json()["state"] == "acknowledged"
