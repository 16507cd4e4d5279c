"""One receiver that never answers must not hold up anyone else: with six dispatches queued
for it, another operator's dispatch is delivered at once, the collector's tick (MQTT, the other
steps) does not wait, at most `webhook_workers_per_destination` attempts hang on the stuck
receiver at a time, and each of them ends after the timeout and is retried later like any
unreachable receiver. Real HTTP servers on loopback, real Mosquitto and InfluxDB."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from alerts.models import AlertDelivery, BinHealth, SiteContact
from core.settings import Settings
from core.sql import make_engine
from devices.models import Operator
from devices.registry import BinTags
from tests.collection_helpers import open_manual, requests_of, running_alerter, running_collector
from tests.helpers import wait_for
from tests.test_webhooks import SECRET, Receiver

pytestmark = [
    pytest.mark.servers,
    pytest.mark.registry_backends(
        "sqlite",
        reason="lanes keep one slow receiver from holding up the others, in HTTP; the requests "
        "they carry run on both backends in test_webhooks.py",
    ),
]

# Generous bounds for a shared 2-core machine; the stuck receiver holds each POST far longer.
TICK_BOUND_S = 3.0
HEALTHY_BOUND_S = 3.0
TIMEOUT_S = 2.0


class StuckReceiver:
    """Reads each POST and never answers; counts the clients waiting on it at once (one that
    gives up closes its connection and is no longer counted)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.arrived = 0
        self.hanging = 0
        self.most_hanging = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.arrived += 1
                    receiver.hanging += 1
                    receiver.most_hanging = max(receiver.most_hanging, receiver.hanging)
                # Hang until the client gives up (closes) or the test ends.
                while not receiver.release.is_set():
                    readable, _, _ = select.select([self.connection], [], [], 0.05)
                    if readable and not self.connection.recv(1, socket.MSG_PEEK):
                        break
                with receiver.lock:
                    receiver.hanging -= 1

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stuck() -> Iterator[StuckReceiver]:
    server = StuckReceiver()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def healthy() -> Iterator[Receiver]:
    server = Receiver([200])
    try:
        yield server
    finally:
        server.close()


def _webhooks(settings: Settings, urls: dict[str, str]) -> None:
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        for operator_id, url in urls.items():
            session.execute(
                update(Operator)
                .where(Operator.id == operator_id)
                .values(webhook_url=url, webhook_secret=SECRET)
            )
        session.commit()
    engine.dispose()


def test_a_receiver_that_never_answers_delays_nobody_else(
    settings: Settings,
    pilot_bins: dict[str, BinTags],
    stuck: StuckReceiver,
    healthy: Receiver,
) -> None:
    settings = settings.model_copy(
        update={"webhook_timeout_s": TIMEOUT_S, "webhook_workers_per_destination": 2}
    )
    _webhooks(settings, {"op-lvyuan": stuck.url, "op-jiejing": healthy.url})
    slow_bins = [b for b, t in sorted(pilot_bins.items()) if t.operator == "op-lvyuan"][:6]
    [fast_bin] = [b for b, t in sorted(pilot_bins.items()) if t.operator == "op-jiejing"][:1]
    now = datetime.now(UTC).replace(microsecond=0)
    slow_ids = [open_manual(settings, b, now) for b in slow_bins]
    fast_id = open_manual(settings, fast_bin, now)
    with running_collector(settings) as collector:
        started = time.monotonic()
        collector.tick(now)
        tick_s = time.monotonic() - started
        wait_for(lambda: healthy.received, timeout=HEALTHY_BOUND_S, what="the healthy receiver")
        healthy_s = time.monotonic() - started
        wait_for(lambda: stuck.arrived == 2, timeout=5, what="two POSTs hanging")
        # A second tick while those hang: it neither waits nor sends anything twice.
        started = time.monotonic()
        collector.tick(now + timedelta(seconds=5))
        second_tick_s = time.monotonic() - started
        assert collector.webhooks.wait_idle(3 * TIMEOUT_S + 20)
    assert tick_s < TICK_BOUND_S, f"the tick took {tick_s:.1f} s"
    assert second_tick_s < TICK_BOUND_S, f"the second tick took {second_tick_s:.1f} s"
    assert healthy_s < HEALTHY_BOUND_S
    assert stuck.arrived == 6, "each slow dispatch was tried once, none twice"
    assert stuck.most_hanging == 2, "at most two attempts at once per receiver"
    requests = {r.id: r for r in requests_of(settings)}
    assert requests[fast_id].webhook_delivered_at == now
    assert requests[fast_id].published_at == now
    for request_id in slow_ids:
        slow = requests[request_id]
        assert slow.published_at == now, "MQTT went out in the same tick"
        assert slow.webhook_attempts == 1 and slow.webhook_delivered_at is None
        assert "unreachable: timed out" in (slow.dispatch_error or ""), slow.dispatch_error
        assert slow.webhook_next_at is not None


def test_an_alert_notice_to_a_stuck_receiver_delays_nobody_else(
    settings: Settings,
    pilot_bins: dict[str, BinTags],
    stuck: StuckReceiver,
    healthy: Receiver,
) -> None:
    """The alerter's notices go through the same lanes: the operator's receiver hangs, the
    property manager's is told at once and the tick does not wait."""
    settings = settings.model_copy(update={"webhook_timeout_s": TIMEOUT_S})
    bin_id = "sz-peoples-government-s1-kitchen"
    _webhooks(settings, {"op-lvyuan": stuck.url})
    now = datetime.now(UTC).replace(microsecond=0)
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        session.add(
            SiteContact(
                site_id=pilot_bins[bin_id].site,
                name="manager",
                webhook_url=healthy.url,
                webhook_secret=SECRET,
            )
        )
        session.add(BinHealth(bin_id=bin_id, last_seen_at=now - timedelta(hours=1)))
        session.commit()
    with running_alerter(settings) as alerter:
        started = time.monotonic()
        alerter.tick(now)  # raises `offline` and delivers its notices
        tick_s = time.monotonic() - started
        wait_for(lambda: healthy.received, timeout=HEALTHY_BOUND_S, what="the manager's notice")
        healthy_s = time.monotonic() - started
        wait_for(lambda: stuck.arrived == 1, timeout=5, what="the operator's notice hanging")
        assert alerter.deliverer.webhooks.wait_idle(TIMEOUT_S + 20)
    assert tick_s < TICK_BOUND_S, f"the tick took {tick_s:.1f} s"
    assert healthy_s < HEALTHY_BOUND_S
    with Session(engine) as session:
        hooks = {
            d.recipient: d
            for d in session.query(AlertDelivery).filter(AlertDelivery.channel == "webhook")
        }
    engine.dispose()
    assert hooks["manager"].done and hooks["manager"].delivered_at == now
    assert not hooks["operator"].done and hooks["operator"].attempts == 1
    assert "unreachable: timed out" in (hooks["operator"].error or "")
