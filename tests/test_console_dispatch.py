"""The dispatcher's screen over HTTP on the real stack (InfluxDB, the pilot registry, VROOM):
an operator sees its own company's routes of the day (the API's plan, stop for stop), its
waiting and overdue requests, the requests no route takes with why in the reader's language,
and its scorecard (the API's operator report); another company's screen is the same 404 as a
missing one; the admin picks any; the re-plan button stores a new plan through the API's code."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.console.i18n import Formats
from api.main import create_app
from api.routes.collections import current_time
from collection import plans
from collection.models import CollectionRequest
from collection.planning import Job, Place, Plan, Unassigned
from core.influx import InfluxClient
from core.settings import Settings
from core.sql import make_engine
from devices.contract import Stream
from devices.models import Bin, Operator, Site, Vehicle
from security.keys import BOOTSTRAP_KEY_ID, ApiRole, Principal, create_key
from security.users import UserRole, create_user
from tests.collection_helpers import open_manual
from tests.test_console_grid import _csrf, _login, _section

pytestmark = [
    pytest.mark.servers,
    pytest.mark.registry_backends(
        "sqlite",
        reason="the plans' registry code (collection/plans.py) runs on both backends in "
        "test_routes.py; the console adds no query of its own",
    ),
]

OPERATOR, OTHER = "op-lvyuan", "op-jiejing"
DISPATCHER, OTHER_DISPATCHER, ADMIN = "lvyuan.desk", "jiejing.desk", "city.admin"
PASSWORD = "green bins 2026"
EARLY = time(6, 30)  # before any of the operator's shifts (07:00): no vehicle reaches it in time


@dataclass(frozen=True)
class World:
    settings: Settings
    day: date  # tomorrow: the whole shift is ahead whatever the time of the test
    late: int  # overdue request
    early: int  # due before any vehicle can reach it: not in any route
    waiting: int  # due later: planned
    api_key: str  # the operator's own API key, to compare with the API's answers

    def client(self) -> TestClient:
        return TestClient(create_app(self.settings), follow_redirects=False)

    def page(self, username: str, path: str) -> tuple[int, str]:
        with self.client() as client:
            assert _login(client, username, PASSWORD).status_code == 303
            answer = client.get(path)
            return answer.status_code, answer.text


def _bin(session: Session, operator_id: str, stream: str, n: int = 0) -> str:
    return session.scalars(
        select(Bin.id)
        .join(Site, Bin.site_id == Site.id)
        .where(Site.operator_id == operator_id, Bin.stream == stream)
        .order_by(Bin.id)
    ).all()[n]


def _due(session: Session, request_id: int, due: datetime) -> None:
    session.get_one(CollectionRequest, request_id).due_at = due
    session.commit()


@pytest.fixture(scope="module")
def world(module_settings: Settings) -> Iterator[World]:
    """Three waiting requests of the operator (created two hours ago, so the scorecard's
    window holds them): one overdue, one due before any vehicle can reach it, one due later;
    tomorrow's plan of them; the two companies' dispatchers (Chinese) and the admin (English)."""
    settings = module_settings
    zone = ZoneInfo(settings.timezone)
    now = datetime.now(UTC)
    day = (now.astimezone(zone) + timedelta(days=1)).date()
    influx = InfluxClient(settings)
    influx.ensure_database(settings.raw_retention)
    influx.close()
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        bins = [_bin(session, OPERATOR, s) for s in ("residual", "kitchen", "recyclable")]
    created = now - timedelta(hours=2)
    late, early, waiting = (open_manual(settings, b, created) for b in bins)
    with Session(engine) as session:
        _due(session, late, now - timedelta(hours=1))
        _due(session, early, datetime.combine(day, EARLY, tzinfo=zone))
        _due(session, waiting, datetime.combine(day, time(14), tzinfo=zone))
        for username, role, operator_id, locale in (
            (DISPATCHER, UserRole.operator, OPERATOR, "zh_CN"),
            (OTHER_DISPATCHER, UserRole.operator, OTHER, "zh_CN"),
            (ADMIN, UserRole.admin, None, "en"),
        ):
            create_user(
                session, username=username, display_name=username, password=PASSWORD,
                role=role, now=now, operator_id=operator_id, locale=locale,
            )  # fmt: skip
        key = create_key(
            session, name="desk", role=ApiRole.operator, now=now, operator_id=OPERATOR
        ).token
        plans.plan_operator_day(session, OPERATOR, day, settings=settings, now=now, actor="test")
    engine.dispose()
    yield World(settings, day, late, early, waiting, key)


def _stops(page: str) -> dict[str, list[str]]:
    """Each vehicle's stops as the page lists them: the bins, in order."""
    tables = re.findall(
        r'<table class="bins stops" data-vehicle="([^"]+)">(.*?)</table>', page, re.S
    )
    return {
        vehicle: re.findall(r'<tr class="stop-job">.*?<small>([^<]+)</small>', rows, re.S)
        for vehicle, rows in tables
    }


def _requests(section: str) -> set[int]:
    return {int(n) for n in re.findall(r'data-request="(\d+)"', section)}


def test_the_operator_sees_its_days_routes_requests_and_scorecard_as_the_api_counts_them(
    world: World,
) -> None:
    mine = {"Authorization": f"Bearer {world.api_key}"}
    with world.client() as client:
        assert _login(client, DISPATCHER, PASSWORD).status_code == 303
        home = client.get("/console/dispatch")
        assert home.headers["location"] == f"/console/dispatch/{OPERATOR}"
        page = client.get(f"/console/dispatch/{OPERATOR}?date={world.day}").text
        api = client.get(
            f"/api/v1/operators/{OPERATOR}/routes?date={world.day}", headers=mine
        ).json()
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        report = client.get(
            f"/api/v1/compliance/operators/{OPERATOR}",
            params={"start": (end - timedelta(days=30)).isoformat(), "end": end.isoformat()},
            headers=mine,
        ).json()["metrics"]
    assert _stops(page) == {
        v["vehicle_id"]: [s["bin_id"] for s in v["stops"] if s["kind"] == "job"]
        for v in api["vehicles"]
    }
    assert api["vehicles"] and all(v["vehicle_id"].startswith("lvyuan-") for v in api["vehicles"])
    # each vehicle by the name the fleet gives it (as on the crew's screen), on the page, in the
    # map's legend and beside a request its route holds; its id stays out of sight
    engine = make_engine(world.settings.database_url)
    with Session(engine) as session:
        names = {v.id: v.name for v in session.scalars(select(Vehicle))}
    engine.dispose()
    for vehicle in api["vehicles"]:
        vehicle_id = vehicle["vehicle_id"]
        assert f'<h3 id="vehicle-{vehicle_id}">{names[vehicle_id]}</h3>' in page
    legend = json.loads(re.findall(r'id="map-routes">(.*?)</script>', page, re.S)[0])
    assert {line["name"] for line in legend} == {names[v["vehicle_id"]] for v in api["vehicles"]}
    (holder,) = (
        v["vehicle_id"]
        for v in api["vehicles"]
        if any(s.get("request_id") == world.waiting for s in v["stops"])
    )
    assert f"已排入 {names[holder]} 的路线" in _section(page, "waiting")
    assert _requests(_section(page, "unassigned")) == {world.early}
    assert _requests(_section(page, "overdue")) == {world.late}
    assert _requests(_section(page, "waiting")) == {world.early, world.waiting}
    scorecard = _section(page, "scorecard")
    shown = [int(n) for n in re.findall(r"<dd>(\d+)</dd>", scorecard)]
    assert shown[:3] == [report["requests"], report["requests_on_time"], report["requests_missed"]]
    assert (report["requests"], report["requests_missed"]) == (3, 1)  # the overdue one


def test_another_companys_screen_is_a_missing_one_and_the_admin_picks_any(world: World) -> None:
    other = world.page(OTHER_DISPATCHER, f"/console/dispatch/{OPERATOR}?date={world.day}")
    missing = world.page(OTHER_DISPATCHER, "/console/dispatch/op-nobody")
    assert other == missing
    assert other[0] == 404
    with world.client() as client:
        assert _login(client, OTHER_DISPATCHER, PASSWORD).status_code == 303
        posted = client.post(
            f"/console/dispatch/{OPERATOR}/replan",
            data={"csrf": _csrf(client.get("/console/dispatch/op-jiejing").text)},
        )
        assert posted.status_code == 404
    status, page = world.page(ADMIN, f"/console/dispatch/{OTHER}?date={world.day}")
    assert status == 200
    assert f'href="/console/dispatch/{OPERATOR}?date={world.day}"' in page  # the picker
    assert "No routes are planned for this day yet." in page
    status, page = world.page(ADMIN, f"/console/dispatch/{OPERATOR}?date={world.day}")
    assert set(_stops(page)) == set(
        _stops(world.page(DISPATCHER, f"/console/dispatch/{OPERATOR}?date={world.day}")[1])
    )
    assert world.page(ADMIN, f"/console/dispatch/{OPERATOR}?date=tomorrow")[0] == 422


def test_why_a_request_fits_no_route_in_chinese_and_english(world: World) -> None:
    path = f"/console/dispatch/{OPERATOR}?date={world.day}"
    chinese = _section(world.page(DISPATCHER, path)[1], "unassigned")
    english = _section(world.page(ADMIN, path)[1], "unassigned")
    assert "截止时间 06:30 早于任何厨余垃圾车辆能到达的时间" in chinese
    assert "Due at 06:30, before any vehicle (Kitchen waste) can reach it" in english
    assert "顺延到下一次计划" in chinese
    assert "Rolls over to the next plan" in english


def test_the_replan_button_stores_a_new_plan_and_inserts_an_urgent_request(world: World) -> None:
    engine = make_engine(world.settings.database_url)
    with Session(engine) as session:
        urgent_bin, first_bin = (_bin(session, OTHER, "residual", n) for n in (0, 1))
    open_manual(world.settings, first_bin)  # so the day has a route to insert into
    path, day = f"/console/dispatch/{OTHER}", str(world.day)
    with world.client() as client:
        assert _login(client, ADMIN, PASSWORD).status_code == 303
        csrf = _csrf(client.get(f"{path}?date={day}").text)
        assert client.post(f"{path}/replan", data={"date": day}).status_code == 403
        planned = client.post(
            f"{path}/replan", data={"csrf": csrf, "date": day}, headers={"HX-Request": "true"}
        )
        assert planned.status_code == 303
        assert planned.headers["location"] == f"{path}?date={day}&notice=replanned"
        page = client.get(planned.headers["location"]).text
        assert "The day was planned again." in page
        assert not any(urgent_bin in bins for bins in _stops(page).values())
        urgent = open_manual(world.settings, urgent_bin)
        inserted = client.post(
            f"{path}/replan", data={"csrf": csrf, "date": day, "request_id": str(urgent)}
        )
        assert inserted.status_code == 303
        page = client.get(inserted.headers["location"]).text
        bad = client.post(f"{path}/replan", data={"csrf": csrf, "date": day, "request_id": "x"})
        assert bad.status_code == 422
        past = client.post(f"{path}/replan", data={"csrf": csrf, "date": "2020-01-01"})
        assert past.status_code == 422
        assert "Only today and the next 7 days can be planned." in past.text
    with Session(engine) as session:
        stored = plans.latest_plan(session, OTHER, world.day)
        assert stored is not None
        assert (stored.version, stored.actor) == (2, f"admin user {ADMIN} ({ADMIN})")
        vehicle = next(s.vehicle_id for s in stored.stops if s.request_id == urgent)
        assert stored.note == f"request {urgent} inserted into {vehicle}'s route"
    engine.dispose()
    assert any(urgent_bin in bins for bins in _stops(page).values())


def test_days_at_the_calendars_edges_are_answered_never_a_server_error(world: World) -> None:
    """The first and last days a date can hold, and days past them, on the screen and the
    re-plan: a page (nothing planned) or a 422 that says what to write, never a 500 from
    arithmetic past the calendar (the day after, the scorecard's window)."""
    path = f"/console/dispatch/{OPERATOR}"
    for day in ("0001-01-01", "9999-12-31"):
        status, page = world.page(ADMIN, f"{path}?date={day}")
        assert status == 200, page[:300]
        assert "No routes are planned for this day yet." in page
    for day in ("10000-01-01", "0000-12-31", "2026-02-30"):
        assert world.page(ADMIN, f"{path}?date={day}")[0] == 422
    with world.client() as client:
        assert _login(client, ADMIN, PASSWORD).status_code == 303
        csrf = _csrf(client.get(path).text)
        for day in ("0001-01-01", "9999-12-31"):
            answer = client.post(f"{path}/replan", data={"csrf": csrf, "date": day})
            assert answer.status_code == 422, answer.text[:300]
            assert "Only today and the next 7 days can be planned." in answer.text
    mine = {"Authorization": f"Bearer {world.api_key}"}
    with TestClient(create_app(world.settings)) as client:
        for day in ("0001-01-01", "9999-12-31"):
            url = f"/api/v1/operators/{OPERATOR}/routes?date={day}"
            answer = client.get(url, headers=mine)
            assert answer.status_code == 404, answer.text[:300]
            answer = client.post(url, headers=mine, json={})
            assert answer.status_code == 422, answer.text[:300]
            assert answer.json()["detail"]


def test_inserting_for_an_operator_without_vehicles_says_there_are_none(world: World) -> None:
    """An operator with a waiting request but no vehicles and no plan: inserting the request
    says the operator has no vehicles (not that the request waits for no crew). Last in the
    module: it adds an operator the earlier tests' lists would show."""
    engine = make_engine(world.settings.database_url)
    with Session(engine) as session:
        model = session.get_one(
            Site, session.get_one(Bin, _bin(session, OTHER, "residual")).site_id
        )
        session.add(Operator(id="op-empty", name="No trucks yet"))
        session.add(
            Site(
                id="site-empty", name="Empty", site_type=model.site_type,
                community_id=model.community_id, operator_id="op-empty", address="x",
                latitude=model.latitude, longitude=model.longitude,
            )
        )  # fmt: skip
        session.add(
            Bin(id="bin-empty", site_id="site-empty", station="s1", stream="residual",
                capacity_l=240, threshold_pct=80)
        )  # fmt: skip
        session.commit()
    engine.dispose()
    request_id = open_manual(world.settings, "bin-empty")
    path, day = "/console/dispatch/op-empty", str(world.day)
    with world.client() as client:
        assert _login(client, ADMIN, PASSWORD).status_code == 303
        csrf = _csrf(client.get(f"{path}?date={day}").text)
        answer = client.post(
            f"{path}/replan", data={"csrf": csrf, "date": day, "request_id": str(request_id)}
        )
    assert answer.status_code == 422
    assert "Operator op-empty has no vehicles in the fleet file" in answer.text
    assert "does not wait for a crew" not in answer.text


def test_who_made_a_plan_is_said_in_words_never_the_audit_trails_codes(world: World) -> None:
    """A plan made with the server's admin key (as `binwatch demo` plans its days) and one
    re-planned by the admin on the console read, on the Chinese dispatcher's screen, as the
    admin key and the admin's name with their role, not `admin key bootstrap-admin
    (BINWATCH_ADMIN_TOKEN)` or `admin user city.admin (city.admin)`."""
    server_key = Principal(BOOTSTRAP_KEY_ID, ApiRole.admin, name="BINWATCH_ADMIN_TOKEN").actor
    later = world.day + timedelta(days=1)
    engine = make_engine(world.settings.database_url)
    with Session(engine) as session:
        plans.plan_operator_day(
            session, OPERATOR, later, settings=world.settings, now=datetime.now(UTC),
            actor=server_key,
        )  # fmt: skip
    engine.dispose()
    path = f"/console/dispatch/{OPERATOR}?date={later}"
    status, page = world.page(DISPATCHER, path)
    assert status == 200
    assert "由 服务器配置中的管理员密钥 制定" in page, page
    assert "BINWATCH_ADMIN_TOKEN" not in page and "bootstrap-admin" not in page
    with world.client() as client:
        assert _login(client, ADMIN, PASSWORD).status_code == 303
        csrf = _csrf(client.get(path).text)
        replan = f"/console/dispatch/{OPERATOR}/replan"
        assert client.post(replan, data={"csrf": csrf, "date": str(later)}).status_code == 303
    status, page = world.page(DISPATCHER, path)
    assert f"由 {ADMIN}（市级管理员） 制定" in page, page
    assert "admin user" not in page


def _seen_at(settings: Settings, moment: datetime, username: str, path: str) -> str:
    """The page as `username` reads it with the API's clock at `moment` (its text, unescaped)."""
    app = create_app(settings)
    app.dependency_overrides[current_time] = lambda: moment.astimezone(UTC)
    with TestClient(app, follow_redirects=False) as client:
        assert _login(client, username, PASSWORD).status_code == 303
        answer = client.get(path)
    assert answer.status_code == 200, answer.text[:300]
    return html.unescape(re.sub(r"[ \t\r\n]+", " ", answer.text))  # keeps Babel's U+202F


def test_a_day_without_routes_says_why_and_what_comes_next(world: World) -> None:
    """The dispatcher's and the crew's screens of a day with no route: a first `make demo` at
    night planned nothing (no bin due) and both screens were blank but for "no vehicle has a
    route in this plan" and "no stop is planned for your vehicle today", which said neither why
    nor what to do. Now they say: not planned yet and when binwatch plans it by itself (or that
    days are planned only on request), nothing was due when the plan was made, the shifts had
    ended; and the next plan, the next shift, the re-plan button. In English and Chinese."""
    zone = ZoneInfo(world.settings.timezone)

    def at(day: date, hour: int, minute: int = 0) -> datetime:
        return datetime.combine(day, time(hour, minute), tzinfo=zone)

    en, zh = Formats("en", zone), Formats("zh_CN", zone)
    at_six = world.settings.model_copy(
        update={"route": world.settings.route.model_copy(update={"plan_hour": 6})}
    )
    quiet, ended = world.day + timedelta(days=2), world.day + timedelta(days=3)
    engine = make_engine(world.settings.database_url)
    with Session(engine) as session:
        vehicle = session.scalars(
            select(Vehicle).where(Vehicle.operator_id == OTHER).order_by(Vehicle.id)
        ).first()
        assert vehicle is not None
        shift = vehicle.shift_start, vehicle.shift_end
        create_user(
            session, username="jiejing.crew", display_name="王师傅", password=PASSWORD,
            role=UserRole.crew, now=datetime.now(UTC), vehicle_id=vehicle.id,
        )  # fmt: skip
        shift_end = plans.shifts_of(session, OTHER, ended, zone)[1]
        # what the demo's night plan was: nothing waiting, nothing due, planned at 01:30
        for day, made in ((quiet, at(quiet, 1, 30)), (ended, shift_end + timedelta(hours=1))):
            plans.save_plan(
                session, OTHER, day, Plan((), ()), now=made, actor="test", note="nothing"
            )
        next_start = plans.shifts_of(session, OTHER, ended + timedelta(days=1), zone)[0]
        # a plan whose one job fits no route
        site = session.get_one(Site, session.get_one(Bin, _bin(session, OTHER, "residual")).site_id)
        job = Job(
            id="request-0", bin_id=_bin(session, OTHER, "residual"), site_id=site.id,
            stream=Stream.residual, place=Place(site.latitude, site.longitude), load_l=240,
            service=timedelta(minutes=2),
        )  # fmt: skip
        full = world.day + timedelta(days=6)
        plans.save_plan(
            session, OTHER, full, Plan((), (Unassigned(job, "no room"),)), now=at(full, 1, 30),
            actor="test", note="full",
        )  # fmt: skip
    engine.dispose()
    vehicle_end = at(ended, *map(int, shift[1].split(":")))
    vehicle_next = at(ended + timedelta(days=1), *map(int, shift[0].split(":")))
    path = f"/console/dispatch/{OTHER}"

    # No plan yet, at 01:30, the collector planning at 06:00, or only on request.
    unplanned = quiet + timedelta(days=2)
    page = _seen_at(at_six, at(unplanned, 1, 30), ADMIN, path)
    assert "No routes are planned for this day yet." in page
    assert f"binwatch plans it by itself at {en.time(at(unplanned, 6))}." in page
    assert "To plan it now, use the button." in page
    # not "every job of this plan is in a route" of a plan there is not
    assert "Every job of this plan is in a route." not in page
    page = _seen_at(at_six, at(unplanned, 1, 30), OTHER_DISPATCHER, path)
    assert f"系统将于 {zh.time(at(unplanned, 6))} 自动规划这一天" in page
    page = _seen_at(at_six, at(unplanned, 9), ADMIN, path)
    assert "should have planned it by itself at" in page
    assert "check that the collector is running" in page
    page = _seen_at(world.settings, at(unplanned, 1, 30), ADMIN, path)
    assert "Days are planned here only on request: plan it with the button." in page
    crew = _seen_at(at_six, at(unplanned, 1, 30), "jiejing.crew", "/console/crew")
    assert f"今天还没有规划：系统将于 {zh.time(at(unplanned, 6))} 自动规划" in crew

    # A plan made at 01:30 with nothing due.
    page = _seen_at(at_six, at(quiet, 1, 40), ADMIN, path)
    assert f"nothing was due when it was made ({en.time(at(quiet, 1, 30))})" in page
    assert "No request was waiting for a crew and no bin was forecast over its threshold" in page
    assert "insert one into a route, or plan the day again with the button" in page
    next_day = en.time(at(quiet + timedelta(days=1), 6))
    assert (
        f"binwatch does not plan this day again by itself; it plans the next day at {next_day}"
        in page
    )
    page = _seen_at(at_six, at(quiet, 1, 40), OTHER_DISPATCHER, path)
    assert f"制定时（{zh.time(at(quiet, 1, 30))}）没有需要清运的" in page
    assert "重新规划当天路线" in page  # the button
    crew = _seen_at(at_six, at(quiet, 1, 40), "jiejing.crew", "/console/crew")
    assert "今天没有为您的车辆安排清运点。" in crew
    assert f"今天的计划（{zh.time(at(quiet, 1, 30))} 制定）中没有您车辆的清运点" in crew
    assert "调度员重新规划后，您的清运点会自动显示在这里。" in crew

    # A plan whose jobs fit no route.
    page = _seen_at(at_six, at(full, 1, 40), ADMIN, path)
    assert "none of its jobs fits a route (why is under “Not in any route”)" in page
    page = _seen_at(at_six, at(full, 1, 40), OTHER_DISPATCHER, path)
    assert "没有任何任务能排入路线（原因见“未排入任何路线”）" in page

    # A plan made after the day's shifts had ended, read after they ended.
    page = _seen_at(at_six, shift_end + timedelta(hours=2), ADMIN, path)
    assert f"after the day's shifts had ended ({en.time(shift_end)})" in page
    assert (
        f"This day's shifts ended at {en.time(shift_end)}; the next shift starts "
        f"{en.time(next_start)}." in page
    )
    assert (
        f"binwatch plans that day by itself at {en.time(at(ended + timedelta(days=1), 6))}" in page
    )
    crew = _seen_at(at_six, shift_end + timedelta(hours=2), "jiejing.crew", "/console/crew/stops")
    assert (
        f"您今天的班次已于 {zh.time(vehicle_end)} 结束，下一班次 {zh.time(vehicle_next)} 开始。"
        in crew
    )
