"""The console over HTTP against the real stack (InfluxDB, the registry): logging in and out,
wrong passwords and lockouts, CSRF, sessions that end, a manager's scope (the API's own), and
the manager's actions recorded with the user as actor."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import sync_playwright
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from alerts import rules
from alerts import store as alert_store
from alerts.models import Alert
from alerts.rules import AlertType, Finding
from api.main import create_app
from collection import store as collection_store
from collection.hook import ThresholdHook
from collection.lifecycle import COLLECTOR, Status
from collection.models import CollectionRequest
from core.influx import InfluxClient, quote_ident
from core.lineprotocol import tag_set
from core.reasons import Reason
from core.settings import Settings
from core.sql import make_engine
from devices.contract import Reading, Topics
from devices.models import Bin, Site
from devices.registry import BinTags
from ingest.decode import decode
from security.models import ConsoleSession, User
from security.users import UserRole, create_user
from tests.api_process import ApiProcess
from tests.collection_helpers import open_manual
from tests.helpers import ADMIN_HEADERS

PASSWORD = "green bins 2026"
SITE_A = "jiazhou-shuian"
MANAGER = "li.manager"
ACTOR = "manager user li.manager (李经理)"


@dataclass
class Stack:
    settings: Settings
    engine: Any
    site_b: str
    bin_a: str
    bin_b: str

    def session(self) -> Session:
        return Session(self.engine)

    def client(self, base_url: str = "http://testserver", **headers: str) -> TestClient:
        return TestClient(
            create_app(self.settings), base_url, headers=headers, follow_redirects=False
        )


@pytest.fixture
def stack(settings: Settings, pilot_bins: dict[str, BinTags]) -> Iterator[Stack]:
    """The pilot fleet; a manager of the Jiazhou Shuian compound (嘉州水岸小区), a grid official;
    one reading of a bin of the compound stored in InfluxDB as ingest stores it."""
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    with Session(engine) as session:
        create_user(
            session,
            username=MANAGER,
            display_name="李经理",
            password=PASSWORD,
            role=UserRole.manager,
            now=now,
            site_ids=[SITE_A],
        )
        create_user(
            session,
            username="grid.xiaoba",
            display_name="",
            password=PASSWORD,
            role=UserRole.grid,
            now=now,
            area_id="xiaoba",
        )
        bin_a = session.scalars(
            select(Bin.id).where(Bin.site_id == SITE_A).order_by(Bin.id)
        ).first()
        site_b = session.scalars(select(Site.id).where(Site.id != SITE_A).order_by(Site.id)).first()
        bin_b = session.scalars(select(Bin.id).where(Bin.site_id == site_b)).first()
    assert bin_a and site_b and bin_b
    influx = InfluxClient(settings)
    influx.ensure_database(settings.raw_retention)
    ts_ms = int(now.timestamp() * 1000)
    payload = json.dumps({"ts": ts_ms, "fill_pct": 73.4, "battery_pct": 41.0}).encode()
    decoded = decode(
        f"{settings.topic_prefix}/bins/{bin_a}/telemetry",
        payload,
        ts_ms + 250,
        topics=Topics(settings.topic_prefix),
        tags_of={
            bin_id: tag_set(dataclasses.asdict(tags)) for bin_id, tags in pilot_bins.items()
        }.get,
        max_payload=65536,
    )
    assert not decoded.rejections, decoded.rejections
    influx.write(decoded.lines)
    yield Stack(settings, engine, site_b, bin_a, bin_b)
    influx.query(f"DROP DATABASE {quote_ident(settings.influx.db)}", database=False)
    influx.close()
    engine.dispose()


def add_city_admin(session: Session) -> None:
    """`city.admin`, an admin with the tests' PASSWORD."""
    create_user(session, username="city.admin", display_name="", password=PASSWORD,
                role=UserRole.admin, now=datetime.now(UTC))  # fmt: skip


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token in the page"
    return found.group(1)


def _login(client: TestClient, username: str = MANAGER, password: str = PASSWORD) -> httpx.Response:
    form = client.get("/console/login")
    assert form.status_code == 200
    return client.post(
        "/console/login",
        data={"username": username, "password": password, "csrf": _csrf(form.text)},
    )


def _problem(page: str) -> str:
    found = re.search(r'class="problem" role="alert">([^<]*)<', page)
    assert found, page
    return found.group(1)


def test_a_manager_logs_in_sees_their_site_and_logs_out(stack: Stack) -> None:
    with stack.client() as client:
        assert client.get("/console").headers["location"] == "/console/login"
        answer = _login(client)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console"
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("binwatch_session=")
        )
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Path=/console" in cookie
        assert "Secure" not in cookie  # BINWATCH_CONSOLE_SECURE_COOKIE is off in the tests
        sites = client.get("/console")
        assert sites.status_code == 200
        assert "嘉州水岸小区" in sites.text
        assert "我的站点" in sites.text  # Chinese: the user's locale
        assert sites.text.count('href="/console/sites/') == 1
        token = client.cookies["binwatch_session"]

        out = client.post("/console/logout", data={"csrf": _csrf(sites.text)})
        assert out.status_code == 303
        assert out.headers["location"] == "/console/login"
    with stack.client() as replay:  # the old cookie is worth nothing now
        replay.cookies.set("binwatch_session", token, path="/console")
        assert replay.get("/console").status_code == 303
        live = replay.get(f"/console/sites/{SITE_A}/live", headers={"HX-Request": "true"})
        assert live.status_code == 204  # htmx loads the login page instead of swapping it in
        assert live.headers["hx-redirect"] == "/console/login"


@pytest.mark.registry_backends(
    "sqlite",
    reason="what the page, cookie or log says; the logins, sessions and queries behind it run on both above",
)
def test_secure_cookies_behind_https(stack: Stack) -> None:
    stack.settings = stack.settings.model_copy(update={"console_secure_cookie": True})
    with stack.client("https://testserver") as client:
        answer = _login(client)
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("binwatch_session=")
        )
        assert "Secure" in cookie


@pytest.mark.registry_backends(
    "sqlite",
    reason="what the page, cookie or log says; the logins, sessions and queries behind it run on both above",
)
@pytest.mark.parametrize(
    ("language", "message"),
    [("en-US,en;q=0.9", "Wrong user name or password."), ("zh-CN", "用户名或密码错误。")],
)
def test_a_wrong_password_or_an_unknown_user_get_the_same_answer(
    stack: Stack, language: str, message: str
) -> None:
    with stack.client(**{"Accept-Language": language}) as client:
        wrong = _login(client, password=PASSWORD + "!")
        unknown = _login(client, username="nobody")
        huge = _login(client, password="x" * 5000)
        assert wrong.status_code == unknown.status_code == huge.status_code == 401
        assert _problem(wrong.text) == _problem(unknown.text) == _problem(huge.text) == message
        assert "binwatch_session" not in client.cookies


def test_an_account_locks_after_failed_logins_with_a_clear_429(stack: Stack) -> None:
    stack.settings = stack.settings.model_copy(update={"console_account_failures": 3})
    with stack.client(**{"Accept-Language": "en"}) as client:
        for _ in range(3):
            assert _login(client, password="wrong password").status_code == 401
        locked = _login(client)  # the right password, too late
        assert locked.status_code == 429
        assert _problem(locked.text) == "Too many failed logins. Try again in 15 minutes."
        assert 0 < int(locked.headers["retry-after"]) <= 900
        assert _login(client, username="grid.xiaoba").status_code == 303  # another account


def test_an_address_locks_across_accounts(stack: Stack) -> None:
    stack.settings = stack.settings.model_copy(update={"console_address_failures": 4})
    with stack.client() as client:
        for n in range(4):
            assert (
                _login(client, username=f"guess{n}", password="wrong password").status_code == 401
            )
        locked = _login(client)
        assert locked.status_code == 429
        assert "登录失败次数过多" in _problem(locked.text)


@pytest.mark.registry_backends(
    "sqlite",
    reason="what the page, cookie or log says; the logins, sessions and queries behind it run on both above",
)
def test_forms_without_the_sessions_csrf_token_are_refused(stack: Stack) -> None:
    with stack.client(**{"Accept-Language": "en"}) as client:
        form = client.get("/console/login")
        no_token = client.post("/console/login", data={"username": MANAGER, "password": PASSWORD})
        assert no_token.status_code == 403
        assert _problem(no_token.text) == "The login form expired. Please try again."
        assert _login(client).status_code == 303
        page = client.get(f"/console/sites/{SITE_A}")
        for csrf in ("", _csrf(form.text), _csrf(page.text)[:-2]):
            refused = client.post(
                f"/console/sites/{SITE_A}/collections",
                data={"bin_id": stack.bin_a, "note": "forged", "csrf": csrf},
            )
            assert refused.status_code == 403
            assert _problem(refused.text) == "表单已过期，请刷新页面后重试。"
        refused_logout = client.post("/console/logout", data={"csrf": "x"})
        assert refused_logout.status_code == 403
        assert client.get("/console").status_code == 200  # still logged in
    with stack.session() as session:
        assert session.scalars(select(CollectionRequest)).all() == []


@pytest.mark.parametrize(
    ("column", "ago"),
    [("last_seen_at", timedelta(minutes=31)), ("created_at", timedelta(hours=12, minutes=1))],
)
def test_sessions_end_when_idle_or_old(stack: Stack, column: str, ago: timedelta) -> None:
    with stack.client() as client:
        _login(client)
        assert client.get("/console").status_code == 200
        with stack.session() as session:
            session.execute(update(ConsoleSession).values({column: datetime.now(UTC) - ago}))
            session.commit()
        assert client.get("/console").headers["location"] == "/console/login"
        with stack.session() as session:
            assert session.scalars(select(ConsoleSession)).all() == []


def test_another_sites_page_is_the_same_404_as_a_missing_one(stack: Stack) -> None:
    with stack.client() as client:
        _login(client)
        other = client.get(f"/console/sites/{stack.site_b}")
        missing = client.get("/console/sites/no-such-site")
        assert other.status_code == missing.status_code == 404
        assert other.text == missing.text
        assert client.get(f"/console/sites/{stack.site_b}/live").status_code == 404
        page = client.get(f"/console/sites/{SITE_A}")
        outside = client.post(
            f"/console/sites/{stack.site_b}/collections",
            data={"bin_id": stack.bin_b, "note": "not mine", "csrf": _csrf(page.text)},
        )
        assert outside.status_code == 404
        foreign_bin = client.post(
            f"/console/sites/{SITE_A}/collections",
            data={"bin_id": stack.bin_b, "note": "not mine", "csrf": _csrf(page.text)},
        )
        assert foreign_bin.status_code == 422
    with stack.session() as session:
        assert session.scalars(select(CollectionRequest)).all() == []


def test_a_grid_official_starts_at_their_area_and_may_not_act_for_managers(stack: Stack) -> None:
    with stack.client(**{"Accept-Language": "en"}) as client:
        _login(client, username="grid.xiaoba")
        assert client.get("/console").headers["location"] == "/console/grid"
        assert client.get("/console/grid").headers["location"] == "/console/grid/xiaoba"
        page = client.get(f"/console/sites/{SITE_A}")  # a site of Xiaoba: readable
        assert page.status_code == 200 and "/collections" not in page.text
        refused = client.post(
            f"/console/sites/{SITE_A}/collections",
            data={"bin_id": stack.bin_a, "note": "x", "csrf": _csrf(page.text)},
        )
        assert refused.status_code == 403
        assert "您的角色无权查看此页面" in refused.text  # the user's locale: zh_CN


@pytest.mark.registry_backends(
    "sqlite",
    reason="what the page, cookie or log says; the logins, sessions and queries behind it run on both above",
)
def test_the_language_switch_keeps_the_users_choice_and_returns_only_to_console_pages(
    stack: Stack,
) -> None:
    with stack.client() as client:
        _login(client)
        page = client.get(f"/console/sites/{SITE_A}")
        assert '<html lang="zh-CN">' in page.text and ">English<" in page.text
        csrf = _csrf(page.text)
        switched = client.post(
            "/console/locale",
            data={"csrf": csrf, "locale": "en", "next": f"/console/sites/{SITE_A}"},
        )
        assert switched.headers["location"] == f"/console/sites/{SITE_A}"
        english = client.get(f"/console/sites/{SITE_A}")
        assert '<html lang="en">' in english.text and "Open collection requests" in english.text
        assert ">中文<" in english.text
        for elsewhere in (
            "https://evil.example/",
            "//evil.example",
            "/api/v1/sites",
            "/console/../x",
        ):
            back = client.post(
                "/console/locale", data={"csrf": csrf, "locale": "zh_CN", "next": elsewhere}
            )
            assert back.headers["location"] == "/console"
        bad = client.post("/console/locale", data={"csrf": csrf, "locale": "fr"})
        assert bad.status_code == 422 and _problem(bad.text) == "没有这种语言。"
        forged = client.post("/console/locale", data={"csrf": "x", "locale": "en"})
        assert forged.status_code == 403
    with stack.session() as session:
        assert session.get_one(User, MANAGER).locale == "zh_CN"  # the last valid choice


def test_the_site_page_shows_bins_in_local_time_with_the_stream_colours(stack: Stack) -> None:
    with stack.client() as client:
        _login(client)
        page = client.get(f"/console/sites/{SITE_A}")
        assert page.status_code == 200
        assert 'hx-trigger="every 3s"' in page.text
        assert "/console/static/htmx.min.js" in page.text
        for stream in ("可回收物", "有害垃圾", "厨余垃圾", "其他垃圾"):
            assert stream in page.text
        assert 'class="stream stream-kitchen"' in page.text
        assert "73%" in page.text and "41%" in page.text
        local = datetime.now(UTC).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
        assert f"{local:%Y}/{local.month}/{local.day}" in page.text
        live = client.get(f"/console/sites/{SITE_A}/live")
        assert live.status_code == 200
        assert live.text.startswith('<div id="live"')
        assert "<html" not in live.text
        assert client.get("/console/static/htmx.min.js").status_code == 200


def test_a_manager_requests_a_collection_and_sees_it(stack: Stack) -> None:
    with stack.client() as client:
        _login(client)
        page = client.get(f"/console/sites/{SITE_A}")
        form = {"bin_id": stack.bin_a, "note": "袋子堆在桶边", "csrf": _csrf(page.text)}
        made = client.post(f"/console/sites/{SITE_A}/collections", data=form)
        assert made.status_code == 303
        shown = client.get(made.headers["location"])
        assert "已申请清运" in shown.text
        assert "袋子堆在桶边" in shown.text
        assert "人工申请" in shown.text
        again = client.post(f"/console/sites/{SITE_A}/collections", data=form)
        assert again.status_code == 409
        assert _problem(again.text) == "这个垃圾桶已有待清运的申请。"
        empty = client.post(f"/console/sites/{SITE_A}/collections", data={**form, "note": " "})
        assert empty.status_code == 422
        assert _problem(empty.text) == "请填写给清运人员的备注。"
        long = client.post(
            f"/console/sites/{SITE_A}/collections", data={**form, "note": "长" * 1001}
        )
        assert long.status_code == 422
        assert _problem(long.text) == "备注太长：最多1000个字符。"
    with stack.session() as session:
        (request,) = session.scalars(select(CollectionRequest)).all()
        assert (request.bin_id, request.rule, request.reason) == (
            stack.bin_a,
            "manual",
            "袋子堆在桶边",
        )
        assert request.events[0].actor == ACTOR


def test_a_manager_acknowledges_an_alert_recorded_as_them(stack: Stack) -> None:
    with stack.session() as session:
        mine = alert_store.raise_alert(
            session, stack.bin_a, Finding(AlertType.tilt, True), now=datetime.now(UTC), prefix="t"
        )
        theirs = alert_store.raise_alert(
            session, stack.bin_b, Finding(AlertType.tilt, True), now=datetime.now(UTC), prefix="t"
        )
        session.commit()
        assert mine is not None and theirs is not None
        mine_id, theirs_id = mine.id, theirs.id
    with stack.client() as client:
        _login(client)
        page = client.get(f"/console/sites/{SITE_A}")
        assert "倾倒" in page.text
        csrf = _csrf(page.text)
        assert client.post(f"/console/alerts/{theirs_id}/ack", data={"csrf": csrf}).text == (
            client.post("/console/alerts/999999/ack", data={"csrf": csrf}).text
        )
        done = client.post(f"/console/alerts/{mine_id}/ack", data={"csrf": csrf})
        assert done.status_code == 303
        assert "告警已确认" in client.get(done.headers["location"]).text
        twice = client.post(f"/console/alerts/{mine_id}/ack", data={"csrf": csrf})
        assert twice.status_code == 409
    with stack.session() as session:
        acknowledged = session.get_one(Alert, mine_id)
        assert (acknowledged.state, acknowledged.acknowledged_by) == ("acknowledged", ACTOR)
        assert session.get_one(Alert, theirs_id).state == "active"


def test_a_requests_and_an_alerts_history_in_the_users_language_and_scope(stack: Stack) -> None:
    """Every event of a request (made by the manager, dispatched and escalated by the collector
    with a structured note) and of an alert (raised, acknowledged), in local time, with who did
    it, in Chinese; another site's request or alert is the same 404 as a missing one."""
    with stack.client() as client:
        _login(client)
        page = client.get(f"/console/sites/{SITE_A}")
        form = {"bin_id": stack.bin_a, "note": "桶盖坏了", "csrf": _csrf(page.text)}
        assert client.post(f"/console/sites/{SITE_A}/collections", data=form).status_code == 303
        now = datetime.now(UTC)
        with stack.session() as session:
            (mine,) = session.scalars(select(CollectionRequest)).all()
            collection_store.transition(
                session, mine.id, Status.dispatched, actor=COLLECTOR, now=now
            )
            note = Reason.of("escalation.community_unknown", level=1, area="xiaoba")
            assert collection_store.escalate(
                session, mine, level=1, now=now, actor=COLLECTOR, note=note
            )
            session.commit()
            raised = alert_store.raise_alert(
                session, stack.bin_a, Finding(AlertType.tilt, True), now=now, prefix="t"
            )
            session.commit()
            assert raised is not None
            mine_id, alert_id = mine.id, raised.id
        theirs_id = open_manual(stack.settings, stack.bin_b)
        assert f'href="/console/requests/{mine_id}"' in client.get(f"/console/sites/{SITE_A}").text
        history = client.get(f"/console/requests/{mine_id}")
        assert history.status_code == 200
        rows = re.findall(r"<tr>(.*?)</tr>", history.text.split("<tbody>")[1], re.S)
        assert len(rows) == 3, rows  # created, dispatched, escalated
        assert "等待派发" in rows[0] and "李经理" in rows[0] and "桶盖坏了" in rows[0]
        # who, in the reader's words: the person and their role, not the audit trail's codes
        assert "李经理（物业经理）" in rows[0] and "manager user" not in history.text
        assert "已派发给运营单位" in rows[1] and "binwatch 自动处理" in rows[1]
        # the area by its name (the note keeps its id)
        assert "第 1 级：肖坝社区（社区）未配置联系人" in rows[2] and "xiaoba" not in rows[2]
        local = now.astimezone(ZoneInfo(stack.settings.timezone)).strftime("%H:%M")
        assert local in rows[2]
        assert "level 1" not in history.text
        missing = client.get("/console/requests/999999")
        other = client.get(f"/console/requests/{theirs_id}")
        assert other.status_code == missing.status_code == 404 and other.text == missing.text
        csrf = _csrf(page.text)
        assert (
            client.post(f"/console/alerts/{alert_id}/ack", data={"csrf": csrf}).status_code == 303
        )
        alert_page = client.get(f"/console/alerts/{alert_id}").text
        rows = re.findall(r"<tr>(.*?)</tr>", alert_page.split("<tbody>")[1], re.S)
        assert (
            len(rows) == 2 and "已发出" in rows[0] and "已确认" in rows[1] and "李经理" in rows[1]
        )
        assert "binwatch 自动处理" in rows[0] and "alerter" not in alert_page  # who raised it
        assert client.get("/console/alerts/0").status_code == 422


def test_reasons_the_system_wrote_read_in_the_users_language(stack: Stack) -> None:
    """A threshold request's reason and an alert's detail, written by the rules, in Chinese on
    the Chinese console and in English on the English one; the English text stays stored for
    the API, and a row from before reasons were structured shows that text."""
    now = datetime.now(UTC)
    with stack.session() as session:
        threshold = collection_store.thresholds(session)[stack.bin_a]
    reading = Reading.model_validate({"ts": now, "fill_pct": 95.4, "battery_pct": 9.6})
    hook = ThresholdHook(stack.settings)  # the rule as ingest runs it
    try:
        hook([(stack.bin_a, reading)])
    finally:
        hook.close()
    findings, _memory = rules.on_reading(
        reading, rules.Memory(), stack.settings.alert, received_at=now, newest=True
    )
    (battery,) = [f for f in findings if f.kind is AlertType.battery_low]
    with stack.session() as session:
        alert = alert_store.raise_alert(session, stack.bin_a, battery, now=now, prefix="t")
        session.commit()
        assert alert is not None
        assert alert.detail == "battery 10 %"  # what the API and the audit read, as before
        (request,) = session.scalars(select(CollectionRequest)).all()
        assert request.reason == f"fill 95 % reached the threshold of {threshold:.0f} %"
    with stack.client() as client:
        _login(client)
        chinese = client.get(f"/console/sites/{SITE_A}/live").text
        assert f"满溢度 95% 已达到阈值 {threshold:.0f}%" in chinese
        assert "电量 10%" in chinese
        assert "reached the threshold" not in chinese and "battery" not in chinese
        csrf = _csrf(client.get(f"/console/sites/{SITE_A}").text)
        client.post("/console/locale", data={"csrf": csrf, "locale": "en"})
        english = client.get(f"/console/sites/{SITE_A}/live").text
        assert f"Fill level 95% reached the threshold of {threshold:.0f}%" in english
        assert "Battery at 10%" in english
        with stack.session() as session:  # as if raised before details were structured
            session.execute(update(Alert).values(detail_msg=None))
            session.commit()
        client.post("/console/locale", data={"csrf": csrf, "locale": "zh_CN"})
        assert "battery 10 %" in client.get(f"/console/sites/{SITE_A}/live").text


@pytest.mark.registry_backends(
    "sqlite",
    reason="what the page, cookie or log says; the logins, sessions and queries behind it run on both above",
)
def test_no_password_or_session_token_is_logged(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG), stack.client() as client:
        _login(client, password="a wrong password!")
        _login(client)
        token = client.cookies["binwatch_session"]
        client.get(f"/console/sites/{SITE_A}")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert caplog.records, "nothing was logged at all: the check would prove nothing"
    for secret in (PASSWORD, "a wrong password!", token, token.partition("_")[2]):
        assert secret not in logged


BROWSER = "/usr/bin/chromium"  # Debian's chromium (the Makefile installs it); never downloaded
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.mark.registry_backends(
    "sqlite",
    reason="the browser sees the same pages either way; the site page's queries and the request"
    " it makes run on both backends in the tests above",
)
def test_a_manager_on_a_360_px_phone_requests_a_collection_and_sees_it(
    stack: Stack, tmp_path: Path
) -> None:
    """In Debian's chromium against `binwatch api` as a real process: log in, open the site,
    see its bins, request a collection and see it; a request raised meanwhile through the API
    appears without a reload; no JavaScript error; nothing wider than the phone."""
    with stack.session() as session:
        bins = list(session.scalars(select(Bin.id).where(Bin.site_id == SITE_A).order_by(Bin.id)))
    other_bin = next(bin_id for bin_id in bins if bin_id != stack.bin_a)
    log = tmp_path / "api.log"
    errors: list[str] = []
    with ApiProcess(stack.settings, log) as api, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=BROWSER, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 360, "height": 780}, locale="zh-CN")
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{api.url}/console")
            assert page.url.endswith("/console/login")
            page.fill("input[name=username]", MANAGER)
            page.fill("input[name=password]", PASSWORD)
            page.click("form[action='/console/login'] button")
            page.click("text=嘉州水岸小区")
            page.wait_for_selector("table.bins")
            assert page.locator("table.bins tbody tr").count() == len(bins)
            assert "73%" in page.inner_text("table.bins")

            page.select_option("select[name=bin_id]", stack.bin_a)
            page.fill("textarea[name=note]", "袋子堆在桶边")
            page.click("form[action$='/collections'] button")
            page.wait_for_selector(".notice")
            assert "袋子堆在桶边" in page.inner_text(".requests")

            raised = httpx.post(
                f"{api.url}/api/v1/collections",
                json={"bin_id": other_bin, "reason": "从接口提出"},
                headers=ADMIN_HEADERS,
                timeout=10,
            )
            assert raised.status_code == 201, raised.text
            with page.expect_response(lambda r: r.url.endswith("/live"), timeout=10_000):
                pass
            page.wait_for_selector(f".requests li:has-text('{other_bin}')", timeout=10_000)

            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 360, f"the page is {width} px wide on a 360 px screen"
            shot = tmp_path / "console-360.png"
            page.screenshot(path=str(shot), full_page=True)

            page.click("button[name=locale]")  # to English, on the same page
            page.wait_for_selector("text=Open collection requests")
            assert page.url.endswith(f"/console/sites/{SITE_A}")
            page.set_viewport_size({"width": 1280, "height": 900})
            page.screenshot(path=str(tmp_path / "console-1280-en.png"), full_page=True)

            with stack.session() as session:  # the session ends (as `users disable` does)
                session.execute(delete(ConsoleSession))
                session.commit()
            page.wait_for_url("**/console/login", timeout=10_000)
            assert page.locator("input[name=password]").count() == 1
        finally:
            browser.close()
    assert errors == []
    served = log.read_text(encoding="utf-8", errors="replace")
    assert "/console/sites/" in served  # the access log is there, and shows no secret
    assert PASSWORD not in served and "binwatch_session" not in served
