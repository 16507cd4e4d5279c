"""Alerts and escalations reach people: a WeCom group robot, a DingTalk robot (signed) and e-mail
(STARTTLS and login), each a real server on loopback that checks the documented request and
answers like the real service (tests/notify_receivers.py), in Chinese or English with the
city's local time. Failures are retried only when the service says "busy", a dead receiver
delays nobody else, robot URLs obey the webhook address rules, and no key, secret or password
reaches a log or an error. Real Mosquitto, InfluxDB and registry (the alerter, the collector)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from alerts import store
from alerts.rules import AlertType, Finding, on_event
from api.main import create_app
from binwatch.cli import app
from collection.models import CollectionEvent
from core.reasons import Reason
from core.settings import Settings
from core.sql import make_engine
from devices.contract import Event
from devices.models import Area, Bin, ContactChannel, Notification, Site
from devices.registry import BinTags
from tests.collection_helpers import (
    open_manual,
    requests_of,
    running_alerter,
    running_collector,
    tick,
    tick_alerter,
)
from tests.helpers import ADMIN_HEADERS, wait_for
from tests.notify_receivers import (
    DingTalkReceiver,
    MailServer,
    WeComReceiver,
    make_certificate,
)
from tests.test_webhook_lanes import StuckReceiver

pytestmark = pytest.mark.servers

# What a failed attempt leaves is the same row on any registry: the alert and escalation tests
# run on both backends, these cases (each a few seconds of timeouts and retries) on SQLite.
sqlite_only = pytest.mark.registry_backends(
    "sqlite", reason="attempt outcomes are backend-independent; both run the alert and escalation"
)

BIN = "sz-peoples-government-s1-kitchen"
WECOM_KEY = "693a91f6-7aoc-4bc4-97a0-0ec2sifa5aaa"
DING_TOKEN = "50cb6e954c89afa14fb97754eafd886d"
DING_SECRET = "SEC5a3ecf88f2b3eb50db30ecfc00f53033ac909c99bf7f88"
MAIL_USER = "binwatch-notify"
MAIL_PASSWORD = "mail-pass-7c1f9e2b"
SECRETS = (WECOM_KEY, DING_TOKEN, DING_SECRET, MAIL_PASSWORD)
# 07:06 UTC is 15:06 in the pilot city (Asia/Shanghai, UTC+8).
NOW = datetime(2026, 12, 1, 7, 6, tzinfo=UTC)


@pytest.fixture(scope="module")
def mail_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailServer]:
    cert, key = make_certificate(tmp_path_factory.mktemp("smtp"))
    server = MailServer(cert=cert, user=MAIL_USER, password=MAIL_PASSWORD)
    server.start(key)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mail(mail_server: MailServer) -> MailServer:
    mail_server.received.clear()
    mail_server.envelopes.clear()
    mail_server.logins.clear()
    return mail_server


@pytest.fixture
def wecom() -> Iterator[WeComReceiver]:
    server = WeComReceiver(WECOM_KEY)
    yield server
    server.close()


@pytest.fixture
def dingtalk() -> Iterator[DingTalkReceiver]:
    server = DingTalkReceiver(DING_TOKEN, DING_SECRET)
    yield server
    server.close()


def _mail_settings(settings: Settings, mail: MailServer, **more: object) -> Settings:
    return settings.model_copy(
        update={
            "mail_host": "127.0.0.1",
            "mail_port": mail.port,
            "mail_starttls": True,
            "mail_ca_file": str(mail.cert),
            "mail_username": MAIL_USER,
            "mail_password": MAIL_PASSWORD,
            "mail_sender": "binwatch@leshan.example",
            **more,
        }
    )


def _places(settings: Settings) -> tuple[Site, str, str]:
    """The bin's site, its community and the community's street."""
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            site = session.get_one(Site, session.get_one(Bin, BIN).site_id)
            street = session.get_one(Area, site.community_id).parent_id
            assert street is not None
            session.expunge(site)
            return site, site.community_id, street
    finally:
        engine.dispose()


def _channel(settings: Settings, owner: str, owner_id: str, kind: str, **columns: str) -> None:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            columns.setdefault("locale", "zh_CN")
            session.add(ContactChannel(owner=owner, owner_id=owner_id, kind=kind, **columns))
            session.commit()
    finally:
        engine.dispose()


def _raise(
    settings: Settings,
    kind: AlertType,
    now: datetime,
    *,
    clear: bool = False,
    reason: Reason | None = None,
) -> int:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            if clear:
                alert = store.live_alert(session, BIN, kind)
                assert alert is not None
                store.clear(session, alert, now=now, note="over", prefix=settings.topic_prefix)
            else:
                found = store.raise_alert(
                    session,
                    BIN,
                    Finding(kind, True, reason),
                    now=now,
                    prefix=settings.topic_prefix,
                )
                assert found is not None
                alert = found
            session.commit()
            return alert.id
    finally:
        engine.dispose()


def _rows(settings: Settings) -> list[Notification]:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            return list(session.scalars(select(Notification).order_by(Notification.id)))
    finally:
        engine.dispose()


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    """Everything logged but the test's own SMTP server (whose debug log shows its AUTH)."""
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail."))


def _no_secret_in(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_an_alert_reaches_wecom_dingtalk_and_email_in_each_contacts_language(
    settings: Settings,
    pilot_bins: dict[str, BinTags],
    wecom: WeComReceiver,
    dingtalk: DingTalkReceiver,
    mail: MailServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = _mail_settings(settings, mail)
    site, community, street = _places(settings)
    _channel(settings, "site", site.id, "wecom", robot_url=wecom.url)
    _channel(
        settings, "area", community, "dingtalk", locale="en", robot_url=dingtalk.url,
        robot_secret=DING_SECRET,
    )  # fmt: skip
    _channel(
        settings, "area", street, "email", addresses="squad@leshan.example, duty@leshan.example"
    )

    # A fire (critical: manager, community and squad), its detail as the alert rule writes it.
    fire = on_event(
        Event.model_validate({"ts": NOW, "type": "fire", "detail": "烟雾"}), settings.timezone
    )
    alert_id = _raise(settings, AlertType.fire, NOW, reason=fire.reason)
    with running_alerter(settings) as alerter:
        tick_alerter(alerter, NOW)
        # The manager's group, in Chinese, local time (15:06, not 07:06 UTC).
        assert len(wecom.received) == 1 and not wecom.refused
        content = wecom.received[0]["markdown"]["content"]
        assert content.startswith(f"### 【紧急告警】{site.name}：火情")
        assert "开始时间：2026年12月1日 15:06" in content and "07:06" not in content
        # The detail in Chinese too, its time local, not the English stored for the API.
        assert "详情：火情，设备于 2026年12月1日 15:06 上报：烟雾" in content
        assert "reported" not in content
        # The community's DingTalk group asked for English; signed and timely, or refused.
        assert len(dingtalk.received) == 1 and not dingtalk.refused
        markdown = dingtalk.received[0]["markdown"]
        assert markdown["title"] == f"[Critical alert] {site.name}: fire"
        assert "Started: Dec 1, 2026, 3:06 PM" in markdown["text"]
        assert "Detail: fire reported at Dec 1, 2026, 3:06 PM: 烟雾" in markdown["text"]
        # The street's squad by e-mail, after STARTTLS and a login.
        assert mail.logins == [MAIL_USER] and len(mail.received) == 1
        message = mail.received[0]
        assert message["Subject"] == f"【紧急告警】{site.name}：火情"
        assert message["To"] == "squad@leshan.example, duty@leshan.example"
        assert sorted(mail.envelopes[0].rcpt_tos) == ["duty@leshan.example", "squad@leshan.example"]
        body = message.get_content()
        assert (
            "开始时间：2026年12月1日 15:06" in body
            and "详情：火情，设备于 2026年12月1日 15:06 上报：烟雾" in body
        )

        _raise(settings, AlertType.fire, NOW + timedelta(minutes=75), clear=True)
        tick_alerter(alerter, NOW + timedelta(minutes=75))
        cleared = wecom.received[1]["markdown"]["content"]
        assert cleared.startswith(f"### 【已解除】{site.name}：火情")
        assert "解除时间：2026年12月1日 16:21，持续 75分钟" in cleared
        assert (
            "Cleared: Dec 1, 2026, 4:21 PM, after 75 minutes"
            in dingtalk.received[1]["markdown"]["text"]
        )
        tick_alerter(alerter, NOW + timedelta(hours=3))  # delivered once: nothing more is sent
    assert (len(wecom.received), len(dingtalk.received), len(mail.received)) == (2, 2, 2)
    rows = _rows(settings)
    assert len(rows) == 6 and all(r.done and r.delivered_at and r.error is None for r in rows)
    # The API shows what reached whom, and no robot URL or secret.
    with TestClient(create_app(settings)) as client:
        answer = client.get(f"/api/v1/alerts/{alert_id}", headers=ADMIN_HEADERS)
    assert answer.status_code == 200
    told = [
        (n["notice"], n["recipient"], n["channel"], n["contact"], n["locale"], n["attempts"])
        for n in answer.json()["notifications"]
    ]
    assert told == [
        ("raised", "manager", "wecom", f"site {site.id}", "zh_CN", 1),
        ("raised", "community", "dingtalk", f"area {community}", "en", 1),
        ("raised", "squad", "email", f"area {street}", "zh_CN", 1),
        ("cleared", "manager", "wecom", f"site {site.id}", "zh_CN", 1),
        ("cleared", "community", "dingtalk", f"area {community}", "en", 1),
        ("cleared", "squad", "email", f"area {street}", "zh_CN", 1),
    ]
    _no_secret_in(answer.text)
    _no_secret_in(_logged(caplog))


@sqlite_only
def test_a_busy_robot_is_tried_again_and_a_refusal_is_final(
    settings: Settings,
    pilot_bins: dict[str, BinTags],
    dingtalk: DingTalkReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    first = 45009  # WeCom's "api freq out of limit": 20 messages a minute per robot
    busy = WeComReceiver(WECOM_KEY, errcodes=[first, 0])
    try:
        site, community, _street = _places(settings)
        _channel(settings, "site", site.id, "wecom", robot_url=busy.url)
        # A DingTalk robot configured with the wrong secret: DingTalk answers 310000.
        _channel(
            settings, "area", community, "dingtalk", robot_url=dingtalk.url,
            robot_secret="SECnot-the-robots-secret",
        )  # fmt: skip
        _raise(settings, AlertType.offline, NOW)  # major: manager and community
        with running_alerter(settings) as alerter:
            tick_alerter(alerter, NOW)
            wecom_row, ding_row = _rows(settings)
            assert not wecom_row.done and wecom_row.attempts == 1
            assert f"errcode {first}: scripted error" in (wecom_row.error or "")
            assert wecom_row.next_at == NOW + timedelta(seconds=30)
            assert ding_row.done and ding_row.delivered_at is None and ding_row.attempts == 1
            assert "errcode 310000: sign not match" in (ding_row.error or "")
            assert len(dingtalk.refused) == 1 and not dingtalk.received

            tick_alerter(alerter, NOW + timedelta(seconds=10))  # not due yet
            assert len(busy.received) == 1
            tick_alerter(alerter, NOW + timedelta(seconds=31))
            wecom_row, ding_row = _rows(settings)
            assert wecom_row.done and wecom_row.delivered_at is not None
            assert wecom_row.attempts == 2 and wecom_row.error is None
            assert len(busy.received) == 2 and len(dingtalk.refused) == 1  # a refusal: not again
    finally:
        busy.close()
    for row in _rows(settings):
        _no_secret_in(row.error or "")
    _no_secret_in(_logged(caplog))


def test_a_robots_answer_the_registry_cannot_hold_is_recorded_escaped_and_not_sent_again(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    """A robot's errmsg is JSON, whose escapes carry a lone surrogate (and a NUL), which no
    UTF-8 text holds: the attempt's error could not be stored, the step failed, and the message
    went to the chat group again at every tick. Now it is stored escaped, once."""
    refusing = WeComReceiver(WECOM_KEY, errcodes=[40058], errmsg="bad \ud800 and \x00 here")
    try:
        site, _community, _street = _places(settings)
        _channel(settings, "site", site.id, "wecom", robot_url=refusing.url)
        _raise(settings, AlertType.offline, NOW)
        with running_alerter(settings) as alerter:
            tick_alerter(alerter, NOW)
            tick_alerter(alerter, NOW + timedelta(minutes=5))
            (row,) = _rows(settings)
            assert alerter.failures == 0
        assert row.done and row.attempts == 1 and row.delivered_at is None
        assert "errcode 40058: bad \\ud800 and \\x00 here" in (row.error or ""), row.error
        assert len(refusing.received) == 1  # a refusal is final: not sent again
    finally:
        refusing.close()


@sqlite_only
def test_a_wrong_robot_key_or_mail_password_gives_up_and_names_no_secret(
    settings: Settings,
    pilot_bins: dict[str, BinTags],
    wecom: WeComReceiver,
    mail: MailServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = _mail_settings(settings, mail, mail_password="not-" + MAIL_PASSWORD)
    site, _community, _street = _places(settings)
    wrong = wecom.url.replace(WECOM_KEY, "0000-" + WECOM_KEY)  # a key WeCom does not know
    _channel(settings, "site", site.id, "wecom", robot_url=wrong)
    _channel(settings, "site", site.id, "email", addresses="manager@leshan.example")
    _raise(settings, AlertType.battery_low, NOW)  # minor: the manager only
    with running_alerter(settings) as alerter:
        tick_alerter(alerter, NOW)
    wecom_row, mail_row = _rows(settings)
    assert wecom_row.done and wecom_row.delivered_at is None
    assert wecom_row.error == (
        f"{wecom.base}/cgi-bin/webhook/send?… errcode 93000: invalid webhook url"
    )
    assert mail_row.done and mail_row.delivered_at is None and not mail.received, mail_row.error
    assert (mail_row.error or "").startswith(f"SMTP server 127.0.0.1:{mail.port} answered 535")
    for row in (wecom_row, mail_row):
        _no_secret_in(row.error or "")
        assert "0000-" not in (row.error or "")
    _no_secret_in(_logged(caplog))


@sqlite_only
def test_a_receiver_that_never_answers_delays_no_other_channel(
    settings: Settings,
    pilot_bins: dict[str, BinTags],
    dingtalk: DingTalkReceiver,
    mail: MailServer,
) -> None:
    settings = _mail_settings(settings, mail, webhook_timeout_s=2.0)
    stuck = StuckReceiver()
    try:
        site, community, street = _places(settings)
        _channel(settings, "site", site.id, "wecom", robot_url=stuck.url + "?key=" + WECOM_KEY)
        _channel(
            settings, "area", community, "dingtalk", robot_url=dingtalk.url,
            robot_secret=DING_SECRET,
        )  # fmt: skip
        _channel(settings, "area", street, "email", addresses="squad@leshan.example")
        _raise(settings, AlertType.fire, NOW)
        with running_alerter(settings) as alerter:
            alerter.tick(NOW)
            # DingTalk and e-mail arrive while the WeCom attempt still hangs.
            wait_for(
                lambda: len(dingtalk.received) == 1 and len(mail.received) == 1,
                timeout=10,
                what="the other channels delivered",
            )
            assert stuck.hanging == 1
            assert alerter.deliverer.webhooks.wait_idle(30)
            wecom_row = _rows(settings)[0]
            assert not wecom_row.done and wecom_row.attempts == 1  # timed out: tried again later
            assert (wecom_row.error or "").startswith(f"{stuck.url}?… unreachable")
            _no_secret_in(wecom_row.error or "")
    finally:
        stuck.close()


@sqlite_only
def test_a_line_break_in_a_name_or_an_address_writes_no_mail_header(
    settings: Settings, pilot_bins: dict[str, BinTags], mail: MailServer
) -> None:
    """A site's name is free text from the fleet file, and goes into the Subject. With a line
    break in it the e-mail package refused the header: the attempt raised, was never recorded,
    and was tried again every tick, never delivered. An address with one (a channel set by hand)
    did the same."""
    settings = _mail_settings(settings, mail)
    site, _community, street = _places(settings)
    forged = "Jiazhou\r\nBcc: intruder@evil.example\r\n\r\nforged body"
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            session.get_one(Site, site.id).name = forged
            session.commit()
    finally:
        engine.dispose()
    _channel(settings, "site", site.id, "email", addresses="manager@leshan.example")
    _channel(
        settings, "area", street, "email",
        addresses="squad@leshan.example\r\nBcc: intruder@evil.example",
    )  # fmt: skip
    _raise(settings, AlertType.fire, NOW)  # critical: the manager and the squad have e-mail
    with running_alerter(settings) as alerter:
        tick_alerter(alerter, NOW)
        tick_alerter(alerter, NOW + timedelta(minutes=1))
    delivered, refused = sorted(_rows(settings), key=lambda row: row.error is not None)
    assert delivered.done and delivered.delivered_at is not None and delivered.attempts == 1
    (message,) = mail.received
    assert message["Subject"] == "【紧急告警】Jiazhou Bcc: intruder@evil.example forged body：火情"
    assert message["Bcc"] is None and "intruder" not in str(message.keys())
    assert [envelope.rcpt_tos for envelope in mail.envelopes] == [["manager@leshan.example"]]
    # The address cannot be written as a header: final, said, not tried again.
    assert refused.done and refused.delivered_at is None and refused.attempts == 1
    assert "cannot write the e-mail's headers" in (refused.error or ""), refused.error


@sqlite_only
def test_a_line_break_in_what_a_bin_sent_forges_no_line_of_a_notification(
    settings: Settings, pilot_bins: dict[str, BinTags], wecom: WeComReceiver, mail: MailServer
) -> None:
    """An event's detail is the bin's own text (up to 1,000 characters). With line breaks it
    wrote lines of its own into the robot's markdown and the e-mail: a heading, a fact."""
    settings = _mail_settings(settings, mail)
    site, _community, street = _places(settings)
    _channel(settings, "site", site.id, "wecom", robot_url=wecom.url)
    _channel(settings, "area", street, "email", addresses="squad@leshan.example")
    detail = "smoke\n### 【已解除】all clear\r\n- 解除时间：不必出动"
    fire = on_event(
        Event.model_validate({"ts": NOW, "type": "fire", "detail": detail}), settings.timezone
    )
    _raise(settings, AlertType.fire, NOW, reason=fire.reason)
    with running_alerter(settings) as alerter:
        tick_alerter(alerter, NOW)
    content = wecom.received[0]["markdown"]["content"]
    assert [line[:2] for line in content.splitlines()] == ["##", "- ", "- ", "- ", "- "]
    assert "smoke ### 【已解除】all clear - 解除时间：不必出动" in content
    body = mail.received[0].get_content().splitlines()
    assert not any(line.startswith(("###", "- ", "解除时间")) for line in body), body


@sqlite_only
def test_robot_urls_obey_the_webhook_address_rules(
    settings: Settings,
    pilot_bins: dict[str, BinTags],
    wecom: WeComReceiver,
) -> None:
    settings = settings.model_copy(update={"webhook_allow_private": False})
    site, _community, _street = _places(settings)
    _channel(settings, "site", site.id, "wecom", robot_url=wecom.url)
    _raise(settings, AlertType.battery_low, NOW)
    with running_alerter(settings) as alerter:
        tick_alerter(alerter, NOW)
    row = _rows(settings)[0]
    assert row.done and not wecom.received
    assert (row.error or "").startswith("refused: ") and "plain http" in (row.error or "")
    _no_secret_in(row.error or "")


def test_an_escalation_reaches_the_areas_channels(
    settings: Settings,
    pilot_bins: dict[str, BinTags],
    wecom: WeComReceiver,
    mail: MailServer,
) -> None:
    settings = _mail_settings(settings, mail)
    site, community, _street = _places(settings)
    _channel(settings, "area", community, "wecom", locale="en", robot_url=wecom.url)
    _channel(settings, "area", community, "email", addresses="whistle@leshan.example")
    request_id = open_manual(settings, BIN, NOW)
    due = requests_of(settings)[0].due_at
    with running_collector(settings) as collector:
        tick(collector, due + timedelta(minutes=1))
    assert len(wecom.received) == 1 and len(mail.received) == 1
    content = wecom.received[0]["markdown"]["content"]
    assert content.startswith(f"### [Community whistle] {site.name}: kitchen bin not emptied")
    assert f"Request: #{request_id} (dispatched)" in content
    assert "Requested: Dec 1, 2026, 3:06 PM" in content  # local time, in English
    assert mail.received[0]["Subject"] == f"【社区吹哨】{site.name}：厨余垃圾桶超时未清运"
    assert "发起时间：2026年12月1日 15:06" in mail.received[0].get_content()
    engine = make_engine(settings.database_url)
    try:
        assert requests_of(settings)[0].escalation_level == 1
        escalation = next(e for e in _events(settings, request_id) if e.kind == "escalation")
        assert escalation.note == f"level 1: community {community}: wecom, email queued"
    finally:
        engine.dispose()


def _events(settings: Settings, request_id: int) -> list[CollectionEvent]:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            query = select(CollectionEvent).where(CollectionEvent.request_id == request_id)
            return list(session.scalars(query.order_by(CollectionEvent.id)))
    finally:
        engine.dispose()


@sqlite_only
def test_channels_are_set_from_stdin_and_listed_without_secrets(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    env = {
        "BINWATCH_DATABASE_URL": settings.database_url.get_secret_value(),
        "BINWATCH_WEBHOOK_ALLOW_PRIVATE": "false",
        "COLUMNS": "200",  # the table unabridged
    }
    site, community, _street = _places(settings)
    runner = CliRunner()
    url = f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={WECOM_KEY}"
    done = runner.invoke(
        app, ["channels", "set", "wecom", "--site", site.id], input=url + "\n", env=env
    )
    assert done.exit_code == 0, done.output
    ding = f"https://oapi.dingtalk.com/robot/send?access_token={DING_TOKEN}\n{DING_SECRET}\n"
    args = ["channels", "set", "dingtalk", "--area", community, "--locale", "en"]
    assert runner.invoke(app, args, input=ding, env=env).exit_code == 0
    args = [
        "channels",
        "set",
        "email",
        "--area",
        community,
        "--to",
        "a@leshan.example,b@leshan.example",
    ]
    assert runner.invoke(app, args, env=env).exit_code == 0
    # A robot URL the webhook rules refuse is refused here already.
    local = f"http://127.0.0.1:9/cgi-bin/webhook/send?key={WECOM_KEY}"
    refused = runner.invoke(
        app, ["channels", "set", "wecom", "--area", community], input=local, env=env
    )
    assert refused.exit_code == 1 and "plain http" in refused.output
    # An address with a line break or a space would write another header or another address.
    for odd in ("a@leshan.example\r\nBcc: x@evil.example", "a@leshan.example b@evil.example"):
        args = ["channels", "set", "email", "--area", community, "--to", odd]
        bad = runner.invoke(app, args, env=env)
        assert bad.exit_code == 1 and "holds a space or a control character" in bad.output
    listed = runner.invoke(app, ["channels", "list"], env=env)
    assert listed.exit_code == 0
    assert "qyapi.weixin.qq.com" in listed.output and "a@leshan.example" in listed.output
    for output in (done.output, listed.output, refused.output):
        _no_secret_in(output)
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            kept = {c.kind: c for c in session.scalars(select(ContactChannel))}
            assert kept["wecom"].robot_url == url
            assert kept["dingtalk"].robot_secret == DING_SECRET and kept["dingtalk"].locale == "en"
        removed = runner.invoke(app, ["channels", "remove", "wecom", "--site", site.id], env=env)
        assert removed.exit_code == 0, removed.output
        with Session(engine) as session:
            left = sorted(c.kind for c in session.scalars(select(ContactChannel)))
            assert left == ["dingtalk", "email"]
    finally:
        engine.dispose()
