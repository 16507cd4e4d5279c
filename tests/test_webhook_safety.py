"""What a webhook may reach and how it is signed: https to public addresses only unless allowed
(judged on the address connected to, redirects not followed), the issue's SSRF against the
real InfluxDB refused, nothing POSTed unsigned, and the receiver's check that docs/collection.md
shows, run as written against a real delivery."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from core.influx import InfluxClient
from core.settings import Settings
from core.sql import make_engine
from core.webhook_targets import address_problem, url_problem
from core.webhooks import SIGNATURE_HEADER, WebhookSender, verify
from devices.models import AreaContact, Operator
from devices.registry import BinTags
from tests.collection_helpers import open_manual, requests_of, running_collector, tick
from tests.test_webhooks import BIN, SECRET, Receiver, _escalation_setup, _escalations

DOCS = Path(__file__).resolve().parent.parent / "docs" / "collection.md"


@pytest.fixture
def healthy() -> Iterator[Receiver]:
    server = Receiver([200])
    try:
        yield server
    finally:
        server.close()


# --- where a webhook may go --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",  # plain http
        "https://localhost/x",
        "https://api.localhost/x",
        "https://127.0.0.1:8086/query?q=CREATE+DATABASE+x",
        "https://10.1.2.3/x",
        "https://192.168.0.9/x",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "https://0.0.0.0/x",
        "https://203.0.113.7:8443/x",  # documentation range (TEST-NET-3)
        "https://user:pw@hooks.example.com/x",
        "ftp://hooks.example.com/x",
        "https:///x",
    ],
)
def test_urls_refused_by_default(url: str) -> None:
    assert url_problem(url, allow_private=False) is not None


def test_https_to_a_public_name_or_address_passes() -> None:
    assert url_problem("https://hooks.example.com/binwatch", allow_private=False) is None
    assert url_problem("https://8.8.8.8/x", allow_private=False) is None


def test_allowing_private_opens_http_and_loopback_but_not_nonsense() -> None:
    assert url_problem("http://127.0.0.1:9/x", allow_private=True) is None
    assert url_problem("ftp://127.0.0.1/x", allow_private=True) is not None
    assert url_problem("http://u:p@127.0.0.1/x", allow_private=True) is not None
    # What httpx cannot send to (the sender refuses it per attempt): said before any attempt.
    for unsendable in ("http://a..b/x", f"http://{'a' * 64}.example/x", "http://h.example/\x01"):
        assert url_problem(unsendable, allow_private=True) is not None, unsendable


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1", "169.254.169.254",
     "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:10.0.0.1",
     # IPv6 carrying a private IPv4 address, which Python calls global: NAT64 (a DNS64
     # network's gateway translates it: the cloud's metadata), 6to4, IPv4-compatible, SIIT;
     # and NAT64's local-use prefix, where the network chooses where the IPv4 address sits.
     "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "2002:a9fe:a9fe::1", "2002:7f00:1::1",
     "::127.0.0.1", "::ffff:0:a00:1", "64:ff9b:1::808:808"],
)  # fmt: skip
def test_non_public_addresses_are_refused(address: str) -> None:
    assert "is not a public address" in (address_problem(address, allow_private=False) or "")
    assert address_problem(address, allow_private=True) is None


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8"])
def test_ipv6_carrying_a_public_ipv4_address_passes(address: str) -> None:
    """An IPv6-only host reaches public IPv4 receivers through NAT64: that stays allowed."""
    assert address_problem(address, allow_private=False) is None


def test_a_name_resolving_to_loopback_is_refused_when_connecting(healthy: Receiver) -> None:
    """This machine's own name passes the URL check (it is no address literal, not
    `localhost`), resolves to a non-public address, and is refused on that address."""
    name = socket.gethostname()
    resolved = {info[4][0] for info in socket.getaddrinfo(name, None)}
    assert all(address_problem(str(a), allow_private=False) for a in resolved), resolved
    port = healthy.url.rsplit(":", 1)[1]
    url = f"https://{name}:{port}"
    assert url_problem(url, allow_private=False) is None
    sender = WebhookSender(Settings(webhook_allow_private=False))
    try:
        outcome = sender.post(url, b"{}", secret=SECRET, event="test")
    finally:
        sender.close()
    assert not outcome.delivered and not outcome.retryable
    assert (outcome.error or "").startswith(f"refused: {name} refused: ")
    assert "is not a public address" in (outcome.error or "")
    assert healthy.received == []


def test_redirects_are_not_followed(healthy: Receiver) -> None:
    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", healthy.url)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sender = WebhookSender(Settings(webhook_allow_private=True))
    try:
        outcome = sender.post(
            f"http://127.0.0.1:{server.server_address[1]}/", b"{}", secret=SECRET, event="test"
        )
    finally:
        sender.close()
        server.shutdown()
        server.server_close()
    assert not outcome.delivered and not outcome.retryable
    assert "answered 307" in (outcome.error or "")
    assert healthy.received == []


def test_an_endless_answer_is_not_downloaded() -> None:
    """A receiver refusing with a body that never ends: the error keeps its start and the
    attempt ends at once, instead of reading until memory or the timeout runs out."""

    class Endless(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(500)
            self.end_headers()
            deadline = time.monotonic() + 20
            try:
                while time.monotonic() < deadline:
                    self.wfile.write(b"x" * 65536)
            except OSError:
                pass  # the client hung up: what we want

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sender = WebhookSender(Settings(webhook_allow_private=True))
    started = time.monotonic()
    try:
        outcome = sender.post(
            f"http://127.0.0.1:{server.server_address[1]}/", b"{}", secret=SECRET, event="t"
        )
    finally:
        sender.close()
        server.shutdown()
        server.server_close()
    assert time.monotonic() - started < 5
    assert not outcome.delivered and outcome.retryable
    assert (outcome.error or "").endswith("answered 500: " + "x" * 200)


def test_unsigned_posts_are_refused_by_the_sender() -> None:
    sender = WebhookSender(Settings(webhook_allow_private=True))
    try:
        with pytest.raises(ValueError, match="never sent unsigned"):
            sender.post("http://127.0.0.1:9/", b"{}", secret="", event="test")
    finally:
        sender.close()


def _operator_webhook(settings: Settings, url: str, secret: str | None) -> None:
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        session.execute(
            update(Operator)
            .where(Operator.id == "op-lvyuan")
            .values(webhook_url=url, webhook_secret=secret)
        )
        session.commit()
    engine.dispose()


def _databases(settings: Settings) -> set[str]:
    influx = InfluxClient(settings)
    try:
        return {row[0] for s in influx.query("SHOW DATABASES") for row in s.values}
    finally:
        influx.close()


@pytest.mark.servers
def test_the_issues_ssrf_against_influxdb_is_refused(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    """The operator's webhook_url aims at our own InfluxDB's /query: with the default setting
    the collector refuses it (over http, and over https to a loopback address), gives up at
    once and says why; no database is created. The same POST with the setting on does create
    it, so the check above could see the attack succeed."""
    settings = settings.model_copy(update={"webhook_allow_private": False})
    victim = f"ssrf_{int(time.time() * 1000)}"
    attack = f"{settings.influx.url}/query?q={quote(f'CREATE DATABASE {victim}')}"
    now = datetime.now(UTC)
    bins = [b for b in pilot_bins if b.startswith("sz-peoples-government-s1-")][:2]
    for url, bin_id in zip((attack, attack.replace("http://", "https://")), bins, strict=True):
        _operator_webhook(settings, url, SECRET)
        request_id = open_manual(settings, bin_id, now)
        with running_collector(settings) as collector:
            tick(collector, now)
        [request] = [r for r in requests_of(settings) if r.id == request_id]
        assert (request.dispatch_error or "").startswith("webhook: gave up after 1 attempt(s): ")
        assert "refused: " in (request.dispatch_error or "")
        assert victim not in _databases(settings)
    sender = WebhookSender(settings.model_copy(update={"webhook_allow_private": True}))
    try:
        sender.post(attack, b"{}", secret=SECRET, event="test")
    finally:
        sender.close()
    assert victim in _databases(settings)


# --- nothing unsigned ------------------------------------------------------------------------


@pytest.mark.servers
def test_a_dispatch_webhook_without_a_secret_waits_for_one(
    settings: Settings, pilot_bins: dict[str, BinTags], healthy: Receiver
) -> None:
    _operator_webhook(settings, healthy.url, None)
    now = datetime.now(UTC)
    open_manual(settings, BIN, now)
    with running_collector(settings) as collector:
        for minutes in (0, 1, 60):
            tick(collector, now + timedelta(minutes=minutes))
        assert healthy.received == []
        [request] = requests_of(settings)
        assert request.webhook_attempts == 0
        assert request.dispatch_error == (
            "webhook waits: operator op-lvyuan has no webhook secret yet, and webhooks are never "
            "sent unsigned (binwatch fleet webhook-secret --operator op-lvyuan)"
        )
        _operator_webhook(settings, healthy.url, SECRET)
        tick(collector, now + timedelta(minutes=61))
    [(body, signature)] = healthy.received
    assert verify(body, SECRET, signature, now=time.time())
    [request] = requests_of(settings)
    assert request.webhook_attempts == 1 and request.webhook_delivered_at is not None


@pytest.mark.servers
def test_an_escalation_webhook_without_a_secret_waits_for_one(
    settings: Settings, pilot_bins: dict[str, BinTags], healthy: Receiver
) -> None:
    request_id, due = _escalation_setup(settings, healthy.url)
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        session.execute(update(AreaContact).values(webhook_secret=None))
        session.commit()
    with running_collector(settings) as collector:
        tick(collector, due)
        tick(collector, due + timedelta(minutes=5))
        assert healthy.received == []
        [waiting] = _escalations(settings, request_id)
        assert waiting["webhook_attempts"] == 0
        assert waiting["note"] == (
            "level 1: community xiaoba: webhook waits: area xiaoba has no webhook secret yet, "
            "and webhooks are never sent unsigned (binwatch fleet webhook-secret --area xiaoba)"
        )
        with Session(engine) as session:
            session.execute(update(AreaContact).values(webhook_secret=SECRET))
            session.commit()
        tick(collector, due + timedelta(minutes=6))
    engine.dispose()
    [(body, signature)] = healthy.received
    assert verify(body, SECRET, signature, now=time.time())
    [delivered] = _escalations(settings, request_id)
    assert delivered["note"] == "level 1: community xiaoba: webhook delivered"


# --- the receiver's check, as documented -----------------------------------------------------


def _documented_check() -> Any:
    """The Python block under "**Signature.**" in docs/collection.md, executed as written."""
    text = DOCS.read_text()
    section = text[text.index("**Signature.**") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "docs/collection.md lost its verification snippet"
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), str(DOCS), "exec"), namespace)  # our own docs, as written
    return namespace["binwatch_signature_ok"]


def test_the_documented_check_accepts_a_real_delivery_and_refuses_replays(
    healthy: Receiver,
) -> None:
    check = _documented_check()
    sender = WebhookSender(Settings(webhook_allow_private=True))
    try:
        assert sender.post(healthy.url, b'{"request_id": 7}', secret=SECRET, event="t").delivered
    finally:
        sender.close()
    [(body, header)] = healthy.received
    assert header is not None and re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    assert check(body, header, SECRET)
    assert not check(body + b" ", header, SECRET)  # altered body
    assert not check(body, header, "another secret")
    stamp = int(header.split(",")[0][2:])
    assert not check(body, header, SECRET, now=stamp + 301)  # replayed later
    assert check(body, header, SECRET, now=stamp + 299)
    retimed = header.replace(f"t={stamp}", f"t={stamp + 60}")
    assert not check(body, retimed, SECRET, now=stamp + 60)  # the MAC covers the timestamp
    assert SIGNATURE_HEADER == "X-Binwatch-Signature"
