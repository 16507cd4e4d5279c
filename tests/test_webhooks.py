"""Webhook delivery of dispatches and escalations against a local HTTP receiver: the signature
verifies, 5xx answers are retried with backoff on the collector's clock, and giving up shows on
the request (dispatch) or on the escalation event (escalation)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.main import create_app
from collection.lifecycle import Status
from collection.models import CollectionEvent, CollectionRequest
from core.settings import Settings
from core.sql import make_engine
from core.webhooks import (
    SIGNATURE_HEADER,
    TOLERANCE_S,
    WebhookSender,
    retry_delay,
    sign,
    verify,
)
from devices.messages import Dispatch, Escalation
from devices.models import AreaContact, Operator
from devices.registry import BinTags
from tests.collection_helpers import open_manual, requests_of, running_collector, tick
from tests.helpers import ADMIN_HEADERS

SECRET = "s3cret"
BIN = "sz-peoples-government-s1-kitchen"


class Receiver:
    """An HTTP server answering with the scripted statuses in turn (the last one repeats)."""

    def __init__(self, statuses: list[int], answer: bytes = b"busy") -> None:
        self.statuses = statuses
        self.received: list[tuple[bytes, str | None]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((body, self.headers.get(SIGNATURE_HEADER)))
                index = min(len(receiver.received), len(receiver.statuses)) - 1
                self.send_response(receiver.statuses[index])
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    server = Receiver(request.param)
    try:
        yield server
    finally:
        server.close()


def _point_operator_at(settings: Settings, url: str) -> None:
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        session.execute(
            update(Operator)
            .where(Operator.id == "op-lvyuan")
            .values(webhook_url=url, webhook_secret=SECRET)
        )
        session.commit()
    engine.dispose()


def test_signature_round_trip_and_replay() -> None:
    body = b'{"a": 1}'
    t = 1_700_000_000
    header = sign(body, SECRET, t)
    assert re.fullmatch(r"t=1700000000,v1=[0-9a-f]{64}", header)
    assert verify(body, SECRET, header, now=t + 10)
    assert not verify(body + b" ", SECRET, header, now=t)
    assert not verify(body, "other", header, now=t)
    assert not verify(body, SECRET, None, now=t)
    # A captured POST replayed later is refused, and so is its MAC under another timestamp.
    assert not verify(body, SECRET, header, now=t + TOLERANCE_S + 1)
    forged = header.replace(f"t={t}", f"t={t + 600}")
    assert not verify(body, SECRET, forged, now=t + 600)


def test_backoff_doubles_and_is_capped() -> None:
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]
    assert retry_delay(50) == timedelta(hours=1)


def test_unreachable_receiver_is_retryable() -> None:
    sender = WebhookSender(Settings(webhook_allow_private=True))
    outcome = sender.post("http://127.0.0.1:9/nothing", b"{}", secret=SECRET, event="test")
    sender.close()
    assert not outcome.delivered and outcome.retryable
    assert "unreachable" in (outcome.error or "")


@pytest.mark.servers
@pytest.mark.parametrize("receiver", [[500, 503, 204]], indirect=True)
def test_retries_on_5xx_until_delivered(
    settings: Settings, pilot_bins: dict[str, BinTags], receiver: Receiver
) -> None:
    _point_operator_at(settings, receiver.url)
    now = datetime.now(UTC)
    request_id = open_manual(settings, BIN, now)
    with running_collector(settings) as collector:
        tick(collector, now)
        assert len(receiver.received) == 1
        tick(collector, now + timedelta(seconds=29))  # the first retry waits 30 s
        assert len(receiver.received) == 1
        tick(collector, now + timedelta(seconds=30))
        assert len(receiver.received) == 2
        tick(collector, now + timedelta(seconds=30 + 60))
        assert len(receiver.received) == 3
        tick(collector, now + timedelta(hours=1))  # delivered: never again
    assert len(receiver.received) == 3
    for body, signature in receiver.received:
        assert verify(body, SECRET, signature, now=time.time())
        assert Dispatch.model_validate_json(body).request_id == request_id
    [request] = requests_of(settings)
    assert request.webhook_attempts == 3
    assert request.webhook_delivered_at == now + timedelta(seconds=90)


@pytest.mark.servers
@pytest.mark.parametrize("receiver", [[500]], indirect=True)
def test_gives_up_visibly(
    settings: Settings, pilot_bins: dict[str, BinTags], receiver: Receiver
) -> None:
    settings = settings.model_copy(update={"collection_webhook_attempts": 3})
    _point_operator_at(settings, receiver.url)
    now = datetime.now(UTC)
    request_id = open_manual(settings, BIN, now)
    with running_collector(settings) as collector:
        for minutes in (0, 1, 2, 10, 60):
            tick(collector, now + timedelta(minutes=minutes))
    assert len(receiver.received) == 3
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as client:
        delivery = client.get(f"/api/v1/collections/{request_id}").json()["delivery"]
    assert delivery["webhook_attempts"] == 3
    assert delivery["webhook_delivered_at"] is None
    assert delivery["error"].startswith("webhook: gave up after 3 attempt(s): ")
    assert "answered 500" in delivery["error"]
    assert delivery["published_at"] is not None  # MQTT got it regardless


@pytest.mark.servers
@pytest.mark.parametrize("receiver", [[404]], indirect=True)
def test_a_refusing_receiver_is_not_retried(
    settings: Settings, pilot_bins: dict[str, BinTags], receiver: Receiver
) -> None:
    _point_operator_at(settings, receiver.url)
    now = datetime.now(UTC)
    open_manual(settings, BIN, now)
    with running_collector(settings) as collector:
        tick(collector, now)
        tick(collector, now + timedelta(hours=2))
    assert len(receiver.received) == 1
    [request] = requests_of(settings)
    assert (request.dispatch_error or "").startswith("webhook: gave up after 1 attempt(s)")


def test_a_receivers_answer_holding_a_nul_is_recorded_and_not_retried(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    """An error quotes the receiver's answer, and lands in a text column. A NUL in the answer
    (the operator's server, or a chat robot service, is outside binwatch) failed that write
    on PostgreSQL: the attempt was never recorded, so a refusal was POSTed again every tick."""
    receiver = Receiver([400], answer=b"bad request\x00 \x1b[2J")
    try:
        _point_operator_at(settings, receiver.url)
        now = datetime.now(UTC)
        open_manual(settings, BIN, now)
        with running_collector(settings) as collector:
            for minutes in (0, 1, 5, 30):
                tick(collector, now + timedelta(minutes=minutes))
    finally:
        receiver.close()
    assert len(receiver.received) == 1
    [request] = requests_of(settings)
    assert "answered 400: bad request\\x00 \\x1b[2J" in (request.dispatch_error or ""), (
        request.dispatch_error
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://a..b/hook",  # an empty label: IDNA cannot encode the host (UnicodeError)
        "http://" + "a" * 64 + ".example/hook",  # a label over 63 characters
        "http://xn--/hook",  # an A-label with nothing in it (idna.IDNAError)
        "http://127.0.0.1:9/hook?\x01",  # a control character (httpx.InvalidURL)
    ],
)
def test_a_url_that_cannot_be_called_gives_up_once_saying_why(
    settings: Settings, pilot_bins: dict[str, BinTags], url: str
) -> None:
    """The address check passed these (it looked at the scheme, the host and its address),
    and the POST raised instead of answering an outcome: the attempt was never recorded and
    was made again on every tick, never giving up, the request showing nothing. Now the check
    refuses what it can tell (a fleet file then says so with its line), the sender the rest."""
    _point_operator_at(settings, url)
    now = datetime.now(UTC)
    open_manual(settings, BIN, now)
    with running_collector(settings) as collector:
        for minutes in (0, 1, 5):
            tick(collector, now + timedelta(minutes=minutes))
    [request] = requests_of(settings)
    assert request.webhook_attempts == settings.collection.webhook_attempts  # none are left
    assert (request.dispatch_error or "").startswith(
        "webhook: gave up after 1 attempt(s): refused:"
    )


# --- escalation webhooks ---------------------------------------------------------------------


def _escalation_setup(settings: Settings, url: str, *, mqtt: bool = False) -> tuple[int, datetime]:
    """The kitchen bin's community (xiaoba) with a webhook (and an MQTT topic), a request for
    that bin made a day ago; returns the request and its deadline (level 1 escalates then)."""
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        topic = f"{settings.topic_prefix}/grid/xiaoba" if mqtt else None
        session.add(
            AreaContact(area_id="xiaoba", mqtt_topic=topic, webhook_url=url, webhook_secret=SECRET)
        )
        session.commit()
    engine.dispose()
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    return open_manual(settings, BIN, t0), t0 + timedelta(hours=12)


def _escalations(settings: Settings, request_id: int) -> list[dict[str, Any]]:
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as client:
        response = client.get(f"/api/v1/collections/{request_id}")
    assert response.status_code == 200
    escalations: list[dict[str, Any]] = response.json()["escalations"]
    return escalations


def _set_status(settings: Settings, request_id: int, status: Status) -> None:
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        session.execute(
            update(CollectionRequest)
            .where(CollectionRequest.id == request_id)
            .values(status=status.value)
        )
        session.commit()
    engine.dispose()


@pytest.mark.servers
@pytest.mark.parametrize("receiver", [[500, 500, 200]], indirect=True)
def test_escalation_webhook_is_retried_until_delivered(
    settings: Settings, pilot_bins: dict[str, BinTags], receiver: Receiver
) -> None:
    request_id, due = _escalation_setup(settings, receiver.url, mqtt=True)
    with running_collector(settings) as collector:
        tick(collector, due)
        assert len(receiver.received) == 1
        # The crew acknowledges meanwhile: the retries still send the body of the first attempt.
        _set_status(settings, request_id, Status.acknowledged)
        [pending] = _escalations(settings, request_id)
        assert pending["webhook_attempts"] == 1
        assert pending["webhook_delivered_at"] is None
        assert pending["webhook_next_at"].startswith(
            (due + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S")
        )
        assert "webhook attempt 1 failed: " in pending["note"]
        tick(collector, due + timedelta(seconds=29))  # the first retry waits 30 s
        assert len(receiver.received) == 1
        tick(collector, due + timedelta(seconds=30))
        assert len(receiver.received) == 2
        tick(collector, due + timedelta(seconds=30 + 59))
        assert len(receiver.received) == 2
        tick(collector, due + timedelta(seconds=30 + 60))
        assert len(receiver.received) == 3
        for minutes in (5, 60, 180):  # delivered: never again
            tick(collector, due + timedelta(minutes=minutes))
    assert len(receiver.received) == 3
    bodies = {body for body, _ in receiver.received}
    assert len(bodies) == 1, "every attempt sends the same body"
    for body, signature in receiver.received:
        assert verify(body, SECRET, signature, now=time.time())
    message = Escalation.model_validate_json(bodies.pop())
    assert (message.request_id, message.level, message.area_id) == (request_id, 1, "xiaoba")
    assert message.status == Status.dispatched.value  # its status when it escalated
    [escalation] = _escalations(settings, request_id)
    assert escalation["webhook_attempts"] == 3
    assert escalation["webhook_next_at"] is None
    assert escalation["webhook_delivered_at"].startswith(
        (due + timedelta(seconds=90)).strftime("%Y-%m-%dT%H:%M:%S")
    )
    assert escalation["note"] == (
        f"level 1: community xiaoba: published to {settings.topic_prefix}/grid/xiaoba; "
        "webhook delivered at attempt 3"
    )


@pytest.mark.servers
@pytest.mark.parametrize("receiver", [[500, 200]], indirect=True)
def test_an_escalation_note_keeps_its_message_or_is_edited_as_text_when_older(
    settings: Settings, pilot_bins: dict[str, BinTags], receiver: Receiver
) -> None:
    """Each attempt's outcome replaces the note's webhook part in the text and in the message
    beside it (core/reasons.py); a note written before notes were structured has no message,
    and its text is edited as before."""
    request_id, due = _escalation_setup(settings, receiver.url)
    engine = make_engine(settings.database_url)
    escalation = select(CollectionEvent).where(
        CollectionEvent.request_id == request_id, CollectionEvent.kind == "escalation"
    )
    try:
        with running_collector(settings) as collector:
            tick(collector, due)
            with Session(engine) as session:
                event = session.scalars(escalation).one()
                assert event.note_msg is not None
                told = [part["id"] for part in event.note_msg["args"]["told"]]
                assert (event.note_msg["id"], told) == ("escalation.community", ["webhook.failed"])
                event.note_msg = None  # as if escalated before notes were structured
                session.commit()
            tick(collector, due + timedelta(seconds=30))
        with Session(engine) as session:
            event = session.scalars(escalation).one()
            assert event.note == "level 1: community xiaoba: webhook delivered at attempt 2"
            assert event.note_msg is None
    finally:
        engine.dispose()
    assert len(receiver.received) == 2


@pytest.mark.servers
@pytest.mark.parametrize("receiver", [[500]], indirect=True)
def test_escalation_webhook_gives_up_visibly(
    settings: Settings, pilot_bins: dict[str, BinTags], receiver: Receiver
) -> None:
    settings = settings.model_copy(update={"collection_webhook_attempts": 3})
    request_id, due = _escalation_setup(settings, receiver.url)
    with running_collector(settings) as collector:
        for minutes in (0, 1, 2, 10, 60, 180):
            tick(collector, due + timedelta(minutes=minutes))
    assert len(receiver.received) == 3
    [escalation] = _escalations(settings, request_id)
    assert escalation["webhook_attempts"] == 3
    assert escalation["webhook_next_at"] is None
    assert escalation["webhook_delivered_at"] is None
    assert escalation["note"].startswith(
        "level 1: community xiaoba: webhook gave up after 3 attempt(s): "
    )
    assert "answered 500" in escalation["note"]


@pytest.mark.servers
@pytest.mark.parametrize("receiver", [[200]], indirect=True)
def test_a_delivered_escalation_is_posted_once(
    settings: Settings, pilot_bins: dict[str, BinTags], receiver: Receiver
) -> None:
    request_id, due = _escalation_setup(settings, receiver.url)
    with running_collector(settings) as collector:
        for minutes in (0, 1, 5, 60, 180):
            tick(collector, due + timedelta(minutes=minutes))
    assert len(receiver.received) == 1
    [escalation] = _escalations(settings, request_id)
    assert escalation["webhook_attempts"] == 1
    assert escalation["webhook_delivered_at"] is not None
    assert escalation["webhook_next_at"] is None
    assert escalation["note"] == "level 1: community xiaoba: webhook delivered"


@pytest.mark.servers
@pytest.mark.parametrize("receiver", [[503]], indirect=True)
def test_an_escalation_is_not_chased_once_the_request_is_done(
    settings: Settings, pilot_bins: dict[str, BinTags], receiver: Receiver
) -> None:
    request_id, due = _escalation_setup(settings, receiver.url)
    with running_collector(settings) as collector:
        tick(collector, due)
        _set_status(settings, request_id, Status.cancelled)
        for minutes in (1, 5, 60):
            tick(collector, due + timedelta(minutes=minutes))
    assert len(receiver.received) == 1
    [escalation] = _escalations(settings, request_id)
    assert escalation["webhook_attempts"] == 1
    assert escalation["webhook_next_at"] is None
    assert escalation["note"] == (
        "level 1: community xiaoba: webhook not retried after 1 attempt(s): "
        "the request is cancelled"
    )
