"""The grid official's screens, the admin's user screens and grid API keys over HTTP against
the real stack (InfluxDB, the registry on each backend): each caller sees exactly their area,
the figures are the API's area reports, overdue requests wait for the right level, and every
user action goes through security.users with CSRF, an audit trail and ended sessions."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from api.console.i18n import Formats
from api.main import create_app
from api.routes.compliance import area_and_parts, report_window
from binwatch.cli import app as cli
from collection import store
from collection.lifecycle import COLLECTOR
from compliance.figures import score
from core.errors import InvalidRequest
from core.influx import InfluxClient, quote_ident
from core.settings import Settings
from core.sql import make_engine
from devices.models import Bin, Site
from devices.registry import BinTags
from security.keys import ApiRole, create_key
from security.models import ApiKey, ConsoleSession, User, UserEvent
from security.users import COMMAND_LINE
from tests.collection_helpers import open_manual
from tests.grid_world import (
    ADMIN,
    COMMUNITY_OFFICIAL,
    DISTRICT_OFFICIAL,
    PASSWORD,
    GridWorld,
    build,
    store_readings,
)
from tests.helpers import ADMIN_HEADERS
from tests.test_compliance import add_request

ADMIN_ACTOR = f"admin user {ADMIN} ({ADMIN})"


class Stack:
    def __init__(self, settings: Settings, engine: Any, world: GridWorld) -> None:
        self.settings, self.engine, self.world = settings, engine, world

    def session(self) -> Session:
        return Session(self.engine)

    def client(self, **headers: str) -> TestClient:
        return TestClient(create_app(self.settings), headers=headers, follow_redirects=False)

    @contextmanager
    def login(
        self, username: str, password: str = PASSWORD, **headers: str
    ) -> Iterator[TestClient]:
        with self.client(**headers) as client:
            answer = _login(client, username, password)
            assert answer.status_code == 303, answer.text
            yield client


@pytest.fixture
def stack(settings: Settings, pilot_bins: dict[str, BinTags]) -> Iterator[Stack]:
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        world = build(session, settings, pilot_bins)
    yield Stack(settings, engine, world)
    influx = InfluxClient(settings)
    influx.query(f"DROP DATABASE {quote_ident(settings.influx.db)}", database=False)
    influx.close()
    engine.dispose()


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token in the page"
    return found.group(1)


def _login(client: TestClient, username: str, password: str) -> httpx.Response:
    form = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"username": username, "password": password, "csrf": _csrf(form.text)},
    )


def _section(page: str, section_id: str) -> str:
    found = re.search(rf'<section id="{section_id}">(.*?)</section>', page, re.S)
    assert found, f"no section {section_id}"
    return found.group(1)


def _links(html: str, prefix: str) -> set[str]:
    return set(re.findall(rf'href="{prefix}([^"?]+)', html))


def _problem(page: str) -> str:
    found = re.search(r'class="problem" role="alert">([^<]*)<', page)
    assert found, page
    return found.group(1)


def test_a_community_official_sees_their_community_and_nothing_above_or_beside(
    stack: Stack,
) -> None:
    world = stack.world
    with stack.login(COMMUNITY_OFFICIAL) as client:
        assert client.get("/console/grid").headers["location"] == f"/console/grid/{world.community}"
        page = client.get(f"/console/grid/{world.community}")
        assert page.status_code == 200
        assert _links(_section(page.text, "parts"), "/console/sites/") == world.sites_under(
            world.community
        )
        missing = client.get("/console/grid/no-such-area")
        assert missing.status_code == 404
        for outside in (world.street, world.district, world.city, world.other_district):
            refused = client.get(f"/console/grid/{outside}")
            assert (refused.status_code, refused.text) == (404, missing.text)
        elsewhere = min(world.sites_under(world.other_district))
        assert client.get(f"/console/sites/{elsewhere}").text == (
            client.get("/console/sites/no-such-site").text
        )
        own = min(world.sites_under(world.community))
        assert client.get(f"/console/sites/{own}").status_code == 200
        assert client.get("/console/users").status_code == 403


def test_a_district_official_drills_down_with_the_api_area_reports_figures(
    stack: Stack,
) -> None:
    world = stack.world
    fmt = Formats("zh_CN", ZoneInfo(stack.settings.timezone))
    with stack.login(DISTRICT_OFFICIAL) as client, stack.client(**ADMIN_HEADERS) as api:
        page = client.get(f"/console/grid/{world.district}")
        assert page.status_code == 200
        streets = [s.id for s in world.grid.children(world.district)]
        rows = _section(page.text, "parts")
        assert _links(rows, "/console/grid/") == set(streets)
        accuracies = set()
        for street in streets:
            report = api.get(f"/api/v1/compliance/areas/{street}").json()
            row = re.search(rf'href="/console/grid/{street}\?days=7">.*?</tr>', rows, re.S)
            assert row, street
            cells = re.findall(r"<td>([^<]*)</td>", row.group(0))
            figures = report["metrics"]
            accuracy = figures["accuracy"]
            assert cells[0] == fmt.number(report["score"]["value"], 1)
            assert cells[1] == ("—" if accuracy is None else fmt.percent(accuracy * 100, 1))
            assert cells[4] == fmt.number(figures["requests"])
            accuracies.add(accuracy)
        assert len(accuracies - {None}) >= 2, "the readings should tell the streets apart"
        whole = api.get(f"/api/v1/compliance/areas/{world.district}").json()
        figures_card = _section(page.text, "figures")
        assert fmt.percent(whole["metrics"]["accuracy"] * 100, 1) in figures_card
        assert "waiting" not in page.text.split('id="overdue"')[0].split('id="parts"')[1]

        down = client.get(f"/console/grid/{world.community}")
        assert down.status_code == 200
        crumbs = re.findall(r'href="/console/grid/([^"?]+)\?days=7">', down.text.split("<h1>")[0])
        assert crumbs == [world.district, world.street]
        month = client.get(f"/console/grid/{world.district}?days=30")
        assert 'aria-current="true">最近30天<' in month.text
        for outside in (world.city, world.other_district):
            assert client.get(f"/console/grid/{outside}").status_code == 404


def test_the_admin_starts_at_the_city_with_every_district(stack: Stack) -> None:
    world = stack.world
    with stack.login(ADMIN) as client:
        assert client.get("/console/grid").headers["location"] == f"/console/grid/{world.city}"
        page = client.get(f"/console/grid/{world.city}")
        assert _links(_section(page.text, "parts"), "/console/grid/") == {
            d.id for d in world.grid.children(world.city)
        }
        assert 'href="/console/users"' in page.text
        assert client.get(f"/console/grid/{world.community}").status_code == 200


def test_overdue_requests_and_the_escalations_waiting_for_each_level(stack: Stack) -> None:
    world = stack.world
    with stack.session() as session:
        own_sites = sorted(world.sites_under(world.community))
        bins = list(
            session.scalars(select(Bin.id).where(Bin.site_id.in_(own_sites)).order_by(Bin.id))
        )[:4]
        far_site = min(world.sites_under(world.other_district))
        far_bin = session.scalars(select(Bin.id).where(Bin.site_id == far_site)).first()
    assert len(bins) == 4 and far_bin
    long_ago = datetime.now(UTC) - timedelta(days=3)
    late, whistled, squad, fresh = (
        open_manual(stack.settings, bins[0], long_ago),
        open_manual(stack.settings, bins[1], long_ago),
        open_manual(stack.settings, bins[2], long_ago),
        open_manual(stack.settings, bins[3]),
    )
    far = open_manual(stack.settings, far_bin, long_ago)
    with stack.session() as session:
        for request_id, level in ((whistled, 1), (squad, 1), (squad, 2), (far, 1), (far, 2)):
            request = store.get_request(session, request_id)
            assert store.escalate(
                session, request, level=level, now=datetime.now(UTC), actor=COLLECTOR, note="t"
            )
    assert late and fresh  # bins[3] is not due yet: in no list below
    with stack.login(DISTRICT_OFFICIAL) as client:
        community = client.get(f"/console/grid/{world.community}").text
        assert _bins(_section(community, "overdue")) == {bins[0], bins[1], bins[2]}
        assert _bins(_section(community, "waiting")) == {bins[1], bins[2]}
        assert "社区吹哨" in community
        street = client.get(f"/console/grid/{world.street}").text
        assert _bins(_section(street, "waiting")) == {bins[2]}
        assert "街道城管队报到" in street
        district = client.get(f"/console/grid/{world.district}").text
        assert 'id="waiting"' not in district
        assert _bins(_section(district, "overdue")) == {bins[0], bins[1], bins[2]}
    with stack.login(ADMIN) as client:
        city = client.get(f"/console/grid/{world.city}").text
        assert _bins(_section(city, "overdue")) == {bins[0], bins[1], bins[2], far_bin}


def _bins(section: str) -> set[str]:
    return set(re.findall(r"<span>([^ <]+) <span class=\"stream", section))


def test_each_part_s_figures_are_its_own_area_report_from_one_read(stack: Stack) -> None:
    """The page reads the area once and adds its parts up from it (area_and_parts): every
    figure of every part equals what the API's report of that part answers, the collection
    figures too (the response median and p90 do not add up from the sites', so they are joined
    from the requests), for the city's districts and a district's streets; and InfluxDB is
    asked once per page whatever the number of parts."""
    world, settings = stack.world, stack.settings
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with stack.session() as session:
        for n, street in enumerate(s.id for s in world.grid.children(world.district)):
            sites = sorted(world.sites_under(street))
            if not sites:
                continue
            bin_id = session.scalars(select(Bin.id).where(Bin.site_id == sites[0])).first()
            assert bin_id is not None
            for minutes in (30 + 20 * n, 300 + 60 * n, 45):
                created = end - timedelta(days=2, minutes=minutes)
                add_request(
                    session, bin_id, created=created, due=created + timedelta(hours=4),
                    status="verified", completed=created + timedelta(minutes=minutes),
                )  # fmt: skip
    influx = InfluxClient(settings)
    asked = []
    query = influx.query

    def counted(statement: str, **kwargs: Any) -> Any:
        asked.append(statement)
        return query(statement, **kwargs)

    influx.query = counted  # type: ignore[method-assign]
    try:
        window = report_window(settings, influx, start=end - timedelta(days=7), end=end)
        with stack.client(**ADMIN_HEADERS) as api, stack.session() as session:
            for area_id in (world.city, world.district):
                parts = world.grid.children(area_id)
                asked.clear()
                report, of_parts = area_and_parts(
                    influx,
                    session,
                    area_id,
                    window,
                    {part.id: world.grid.under(part.id) for part in parts},
                    list_sites=False,
                )
                reads_of_the_area = len(asked)
                whole = api.get(f"/api/v1/compliance/areas/{area_id}").json()
                assert report.model_dump(mode="json")["metrics"] == whole["metrics"]
                assert set(of_parts) == {part.id for part in parts}
                for part in parts:
                    own = api.get(f"/api/v1/compliance/areas/{part.id}").json()
                    assert own["end"] == whole["end"]  # the same window
                    assert of_parts[part.id].model_dump(mode="json") == own["metrics"], part.id
                    assert score(of_parts[part.id]).value == own["score"]["value"]
                medians = {of_parts[p.id].response_median_minutes for p in parts} - {None}
                if area_id == world.district:
                    assert len(medians) >= 2, "the streets' requests should tell them apart"
                # One report's reads (the window's segments and device health), not one a part.
                assert reads_of_the_area <= len(window.segments) + len(window.per_bin(window.start))
    finally:
        influx.close()


PAGE_CACHE_S = 2.0


def test_the_pages_figures_are_remembered_for_seconds_and_only_within_reach(
    stack: Stack, pilot_bins: dict[str, BinTags]
) -> None:
    """The grid page and the rankings keep their computed figures for the API's report cache
    time (BINWATCH_API_REPORT_CACHE_S), as the API's reports do: a reading stored meanwhile
    shows once it has passed. The area is checked against the caller's reach before the cache
    is asked: a page another user's visit left remembered is still a 404 outside one's reach."""
    world = stack.world
    short = Stack(
        stack.settings.model_copy(update={"api_report_cache_s": PAGE_CACHE_S}),
        stack.engine,
        world,
    )
    page = f"/console/grid/{world.district}"
    with stack.session() as session:
        site = min(world.sites_under(world.street))
        bin_id = session.scalars(select(Bin.id).where(Bin.site_id == site)).first()
    assert bin_id is not None
    with short.login(ADMIN) as admin, short.login(DISTRICT_OFFICIAL) as official:
        for outside in (f"/console/grid/{world.other_district}",
                        f"/console/rankings?area={world.other_district}"):  # fmt: skip
            assert admin.get(outside).status_code == 200  # remembered now
            assert official.get(outside).status_code == 404
        before = _section(official.get(page).text, "parts")
        # Every deposit of the street's first site wrongly sorted: its accuracy changes.
        store_readings(
            stack.settings,
            pilot_bins,
            [(bin_id, 500, 500)],
            at=datetime.now(UTC) - timedelta(hours=2),
        )
        assert _section(official.get(page).text, "parts") == before  # remembered
        time.sleep(PAGE_CACHE_S + 0.5)
        after = _section(official.get(page).text, "parts")
        assert after != before
        with stack.client(**ADMIN_HEADERS) as api:
            street = api.get(f"/api/v1/compliance/areas/{world.street}").json()["metrics"]
        fmt = Formats("zh_CN", ZoneInfo(stack.settings.timezone))
        row = re.search(rf'href="/console/grid/{world.street}\?days=7">.*?</tr>', after, re.S)
        assert row
        cells = re.findall(r"<td>([^<]*)</td>", row.group(0))
        assert cells[1] == fmt.percent(street["accuracy"] * 100, 1)


def test_grid_api_keys_see_their_area_only(stack: Stack) -> None:
    world = stack.world
    with stack.session() as session:
        token = create_key(
            session, name="community office", role=ApiRole.grid, now=datetime.now(UTC),
            area_id=world.street,
        ).token  # fmt: skip
        alert_site = min(world.sites_under(world.street))
    headers = {"Authorization": f"Bearer {token}"}
    with stack.client(**headers) as client:
        sites = client.get("/api/v1/sites?limit=500").json()
        assert {s["id"] for s in sites["items"]} == world.sites_under(world.street)
        assert client.get(f"/api/v1/compliance/areas/{world.community}").status_code == 200
        missing = client.get("/api/v1/compliance/areas/no-such-area")
        for outside in (world.district, world.other_district):
            refused = client.get(f"/api/v1/compliance/areas/{outside}")
            assert refused.status_code == missing.status_code == 404
            assert refused.json()["detail"] == f"no area with id {outside!r}"
        elsewhere = min(world.sites_under(world.other_district))
        assert client.get(f"/api/v1/sites/{elsewhere}").status_code == 404
        assert client.get(f"/api/v1/compliance/sites/{alert_site}").status_code == 200
        ack = client.post("/api/v1/alerts/1/ack", json={})
        assert ack.status_code == 403 and "a grid key may not" in ack.json()["detail"]
        raise_ = client.post("/api/v1/collections", json={"bin_id": "x", "reason": "r"})
        assert raise_.status_code == 403


def test_a_grid_key_needs_exactly_a_district_street_or_community(stack: Stack) -> None:
    world = stack.world
    site = min(world.sites_under(world.community))
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "grid keys need an area"),
        ({"area_id": "no-such-area"}, "district, street or community"),
        ({"area_id": world.city}, "district, street or community"),
        ({"area_id": world.community, "site_ids": [site]}, "grid keys are not scoped to a site"),
    ]
    with stack.session() as session:
        for scope, why in cases:
            with pytest.raises(InvalidRequest, match=why):
                create_key(session, name="x", role=ApiRole.grid, now=datetime.now(UTC), **scope)
        assert session.scalars(select(ApiKey)).all() == []


def test_keys_create_takes_an_area_for_a_grid_key(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BINWATCH_DATABASE_URL", stack.settings.database_url.get_secret_value())
    made = CliRunner().invoke(
        cli, ["keys", "create", "--role", "grid", "--name", "街道", "--area", stack.world.street]
    )
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    with stack.client(Authorization=f"Bearer {token}") as client:
        sites = client.get("/api/v1/sites?limit=500").json()
    assert {s["id"] for s in sites["items"]} == stack.world.sites_under(stack.world.street)
    listed = CliRunner().invoke(cli, ["keys", "list"])
    assert stack.world.street in listed.output
    with stack.session() as session:
        (key,) = session.scalars(select(ApiKey).where(ApiKey.role == "grid")).all()
        assert key.area_id == stack.world.street


# --- the admin's user screens ---------------------------------------------------------------


def _create(client: TestClient, **fields: Any) -> httpx.Response:
    page = client.get("/console/users")
    assert page.status_code == 200
    return client.post("/console/users", data={"csrf": _csrf(page.text), **fields})


def _password(page: str) -> str:
    found = re.search(r'<code class="password">([^<]+)</code>', page)
    assert found, page
    return found.group(1)


def test_the_admin_creates_a_grid_official_who_logs_in_to_their_area(stack: Stack) -> None:
    world = stack.world
    with stack.login(ADMIN) as admin:
        made = _create(
            admin,
            username="wang.street",
            display_name="王街道",
            role="grid",
            area_id=world.street,
            site_ids=[min(world.sites_under(world.community))],  # not a grid scope: ignored
            locale="en",
        )
        assert made.status_code == 201
        assert made.headers["cache-control"] == "no-store"
        password = _password(made.text)
        listing = admin.get("/console/users").text
        assert "wang.street" in listing and password not in listing
    with stack.login("wang.street", password) as official:
        landing = official.get("/console/grid")
        assert landing.headers["location"] == f"/console/grid/{world.street}"
        page = official.get(f"/console/grid/{world.street}")
        assert '<html lang="en">' in page.text
    with stack.session() as session:
        user = session.get_one(User, "wang.street")
        assert (user.role, user.area_id, user.site_ids) == ("grid", world.street, "")
        (event,) = session.scalars(select(UserEvent).where(UserEvent.username == "wang.street"))
        assert (event.action, event.actor) == ("created", ADMIN_ACTOR)
        assert event.note == f"grid: area {world.street}"
        assert password not in event.note


def test_a_user_that_cannot_be_made_is_a_clear_422_in_the_admins_language(
    stack: Stack,
) -> None:
    cases: list[tuple[dict[str, str], str]] = [
        ({"username": "Bad Name", "role": "admin"}, "用户名为2–64个小写字母"),
        ({"username": ADMIN, "role": "admin"}, "已有同名用户。"),
        ({"username": "new.one", "role": "grid"}, "请选择网格员负责的区域。"),
        ({"username": "new.one", "role": "manager"}, "请为物业经理选择至少一个站点。"),
        (
            {"username": "new.one", "role": "grid", "area_id": stack.world.city},
            "网格员的区域须为区、街道或社区",
        ),
        (
            {"username": "new.one", "role": "operator", "operator_id": "op-x"},
            "没有这家清运公司：op-x",
        ),
        ({"username": "new.one", "role": "king"}, "请从列表中选择角色和语言。"),
        ({"username": "new.one", "role": "admin", "display_name": "长" * 201}, "姓名太长"),
    ]
    with stack.login(ADMIN) as admin:
        for fields, message in cases:
            refused = _create(admin, **fields)
            assert refused.status_code == 422, fields
            assert message in _problem(refused.text), fields
            assert 'value="new.one"' in refused.text or fields["username"] != "new.one"
    with stack.session() as session:
        assert session.get(User, "new.one") is None


def test_scope_disable_and_reset_end_sessions_where_the_command_does(stack: Stack) -> None:
    world = stack.world
    with ExitStack() as clients:
        official = clients.enter_context(stack.login(COMMUNITY_OFFICIAL))
        admin = clients.enter_context(stack.login(ADMIN))
        page = admin.get(f"/console/users/{COMMUNITY_OFFICIAL}")
        csrf = _csrf(page.text)
        moved = admin.post(
            f"/console/users/{COMMUNITY_OFFICIAL}/scope",
            data={"csrf": csrf, "area_id": world.other_district},
        )
        assert moved.status_code == 303
        assert "权限范围已更改" in admin.get(moved.headers["location"]).text
        # The session goes on, with the new scope from the next page.
        assert official.get("/console/grid").headers["location"] == (
            f"/console/grid/{world.other_district}"
        )
        assert official.get(f"/console/grid/{world.community}").status_code == 404

        reset = admin.post(f"/console/users/{COMMUNITY_OFFICIAL}/password", data={"csrf": csrf})
        assert reset.status_code == 200
        password = _password(reset.text)
        assert official.get("/console/grid").headers["location"] == "/console/login"
        official = clients.enter_context(stack.login(COMMUNITY_OFFICIAL, password))

        forged = admin.post(f"/console/users/{COMMUNITY_OFFICIAL}/disable", data={"csrf": "x"})
        assert forged.status_code == 403
        assert official.get("/console/grid").status_code == 303  # still logged in (to its area)
        page = admin.get(f"/console/users/{COMMUNITY_OFFICIAL}").text
        assert "此操作无法撤销" in page and 'name="confirm" value="yes" required' in page
        unticked = admin.post(f"/console/users/{COMMUNITY_OFFICIAL}/disable", data={"csrf": csrf})
        assert unticked.status_code == 422 and "请勾选确认" in _problem(unticked.text)
        assert official.get("/console/grid").status_code == 303  # not disabled
        gone = admin.post(
            f"/console/users/{COMMUNITY_OFFICIAL}/disable", data={"csrf": csrf, "confirm": "yes"}
        )
        assert gone.status_code == 303
        assert "该用户已停用" in admin.get(gone.headers["location"]).text
        assert official.get("/console/grid").headers["location"] == "/console/login"
        with stack.client() as anyone:
            assert _login(anyone, COMMUNITY_OFFICIAL, password).status_code == 401
        own = admin.post(f"/console/users/{ADMIN}/disable", data={"csrf": csrf, "confirm": "yes"})
        assert own.status_code == 409
        assert admin.get("/console/users/nobody").status_code == 404
        history = admin.get(f"/console/users/{COMMUNITY_OFFICIAL}").text
    with stack.session() as session:
        events = session.scalars(
            select(UserEvent).where(UserEvent.username == COMMUNITY_OFFICIAL).order_by(UserEvent.id)
        ).all()
        assert [(e.action, e.actor) for e in events] == [
            ("created", COMMAND_LINE),
            ("scope_changed", ADMIN_ACTOR),
            ("password_reset", ADMIN_ACTOR),
            ("disabled", ADMIN_ACTOR),
        ]
        assert events[1].note == f"grid: area {world.other_district}"
        assert (
            session.scalars(
                select(ConsoleSession).where(ConsoleSession.username == COMMUNITY_OFFICIAL)
            ).all()
            == []
        )
        assert not session.get_one(User, ADMIN).disabled
    assert history.count(f"{ADMIN}（市级管理员）") == 3 and "admin user" not in history
    # each event's scope in the admin's words, as the list of users names it (the trail's note
    # stays `grid: area …` for the command line)
    moved_to = world.grid.places[world.other_district].name
    assert f"网格员 · {moved_to}</small>" in history and "grid: area" not in history


def test_the_command_and_the_screens_share_one_scope_change(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BINWATCH_DATABASE_URL", stack.settings.database_url.get_secret_value())
    runner = CliRunner()
    moved = runner.invoke(
        cli, ["users", "scope", DISTRICT_OFFICIAL, "--area", stack.world.other_district]
    )
    assert moved.exit_code == 0, moved.output
    wrong = runner.invoke(cli, ["users", "scope", DISTRICT_OFFICIAL, "--site", "x"])
    assert wrong.exit_code == 1 and "grid users are not scoped to a site" in wrong.output
    listed = runner.invoke(cli, ["users", "list"])
    assert f"grid: area {stack.world.other_district}" in listed.output
    with stack.login(DISTRICT_OFFICIAL) as client:
        assert client.get("/console/grid").headers["location"] == (
            f"/console/grid/{stack.world.other_district}"
        )
    with stack.session() as session:
        last = session.scalars(
            select(UserEvent)
            .where(UserEvent.username == DISTRICT_OFFICIAL)
            .order_by(UserEvent.id.desc())
        ).first()
        assert last is not None and (last.action, last.actor) == ("scope_changed", COMMAND_LINE)


@pytest.mark.registry_backends(
    "sqlite",
    reason="who reaches which screen is decided from the session's role; the users behind it are made and changed on both backends in the tests above",
)
def test_only_the_admin_reaches_the_user_screens(stack: Stack) -> None:
    with stack.login(DISTRICT_OFFICIAL, **{"Accept-Language": "en"}) as client:
        for path in ("/console/users", f"/console/users/{ADMIN}"):
            assert client.get(path).status_code == 403
        page = client.get(f"/console/grid/{stack.world.district}")
        posted = client.post(
            "/console/users",
            data={"csrf": _csrf(page.text), "username": "sneaky", "role": "admin"},
        )
        assert posted.status_code == 403
        assert 'href="/console/users"' not in page.text
    with stack.session() as session:
        assert session.get(User, "sneaky") is None
        assert session.scalars(select(Site)).first() is not None


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_console_address_that_fails_is_a_page_in_the_readers_language(stack: Stack) -> None:
    """A person who edits an address, follows an old link, or opens a page while InfluxDB does
    not answer reads a console page in their language that says what to do (a 404, a 422, a
    503 with its Retry-After), never the API's English JSON; the API's own addresses still
    answer JSON."""
    world = stack.world
    with stack.login(COMMUNITY_OFFICIAL) as client:
        for path, code, said in (
            ("/console/no-such-page", 404, "没有这个页面"),
            (f"/console/grid/{world.community}?days=many", 422, "网址中有无法识别的值"),
            ("/console/requests/not-a-number", 422, "网址中有无法识别的值"),
        ):
            answer = client.get(path)
            assert answer.status_code == code, (path, answer.text)
            assert answer.headers["content-type"].startswith("text/html"), (path, answer.text)
            assert '<html lang="zh-CN">' in answer.text and said in _problem(answer.text)
        assert client.get("/api/v1/no-such-thing").json() == {"detail": "Not Found"}
    down = stack.settings.model_copy(
        update={"influx_url": f"http://127.0.0.1:{_closed_port()}", "api_influx_timeout_s": 1}
    )
    with TestClient(create_app(down), follow_redirects=False) as client:
        assert _login(client, COMMUNITY_OFFICIAL, PASSWORD).status_code == 303
        answer = client.get(f"/console/grid/{world.community}")
        api = client.get(f"/api/v1/compliance/areas/{world.community}", headers=ADMIN_HEADERS)
    assert answer.status_code == 503 and "Retry-After" in answer.headers, answer.text
    assert answer.headers["content-type"].startswith("text/html"), answer.text
    assert "暂时无法读取本页的数据" in _problem(answer.text)
    assert api.status_code == 503 and api.headers["content-type"] == "application/json"
    # the user's own language, not the browser's, though no login check ran on these addresses
    with stack.login(COMMUNITY_OFFICIAL) as client:
        page = client.get("/console/grid")
        csrf = _csrf(client.get(page.headers["location"]).text)
        assert client.post(
            "/console/locale", data={"csrf": csrf, "locale": "en"}
        ).status_code == 303  # fmt: skip
        for path in ("/console/no-such-page", f"/console/grid/{world.community}?days=many"):
            answer = client.get(path, headers={"Accept-Language": "zh-CN"})
            assert '<html lang="en">' in answer.text, (path, answer.text)
