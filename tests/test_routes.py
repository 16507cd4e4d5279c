"""The routes of the day on the real stack: the pilot fleet's vehicles (devices/default_fleet.yaml)
planned over waiting requests through the API, one vehicle's plan, an urgent request inserted
without moving what is done, scoping, and the plan arriving over a secured Mosquitto to the
operator's own MQTT account (and not to the other operator's)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import sleep
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.main import create_app
from collection.models import RoutePlan
from core.settings import Settings
from core.sql import make_engine
from devices.fleet import import_fleet, known_ids, load_fleet
from devices.models import Site
from devices.registry import BinTags
from security.keys import ApiRole, create_key
from tests.collection_helpers import open_manual, recording, running_collector
from tests.helpers import ADMIN_HEADERS, wait_for
from tests.test_collection import RECYCLABLE as FAST
from tests.test_collection import _write as write_fills
from tests.test_mqtt_auth import secured_broker

pytestmark = pytest.mark.servers

OPERATOR = "op-lvyuan"
OTHER = "op-jiejing"
QUIET_S = 1.0
SLOW = "sz-peoples-government-s1-residual"


def _operator_headers(settings: Settings, operator_id: str) -> dict[str, str]:
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        token = create_key(
            session, name="dispatcher", role=ApiRole.operator, now=datetime.now(UTC),
            operator_id=operator_id,
        ).token  # fmt: skip
    engine.dispose()
    return {"Authorization": f"Bearer {token}"}


def _requests(
    settings: Settings, pilot_bins: dict[str, BinTags], count_per_stream: int
) -> list[int]:
    """Manual requests for the first bins of each stream the operator serves."""
    chosen: dict[str, list[str]] = {}
    for bin_id, tags in sorted(pilot_bins.items()):
        if tags.operator == OPERATOR and len(chosen.setdefault(tags.stream, [])) < count_per_stream:
            chosen[tags.stream].append(bin_id)
    return [open_manual(settings, b) for bins in chosen.values() for b in bins]


def _loads(vehicle: dict[str, Any]) -> list[set[str]]:
    """The streams of each load of a vehicle's route."""
    loads: list[set[str]] = [set()]
    for stop in vehicle["stops"]:
        if stop["kind"] == "unload":
            loads.append(set())
        elif stop["kind"] == "job":
            loads[-1].add(stop["stream"])
    return [load for load in loads if load]


def test_the_day_is_planned_read_and_an_urgent_request_inserted(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    requested = _requests(settings, pilot_bins, 3)
    mine = _operator_headers(settings, OPERATOR)
    # tomorrow: the whole shift is ahead whatever the time of the test
    day = (datetime.now(ZoneInfo(settings.timezone)) + timedelta(days=1)).date().isoformat()
    with TestClient(create_app(settings)) as client:
        assert (
            client.get(f"/api/v1/operators/{OPERATOR}/routes?date={day}", headers=mine).status_code
            == 404
        )
        made = client.post(f"/api/v1/operators/{OPERATOR}/routes?date={day}", json={}, headers=mine)
        assert made.status_code == 201, made.text
        plan = made.json()
        assert (plan["operator_id"], plan["day"], plan["version"]) == (OPERATOR, day, 1)
        planned = [
            s["request_id"] for v in plan["vehicles"] for s in v["stops"] if s["kind"] == "job"
        ]
        waiting = [u["request_id"] for u in plan["unassigned"]]
        assert sorted(planned + waiting) == sorted(requested)
        for vehicle in plan["vehicles"]:
            assert all(len(load) == 1 for load in _loads(vehicle)), vehicle["vehicle_id"]
            assert [s["kind"] for s in vehicle["stops"]][:: len(vehicle["stops"]) - 1] == [
                "start",
                "end",
            ]
        read = client.get(f"/api/v1/operators/{OPERATOR}/routes?date={day}", headers=mine).json()
        assert read == plan
        # Times as every API time is written (docs/api.md): milliseconds, not microseconds.
        times = [plan["created_at"]] + [
            stop[key]
            for vehicle in plan["vehicles"]
            for stop in vehicle["stops"]
            for key in ("arrival_at", "departure_at", "due_at")
            if stop[key] is not None
        ]
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", t) for t in times), times
        first = plan["vehicles"][0]
        one = client.get(
            f"/api/v1/operators/{OPERATOR}/routes/{first['vehicle_id']}?date={day}", headers=mine
        )
        assert one.json()["vehicles"] == [first]

        urgent_bin = next(
            b for b, t in sorted(pilot_bins.items())
            if t.operator == OPERATOR and t.stream == "residual" and not any(
                s["bin_id"] == b for v in plan["vehicles"] for s in v["stops"]
            )
        )  # fmt: skip
        urgent = open_manual(settings, urgent_bin)
        inserted = client.post(
            f"/api/v1/operators/{OPERATOR}/routes?date={day}",
            json={"request_id": urgent},
            headers=mine,
        )
        assert inserted.status_code == 201, inserted.text
        again = inserted.json()
        assert again["version"] == 2
        assert f"request {urgent} inserted" in again["note"]
        routes = {v["vehicle_id"]: v for v in again["vehicles"]}
        before = {v["vehicle_id"]: v for v in plan["vehicles"]}
        taker = next(
            v for v in again["vehicles"] if any(s["request_id"] == urgent for s in v["stops"])
        )
        others = [s["request_id"] for s in taker["stops"] if s["request_id"] not in (None, urgent)]
        old = before.get(taker["vehicle_id"], {"stops": []})
        assert others == [s["request_id"] for s in old["stops"] if s["request_id"] is not None]
        for vehicle_id, vehicle in routes.items():
            if vehicle_id != taker["vehicle_id"]:
                # the other vehicles' routes are untouched (their stops are the new version's)
                assert _without_ids(vehicle) == _without_ids(before[vehicle_id])
        # another company's routes answer as a missing operator's
        theirs = client.get(f"/api/v1/operators/{OTHER}/routes", headers=mine)
        assert theirs.status_code == 404
        refused = client.post(
            f"/api/v1/operators/{OTHER}/routes", json={"request_id": urgent}, headers=mine
        )
        assert refused.status_code == 404
        assert (
            client.get(f"/api/v1/operators/{OTHER}/routes", headers=ADMIN_HEADERS).status_code
            == 404
        )
        # a plan is for today or a week ahead: never a past day's rewrite, nor next year's
        for wrong in (date.today() - timedelta(days=2), date.today() + timedelta(days=30)):
            refused = client.post(
                f"/api/v1/operators/{OPERATOR}/routes?date={wrong}", json={}, headers=mine
            )
            assert refused.status_code == 422, refused.text
            assert "a plan can be made for today or a day ahead" in refused.json()["detail"]


def test_the_plan_arrives_to_the_operators_mqtt_account_only(
    settings: Settings, pilot_bins: dict[str, BinTags], tmp_path: Path
) -> None:
    _requests(settings, pilot_bins, 1)
    readers = {f"operator-{OPERATOR}": (), f"operator-{OTHER}": ()}
    prefix = settings.topic_prefix
    with (
        secured_broker(settings, tmp_path, {**readers, "collector": ()}) as broker,
        ExitStack() as on,
    ):

        def as_(user: str) -> Settings:
            return settings.model_copy(update={"mqtt_url": broker.url(user)})

        heard = {
            user: on.enter_context(recording(as_(user), f"{prefix}/operators/+/routes"))
            for user in readers
        }
        with TestClient(create_app(settings)) as client:
            made = client.post(
                f"/api/v1/operators/{OPERATOR}/routes", json={}, headers=ADMIN_HEADERS
            )
            assert made.status_code == 201, made.text
        collector = on.enter_context(running_collector(as_("collector")))
        collector.publish_routes(datetime.now(UTC))
        wait_for(
            lambda: heard[f"operator-{OPERATOR}"].messages, timeout=10, what="the plan over MQTT"
        )
        sleep(QUIET_S)
        collector.publish_routes(datetime.now(UTC))  # published once: nothing more to send
        sleep(QUIET_S)
    [(topic, body)] = heard[f"operator-{OPERATOR}"].messages
    assert topic == f"{prefix}/operators/{OPERATOR}/routes"
    assert json.loads(body) == {**made.json()}
    assert heard[f"operator-{OTHER}"].messages == []


def _last_hours(now: datetime) -> list[tuple[str, datetime, float, int]]:
    """The last two hours: FAST at 15 %/h from 40 %, past 85 % within the hour; SLOW at 1 %/h,
    nowhere near (no forecast)."""
    points = []
    for i in range(25):
        at = now - timedelta(hours=2) + i * timedelta(minutes=5)
        points.append((FAST, at, 40 + 30 * i / 24, 1))
        points.append((SLOW, at, 50 + i / 12, 1))
    return points


def _last_day(now: datetime) -> list[tuple[str, datetime, float, int]]:
    """The last 24 h as a plan made at dawn sees them: FAST went 0 → 60 % in 10 h, was emptied,
    2 → 30 % in 6 h, then flat for 8 h (the 3-hour line sees no rise), 88 % gained; at 88 % ×
    1.2 a day it passes its threshold before the shift after tomorrow's starts. SLOW gained 1 %:
    it can wait."""
    points = []
    for i in range(24 * 6):
        at, hours = now - timedelta(hours=24) + i * timedelta(minutes=10), i / 6
        fill = 6 * hours if hours < 10 else 2 + 28 * (hours - 10) / 6 if hours < 16 else 30
        points.append((FAST, at, fill, 1))
        points.append((SLOW, at, 20 + hours / 24, 1))
    return points


def _plan_tomorrow(settings: Settings) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The operator's plan for tomorrow through the API, and its job stops."""
    day = (datetime.now(ZoneInfo(settings.timezone)) + timedelta(days=1)).date()
    with TestClient(create_app(settings)) as client:
        made = client.post(
            f"/api/v1/operators/{OPERATOR}/routes?date={day}", json={}, headers=ADMIN_HEADERS
        )
    assert made.status_code == 201, made.text
    plan: dict[str, Any] = made.json()
    return plan, [s for v in plan["vehicles"] for s in v["stops"] if s["kind"] == "job"]


@pytest.mark.parametrize("history", [_last_hours, _last_day], ids=["last hours", "last day"])
def test_bins_forecast_over_their_threshold_before_the_next_shift_are_planned_too(
    settings: Settings,
    pilot_bins: dict[str, BinTags],
    history: Callable[[datetime], list[tuple[str, datetime, float, int]]],
) -> None:
    write_fills(settings, pilot_bins, history(datetime.now(UTC)))
    plan, stops = _plan_tomorrow(settings)
    assert [(s["bin_id"], s["request_id"]) for s in stops] == [(FAST, None)]
    assert "0 waiting request(s) and 1 bin(s) forecast" in plan["note"]


NEIGHBOUR = "sz-civil-affairs-bureau-s1-recyclable"  # about 300 m from FAST's site
FAR = "sz-finance-bureau-s1-recyclable"  # about 750 m from it


def test_bins_near_a_stop_come_along_at_the_level_and_others_wait(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    """FAST is due; its neighbour's paper at 60 % comes along (within 500 m, over 50 %), the
    farther site's at 70 % and the residual bin beside FAST at 52 % do not."""
    now = datetime.now(UTC)
    flat = [
        (bin_id, now - timedelta(hours=2) + i * timedelta(minutes=5), fill, 1)
        for i in range(25)
        for bin_id, fill in [(NEIGHBOUR, 60.0), (FAR, 70.0)]
    ]
    write_fills(settings, pilot_bins, _last_hours(now) + flat)
    plan, stops = _plan_tomorrow(settings)
    assert sorted(s["bin_id"] for s in stops) == [NEIGHBOUR, FAST]
    assert (
        "1 bin(s) forecast over their threshold before the next shift, 1 bin(s) along"
        in (plan["note"])
    )


# A second yard of the operator right at FAST's site, with a truck for its residual and paper.
NORTH_YARD = """\
depots:
  - {id: lvyuan-north, operator: op-lvyuan, name: North Yard, lat: 29.5506, lon: 103.7673}
vehicles:
  - {id: lvyuan-north-1, operator: op-lvyuan, depot: lvyuan-north, name: North 1,
     streams: [residual, recyclable], capacity_l: 12000, shift: {start: "07:00", end: "15:00"}}
"""


def test_a_sites_bins_are_planned_from_the_depot_it_names_else_from_the_nearest(
    settings: Settings, pilot_bins: dict[str, BinTags], tmp_path: Path
) -> None:
    """FAST's site names lvyuan-yard (the pilot's file), 2.8 km away; a new yard of the same
    operator stands on the site. Its request (SLOW, overdue) and its forecast bin (FAST) go to
    lvyuan-yard's vehicles; with the site's depot cleared, to the new yard's, the nearest."""
    path = tmp_path / "north.yaml"
    path.write_text(NORTH_YARD, encoding="utf-8")
    engine = make_engine(settings.database_url)
    served = []
    try:
        with Session(engine) as session:
            import_fleet(session, load_fleet(path, known=known_ids(session)))
            assert session.get_one(Site, pilot_bins[FAST].site).depot_id == "lvyuan-yard"
        open_manual(settings, SLOW, now=datetime.now(UTC) - timedelta(days=3))
        write_fills(settings, pilot_bins, _last_hours(datetime.now(UTC)))
        for depot in ("lvyuan-yard", None):
            with Session(engine) as session:
                session.get_one(Site, pilot_bins[FAST].site).depot_id = depot
                session.commit()
            plan, _stops = _plan_tomorrow(settings)
            assert plan["unassigned"] == []
            by_bin = {
                s["bin_id"]: v["vehicle_id"]
                for v in plan["vehicles"]
                for s in v["stops"]
                if s["kind"] == "job"
            }
            assert sorted(by_bin) == sorted([SLOW, FAST])
            served.append(set(by_bin.values()))
    finally:
        engine.dispose()
    assert served[0] <= {"lvyuan-dry-1", "lvyuan-van-1"}, served
    assert served[1] == {"lvyuan-north-1"}, served


def test_the_collector_plans_each_operators_day_once_from_the_planning_hour(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    _requests(settings, pilot_bins, 1)
    zone = ZoneInfo(settings.timezone)
    tomorrow = (datetime.now(zone) + timedelta(days=1)).date()
    hour = 6
    with running_collector(settings) as unset:  # by default only a dispatcher's request plans
        unset.plan_routes(datetime.combine(tomorrow, time(hour), tzinfo=zone))
    assert _plans(settings) == []
    settings = settings.model_copy(update={"route_plan_hour": hour})
    before = datetime.combine(tomorrow, time(hour - 1, 59), tzinfo=zone).astimezone(UTC)
    with running_collector(settings) as collector:
        collector.plan_routes(before)
        assert _plans(settings) == []
        collector.plan_routes(before + timedelta(minutes=1))
        collector.plan_routes(before + timedelta(minutes=30))  # planned already: not again
    day = tomorrow.isoformat()
    assert _plans(settings) == [(OTHER, day, 1), (OPERATOR, day, 1)]  # by id: op-jiejing first
    with running_collector(settings) as restarted:  # the database remembers
        restarted.plan_routes(before + timedelta(hours=2))
    assert len(_plans(settings)) == 2


def _plans(settings: Settings) -> list[tuple[str, str, int]]:
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        found = [
            (p.operator_id, p.day, p.version)
            for p in session.scalars(select(RoutePlan).order_by(RoutePlan.operator_id))
        ]
    engine.dispose()
    return found


def _without_ids(route: dict[str, Any]) -> dict[str, Any]:
    """A vehicle's route as the API answers it, without its stops' ids (each plan version
    stores its stops anew)."""
    return route | {"stops": [s | {"stop_id": None} for s in route["stops"]]}
