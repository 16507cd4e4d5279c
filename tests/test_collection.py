"""Collection against real Mosquitto and InfluxDB: the threshold rule under two ingest workers,
the full loop with the simulator's crews, disputes, escalation along the grid, and the clock
rules. Time is driven by calling `Collector.tick(now)` with the moment wanted, never by sleeping."""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from api.main import create_app
from binwatch.servers import free_port
from collection import rules, series, store
from collection.lifecycle import COLLECTOR, Actor, Role, Status, TransitionRefused
from collection.models import CollectionEvent, CollectionRequest
from core.influx import InfluxClient
from core.lineprotocol import tag_set
from core.settings import Settings
from core.sql import make_engine
from core.times import epoch_ms
from devices import retirement
from devices.contract import Reading, TopicKind, Topics
from devices.messages import Dispatch, Escalation
from devices.models import AreaContact, Bin
from devices.registry import BinTags
from ingest.decode import decode
from simulator.crews import Crews
from simulator.publisher import run_simulation
from tests.collection_helpers import (
    hooked_ingest,
    open_manual,
    recording,
    requests_of,
    running_collector,
)
from tests.helpers import ADMIN_ACTOR, ADMIN_HEADERS, wait_for
from tests.mqtt_helpers import publish_all

pytestmark = pytest.mark.servers

KITCHEN = "sz-peoples-government-s1-kitchen"  # threshold 75 %, community xiaoba, street lvxin
RECYCLABLE = "sz-peoples-government-s1-recyclable"
OPERATOR = "op-lvyuan"


def _reading(ts: datetime, fill: float, deposits: int = 1) -> bytes:
    return Reading(ts=ts, fill_pct=fill, deposits=deposits).model_dump_json().encode()


def _set(settings: Settings, statement: object) -> None:
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        session.execute(statement)  # type: ignore[call-overload]
        session.commit()
    engine.dispose()


def _stored(*workers: object) -> float:
    return sum(
        w.metrics.value("binwatch_ingest_stored_points_total")  # type: ignore[attr-defined]
        for w in workers
    )


def test_threshold_opens_one_request_across_two_workers(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    topics = Topics(settings.topic_prefix)
    telemetry = topics.bin(KITCHEN, TopicKind.telemetry)
    now = datetime.now(UTC).replace(microsecond=0)
    with (
        running_collector(settings) as collector,
        recording(settings, topics.dispatch("+")) as dispatches,
        hooked_ingest(settings, worker=0, shared=True) as first,
        hooked_ingest(settings, worker=1, shared=True) as second,
    ):
        publish_all(settings, [(telemetry, _reading(now - timedelta(minutes=10), 80.0))])
        wait_for(lambda: requests_of(settings), timeout=10, what="the request")
        collector.tick(now)
        wait_for(lambda: dispatches.messages, timeout=10, what="the dispatch")

        over = [
            (
                telemetry,
                _reading(now - timedelta(minutes=9) + i * timedelta(seconds=1), 80 + i / 10),
            )
            for i in range(100)
        ]
        publish_all(settings, over)
        wait_for(lambda: _stored(first, second) == 101, timeout=20, what="101 stored readings")
        collector.tick(now + timedelta(seconds=5))
        # The same connection, the same topic: once this arrives, any second dispatch would have.
        collector.publisher.publish(topics.dispatch(OPERATOR), b"sentinel")
        wait_for(lambda: dispatches.messages[-1][1] == b"sentinel", timeout=10, what="sentinel")

    assert first.metrics.value("binwatch_ingest_received_messages_total") > 0
    assert second.metrics.value("binwatch_ingest_received_messages_total") > 0
    [request] = requests_of(settings)
    assert (request.bin_id, request.rule, request.status) == (KITCHEN, "threshold", "dispatched")
    assert request.trigger_fill_pct == 80.0
    assert request.due_at - request.created_at == timedelta(hours=12)  # kitchen deadline
    [(topic, payload), _sentinel] = dispatches.messages
    assert topic == topics.dispatch(OPERATOR)
    assert Dispatch.model_validate_json(payload).request_id == request.id


@pytest.fixture
def api_server(settings: Settings) -> Iterator[Settings]:
    with serving_api(settings) as served:
        yield served


@contextmanager
def serving_api(settings: Settings) -> Iterator[Settings]:
    """The API served by uvicorn on a free port; yields settings whose api_url points at it."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=10, what="the API to start")
        yield settings.model_copy(update={"api_url": f"http://127.0.0.1:{port}"})
    finally:
        server.should_exit = True
        thread.join(10)


def test_full_loop_with_simulated_crews(
    settings: Settings, pilot_bins: dict[str, BinTags], api_server: Settings
) -> None:
    # A threshold of 5 % makes the bin's first reading ask for a crew.
    _set(settings, update(Bin).where(Bin.id == KITCHEN).values(threshold_pct=5.0))
    stop = threading.Event()
    crews = Crews(api_server, speed=600, travel_s=60)
    simulation = threading.Thread(
        target=run_simulation,
        kwargs={
            "settings": settings,
            "bins": [pilot_bins[KITCHEN]],
            "interval_s": 60,
            "speed": 600,
            "seed": 3,
            "start": datetime.now(UTC) - timedelta(hours=2),
            "stop": stop,
            "between_rounds": crews.apply,
        },
        daemon=True,
    )

    def status_of_first() -> str | None:
        collector.tick(datetime.now(UTC))
        found = requests_of(settings)
        return found[-1].status if found else None

    with running_collector(settings) as collector, hooked_ingest(settings):
        crews.start()
        wait_for(crews.subscribed.is_set, timeout=10, what="crews to subscribe")
        simulation.start()
        try:
            wait_for(lambda: status_of_first() == "verified", timeout=20, what="verification")
        finally:
            stop.set()
            simulation.join(15)
            crews.stop()

    first = requests_of(settings)[-1]
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        trail = [
            (e.from_status, e.to_status, e.actor)
            for e in store.get_request(session, first.id).events
        ]
    engine.dispose()
    assert trail == [
        (None, "open", "system:collector"),
        ("open", "dispatched", "system:collector"),
        # The crews call with the admin key: the trail names the key that acted.
        ("dispatched", "acknowledged", ADMIN_ACTOR),
        ("acknowledged", "completed", ADMIN_ACTOR),
        ("completed", "verified", "system:collector"),
    ]
    assert first.completed_fill_pct is not None and first.completed_fill_pct <= 2.0


def test_crews_refused_by_the_rate_limit_retry_after_it_and_land(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    # One request per second for the crews' key, no burst to speak of. The completion follows
    # the acknowledgement at once, so it meets a 429 and must wait and try again; the
    # acknowledgement meets one too when it comes within a second of the test spending the key's
    # token (on a loaded machine the dispatch can take longer).
    slow = settings.model_copy(update={"api_rate_per_s": 1.0, "api_rate_burst": 1})
    request_id = open_manual(settings, KITCHEN)
    with serving_api(slow) as served, running_collector(settings) as collector:
        crews = Crews(served, speed=600, travel_s=0)
        crews.start()
        try:
            wait_for(crews.subscribed.is_set, timeout=10, what="crews to subscribe")
            with httpx.Client(base_url=served.api.url, headers=ADMIN_HEADERS) as same_key:
                assert same_key.get("/api/v1/sites").status_code == 200  # the key's one token
                refused = same_key.get("/api/v1/sites")
            assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
            collector.tick(datetime.now(UTC))  # dispatched: the crews hear it at once
            wait_for(lambda: crews.completed == [request_id], timeout=30, what="completion")
        finally:
            crews.stop()
    assert crews.retries >= 1  # the completion waited at least once
    [request] = requests_of(settings, status=None)
    assert (request.id, request.status) == (request_id, "completed")


def test_completion_without_emptying_is_disputed(
    settings: Settings, pilot_bins: dict[str, BinTags], ingest: object
) -> None:
    topics = Topics(settings.topic_prefix)
    app = create_app(settings)
    with running_collector(settings) as collector, TestClient(app, headers=ADMIN_HEADERS) as client:
        created = client.post(
            "/api/v1/collections", json={"bin_id": RECYCLABLE, "reason": "lid will not close"}
        )
        assert created.status_code == 201, created.text
        request_id = created.json()["id"]
        collector.tick(datetime.now(UTC))
        body = {"operator_id": OPERATOR}
        wrong = client.post(f"/api/v1/collections/{request_id}/complete", json=body)
        assert wrong.status_code == 409
        assert "acknowledge it first" in wrong.json()["detail"]
        stranger = client.post(
            f"/api/v1/collections/{request_id}/ack", json={"operator_id": "op-jiejing"}
        )
        assert stranger.status_code == 409
        assert "assigned to operator 'op-lvyuan'" in stranger.json()["detail"]
        assert client.post(f"/api/v1/collections/{request_id}/ack", json=body).status_code == 200
        done = client.post(f"/api/v1/collections/{request_id}/complete", json=body)
        assert done.status_code == 200
        completed_at = datetime.fromisoformat(done.json()["completed_at"])

        # The bin says it is as full as before.
        publish_all(
            settings,
            [(topics.bin(RECYCLABLE, TopicKind.telemetry), _reading(datetime.now(UTC), 90.0))],
        )
        wait_for(lambda: _stored(ingest) == 1, timeout=10, what="the reading")
        window = timedelta(minutes=settings.collection.verify_window_min)
        collector.tick(completed_at + window - timedelta(seconds=1))
        assert client.get(f"/api/v1/collections/{request_id}").json()["status"] == "completed"
        collector.tick(completed_at + window)
        detail = client.get(f"/api/v1/collections/{request_id}").json()

    assert detail["status"] == "disputed"
    assert detail["completed_fill_pct"] == 90.0
    assert "lowest fill 90 %" in detail["events"][-1]["note"]
    # A completed request awaiting verification kept the 90 % reading from opening another.
    assert len(requests_of(settings)) == 1


def test_a_crew_that_never_comes_escalates_along_the_grid(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    grid = f"{settings.topic_prefix}/grid"
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        session.add_all(
            [
                AreaContact(area_id="xiaoba", mqtt_topic=f"{grid}/xiaoba"),
                AreaContact(area_id="lvxin", mqtt_topic=f"{grid}/lvxin"),
            ]
        )
        session.commit()
    engine.dispose()
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    request_id = open_manual(settings, KITCHEN, t0)
    due = t0 + timedelta(hours=12)
    step = timedelta(hours=4)
    second = timedelta(seconds=1)

    def level() -> int:
        return requests_of(settings)[0].escalation_level

    with running_collector(settings) as collector, recording(settings, f"{grid}/#") as heard:
        collector.tick(due - second)
        assert level() == 0
        collector.tick(due)
        assert level() == 1
        collector.tick(due + step - second)
        assert level() == 1
        collector.tick(due + step)
        assert level() == 2
        wait_for(lambda: len(heard.messages) == 2, timeout=10, what="two escalations")

    topics = [topic for topic, _ in heard.messages]
    assert topics == [f"{grid}/xiaoba", f"{grid}/lvxin"]
    levels = [Escalation.model_validate_json(payload).level for _, payload in heard.messages]
    assert levels == [1, 2]
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as client:
        detail = client.get(f"/api/v1/collections/{request_id}").json()
    assert [e["escalation_level"] for e in detail["escalations"]] == [1, 2]
    assert detail["escalations"][0]["at"].startswith(due.strftime("%Y-%m-%dT%H:%M:%S"))
    assert "community xiaoba: published" in detail["escalations"][0]["note"]

    influx = InfluxClient(settings)
    result = influx.query('SELECT count(request_id) FROM collections GROUP BY "event"')
    # What the dashboards' "now" panels read: the bin's latest flags, whatever their status tag.
    latest = influx.query(
        'SELECT last("open") AS "open", last("overdue") AS "overdue" FROM collections '
        'GROUP BY "bin"'
    )
    influx.close()
    counts = {s.tags["event"]: s.values[0][1] for s in result}
    assert counts == {"transition": 2, "escalation_1": 1, "escalation_2": 1}
    assert [(s.tags["bin"], s.values[0][1:]) for s in latest] == [(KITCHEN, [1, 1])]


def test_collections_points_say_whether_a_request_waits_and_met_its_deadline() -> None:
    created = datetime(2025, 3, 1, 8, tzinfo=UTC)
    request = CollectionRequest(
        id=7,
        bin_id=KITCHEN,
        site_id="sz-peoples-government",
        operator_id=OPERATOR,
        stream="kitchen",
        rule="threshold",
        created_at=created,
        due_at=created + timedelta(hours=12),
    )

    def fields(status: Status, after_h: float, kind: str = "transition") -> dict[str, str]:
        level = 1 if kind == "escalation" else None
        at = created + timedelta(hours=after_h)
        event = CollectionEvent(at=at, kind=kind, to_status=status, escalation_level=level)
        _, field_set, _ = series.event_point(event, request, None).split(" ")
        found = dict(item.split("=") for item in field_set.split(","))
        assert found.pop("request_id") == "7i" and found.pop("deadline_s") == "43200.0"
        return found

    assert fields(Status.open, 0) == {"age_s": "0.0", "open": "1i", "overdue": "0i"}
    assert fields(Status.acknowledged, 13)["overdue"] == "1i"
    assert fields(Status.dispatched, 12, "escalation") == {
        "age_s": "43200.0",
        "escalation_level": "1i",
        "open": "1i",
        "overdue": "1i",
    }
    on_time = {"age_s": "39600.0", "open": "0i", "overdue": "0i", "within_deadline": "1i"}
    assert fields(Status.completed, 11) == on_time
    assert fields(Status.completed, 13)["within_deadline"] == "0i"
    assert fields(Status.cancelled, 1) == {"age_s": "3600.0", "open": "0i", "overdue": "0i"}
    # Verification comes after the wait ended; the bin's next request may be waiting already.
    assert fields(Status.verified, 12) == {"age_s": "43200.0"}
    assert fields(Status.disputed, 12) == {"age_s": "43200.0"}


def _write(
    settings: Settings,
    pilot_bins: dict[str, BinTags],
    points: list[tuple[str, datetime, float, int]],
) -> None:
    """Telemetry straight into InfluxDB with ingest's own tags, so the rules see exact data."""
    topics = Topics(settings.topic_prefix)
    tags = {b: tag_set(dataclasses.asdict(t)) for b, t in pilot_bins.items()}
    lines = []
    for bin_id, ts, fill, deposits in points:
        decoded = decode(
            topics.bin(bin_id, TopicKind.telemetry),
            _reading(ts, fill, deposits),
            epoch_ms(ts),
            topics=topics,
            tags_of=tags.get,
            max_payload=10_000,
        )
        lines += decoded.lines
    influx = InfluxClient(settings)
    influx.ensure_database(settings.raw_retention)
    influx.write(lines)
    influx.close()


def test_kitchen_bins_with_deposits_are_cleared_daily(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    now = datetime.now(UTC)
    round_at = rules.last_local_hour(
        now, hour=settings.collection.kitchen_hour, timezone=settings.timezone
    )
    used, unused, emptied, retired = (
        f"{name}-s1-kitchen"
        for name in (
            "sz-peoples-government",
            "sz-finance-bureau",
            "sz-public-security-sub-bureau",
            "shizhong-experimental-primary-school",  # retired before the round
        )
    )
    assert {used, unused, emptied, retired} <= pilot_bins.keys()
    hour = timedelta(hours=1)
    _write(
        settings,
        pilot_bins,
        [
            (used, round_at - 2 * hour, 30.0, 3),
            (retired, round_at - 2 * hour, 30.0, 3),  # retired since: not cleared
            (unused, round_at - 2 * hour, 30.0, 0),
            (emptied, round_at - 3 * hour, 30.0, 3),
            (emptied, round_at - 26 * hour, 30.0, 3),  # before the previous round: not counted
        ],
    )
    # `emptied` was emptied after its last deposit.
    request_id = open_manual(settings, emptied, round_at - 2 * hour)
    engine = make_engine(settings.database_url)
    with Session(engine, expire_on_commit=False) as session:
        crew = Actor(Role.operator, OPERATOR)
        store.transition(
            session, request_id, Status.acknowledged, actor=crew, now=round_at - 2 * hour
        )
        store.transition(
            session,
            request_id,
            Status.completed,
            actor=crew,
            now=round_at - hour,
            completed_at=round_at - hour,
        )
        store.transition(session, request_id, Status.verified, actor=COLLECTOR, now=round_at - hour)
        retirement.retire(session, "bin", retired, actor="test", note="removed", now=now)
    engine.dispose()

    with running_collector(settings) as collector:
        collector.tick(round_at - timedelta(seconds=1))  # the previous round: deposits are newer
        collector.tick(round_at)
        collector.tick(round_at + timedelta(minutes=1))

    kitchen = requests_of(settings, status=None)
    made = [r for r in kitchen if r.rule == "kitchen_daily"]
    assert [(r.bin_id, r.rule) for r in made] == [(used, "kitchen_daily")]
    # Due by the next round, not 12 h later at dawn, before any day shift could clear it.
    assert made[0].due_at - made[0].created_at == timedelta(hours=24)


def test_an_acknowledgement_that_races_the_dispatch_is_taken_on_the_new_status(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    """The operator read the request open; the collector dispatched it before the operator's
    UPDATE: acknowledging a dispatched request is allowed too, so it is not refused."""
    request_id = open_manual(settings, KITCHEN)
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    crew = Actor(Role.operator, OPERATOR)
    raced: list[bool] = []

    def dispatch_first(conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        """Just before the operator's first UPDATE (its read said open), the collector
        dispatches the request from a session of its own."""
        if statement.startswith("UPDATE collection_requests") and not raced:
            raced.append(True)
            with Session(engine) as collector:
                store.transition(collector, request_id, Status.dispatched, actor=COLLECTOR, now=now)

    event.listen(engine, "before_cursor_execute", dispatch_first)
    with Session(engine) as operator, Session(engine) as collector:
        acked = store.transition(operator, request_id, Status.acknowledged, actor=crew, now=now)
        assert raced
        assert acked.status == "acknowledged"
        moves = [(e.from_status, e.to_status) for e in acked.events]
        assert moves == [(None, "open"), ("open", "dispatched"), ("dispatched", "acknowledged")]
        # a move the new status no longer allows is still refused, with its reason
        with pytest.raises(TransitionRefused, match="acknowledged"):
            store.transition(collector, request_id, Status.dispatched, actor=COLLECTOR, now=now)
    engine.dispose()


def test_forecast_asks_early_for_a_bin_that_fills_before_the_next_working_day(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    now = datetime.now(UTC)
    local_hour = now.astimezone(ZoneInfo(settings.timezone)).hour
    # The next working day starts 3–4 hours from now, whatever the minute: well after the fast
    # bin fills (~2 h), long before the slow one does.
    settings = settings.model_copy(update={"collection_work_start_hour": (local_hour + 4) % 24})
    fast, slow = RECYCLABLE, "sz-peoples-government-s1-residual"
    retired = "sz-peoples-government-s1-kitchen"  # as fast, but retired: no request
    five = timedelta(minutes=5)
    points = []
    for i in range(25):  # the last two hours, every five minutes
        at = now - timedelta(hours=2) + i * five
        points.append((fast, at, 40 + 30 * i / 24, 1))  # 15 %/h: full ~2 h from now
        points.append((retired, at, 40 + 30 * i / 24, 1))
        points.append((slow, at, 50 + i / 12, 1))  # 1 %/h: full in two days
    _write(settings, pilot_bins, points)
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        retirement.retire(session, "bin", retired, actor="test", note="removed", now=now)
    engine.dispose()
    with running_collector(settings) as collector:
        collector.tick(now)
        collector.tick(now + timedelta(minutes=1))  # within the forecast interval: not rerun

    made = requests_of(settings)
    assert [(r.bin_id, r.rule) for r in made] == [(fast, "forecast")]
    assert made[0].reason.startswith("forecast full at ")
    # How sure, and on what: ~2 h to go, the fitted rate, the readings since the emptying. The
    # history is read in buckets aligned to the clock, so the first one may fall out: 1.8–2.0 h.
    pattern = (
        r"\(in [12]\.\d ± \d+\.\d h; 1[45]\.\d %/h fitted to 2\d readings over (1\.[89]|2\.0) h "
    )
    assert re.search(pattern, made[0].reason), made[0].reason
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as client:
        shown = client.get(f"/api/v1/collections/{made[0].id}").json()
    assert shown["reason"] == made[0].reason


def test_api_lists_filters_and_refuses(settings: Settings, pilot_bins: dict[str, BinTags]) -> None:
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as client:
        url = "/api/v1/collections"
        first = client.post(url, json={"bin_id": KITCHEN, "reason": "smells"})
        assert first.status_code == 201
        assert first.json()["rule"] == "manual"
        assert first.json()["events"][0]["actor"] == ADMIN_ACTOR
        again = client.post(url, json={"bin_id": KITCHEN, "reason": "still smells"})
        assert again.status_code == 409
        assert f"already has request {first.json()['id']} (open)" in again.json()["detail"]
        client.post(url, json={"bin_id": RECYCLABLE, "reason": "full"})
        assert client.post(url, json={"bin_id": "nope", "reason": "x"}).status_code == 404
        assert client.post(url, json={"bin_id": KITCHEN}).status_code == 422
        assert client.get(f"{url}/999").status_code == 404
        assert client.get(url, params={"status": "lost"}).status_code == 422

        page = client.get(url, params={"limit": 1}).json()
        assert (page["total"], len(page["items"])) == (2, 1)
        assert page["items"][0]["bin_id"] == RECYCLABLE  # newest first
        mine = client.get(url, params={"operator_id": OPERATOR, "status": "open"}).json()
        assert mine["total"] == 2
        assert client.get(url, params={"operator_id": "op-jiejing"}).json()["total"] == 0
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        assert client.get(url, params={"start": later}).json()["total"] == 0
        cancelled = client.post(f"{url}/{first.json()['id']}/cancel", json={"note": "duplicate"})
        assert cancelled.json()["status"] == "cancelled"
        assert client.get(url, params={"status": "cancelled"}).json()["total"] == 1
