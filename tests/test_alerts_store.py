"""What the alert rules remember per bin (`bin_health`), written by `alerts.store.remember` once per
batch, on each registry backend (no MQTT or InfluxDB): only what changed is written, and a bin's
`last_seen_at` never moves back; and a batch's new alerts raised together (`raise_alerts`) with
the rows one raise makes, once however many workers raise them, and in order with what ends
them within the same batch."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from alerts import store
from alerts.hook import AlertHook
from alerts.models import Alert, AlertDelivery, AlertEvent, BinHealth
from alerts.rules import AlertType, Finding, Memory
from binwatch.database import migrate
from core.reasons import Reason
from core.settings import Settings
from core.sql import make_engine
from devices.arrivals import Arrival
from devices.contract import Status
from devices.fleet import default_fleet_path, import_fleet, load_fleet
from devices.models import Bin, Notification
from devices.registry import bin_tags
from tests.registry_backends import registry_database

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def registry(
    registry_backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Engine, list[str]]]:
    folder = Path(tmp_path_factory.mktemp("registry"))
    with registry_database(registry_backend, folder, request) as url:
        migrate(url)
        engine = make_engine(url)
        with Session(engine) as session:
            import_fleet(session, load_fleet(default_fleet_path()))
            bins = sorted(bin_tags(session))[:3]
        yield engine, bins
        engine.dispose()


def _row(engine: Engine, bin_id: str) -> tuple[Memory, datetime | None]:
    with Session(engine) as session:
        known = store.health(session, [bin_id])[bin_id]
        row = session.get_one(BinHealth, bin_id)
        assert store.memory_of(row) == known.memory  # the plain read and the ORM agree
        return known.memory, known.last_seen_at


def _remember(engine: Engine, after: dict[str, tuple[Memory, datetime]]) -> None:
    with Session(engine) as session:
        store.remember(session, store.health(session, after), after)
        session.commit()


def test_remember_writes_what_changed_and_never_moves_seen_back(
    registry: tuple[Engine, list[str]],
) -> None:
    engine, (a, b, c) = registry
    first = Memory(last_ts=T0, last_seq=1, last_temp_c=20.0, full_since=None)
    _remember(engine, {a: (first, T0), b: (first, T0), c: (Memory(), T0)})
    assert _row(engine, a) == (first, T0)
    assert _row(engine, c) == (Memory(), T0)

    later = T0 + timedelta(seconds=5)
    newer = Memory(last_ts=later, last_seq=2, last_temp_c=21.0, full_since=later)
    _remember(
        engine,
        {
            a: (newer, later),  # memory and seen
            b: (newer, T0 - timedelta(seconds=1)),  # memory only: seen would move back
            c: (Memory(), later),  # seen only
        },
    )
    assert _row(engine, a) == (newer, later)
    assert _row(engine, b) == (newer, T0)
    assert _row(engine, c) == (Memory(), later)

    _remember(engine, {a: (newer, T0)})  # nothing new: nothing written
    assert _row(engine, a) == (newer, later)


def test_a_second_worker_reads_a_bins_memory_only_after_the_first_has_stored_its_own(
    registry: tuple[Engine, list[str]],
) -> None:
    """Two workers (their own connections) judge the same bin at once: the second one's
    `health` waits until the first has committed what it remembers, then reads it. On
    PostgreSQL that is FOR UPDATE; on SQLite, which ignores it, the write lock `health` takes."""
    engine, bins = registry
    bin_id = bins[2]
    _remember(engine, {bin_id: (Memory(last_seq=1), T0)})
    first_holds = threading.Event()
    second_read: list[tuple[float, Memory]] = []

    def second() -> None:
        first_holds.wait(10)
        with Session(engine) as session:
            memory = store.health(session, [bin_id])[bin_id].memory
            second_read.append((time.monotonic(), memory))
            session.rollback()

    worker = threading.Thread(target=second)
    worker.start()
    with Session(engine) as session:
        known = store.health(session, [bin_id])
        first_holds.set()
        time.sleep(0.5)  # the second worker reads now, unless it has to wait
        store.remember(session, known, {bin_id: (Memory(last_seq=2), T0 + timedelta(seconds=1))})
        committing = time.monotonic()
        session.commit()
    worker.join(30)
    [(read_at, memory)] = second_read
    assert memory.last_seq == 2 and read_at >= committing


def _rows_of(session: Session, alert_id: int) -> tuple[list[Any], list[Any], list[Any]]:
    """An alert's history, deliveries and notifications as plain values, its id left out."""
    events = session.execute(
        select(AlertEvent.kind, AlertEvent.actor, AlertEvent.note, AlertEvent.note_msg).where(
            AlertEvent.alert_id == alert_id
        )
    ).all()
    deliveries = session.execute(
        select(AlertDelivery.notice, AlertDelivery.recipient, AlertDelivery.channel)
        .where(AlertDelivery.alert_id == alert_id)
        .order_by(AlertDelivery.id)
    ).all()
    sent = session.execute(
        select(Notification.channel_id, Notification.subject, Notification.message)
        .where(Notification.subject.like(f"alert {alert_id} %"))
        .order_by(Notification.id)
    ).all()
    notices = [
        (channel, subject.split(" ", 2)[2], {**json.loads(message), "alert_id": None})
        for channel, subject, message in sent
    ]
    return list(events), list(deliveries), notices


def test_a_batch_raises_its_new_alerts_together_with_the_rows_one_raise_makes(
    registry: tuple[Engine, list[str]],
) -> None:
    """`raise_alerts` makes, for each alert, the rows `raise_alert` makes for one (history,
    deliveries, notifications); an alert already live is not raised again, only seen later."""
    engine, (a, *_) = registry
    kind = AlertType.tilt  # no other test here raises it
    finding = Finding(kind, True, Reason.of("alert.event", type=kind, at=T0))
    with Session(engine) as session:
        site = session.get_one(Bin, a).site_id
        one, two, live = sorted(session.scalars(select(Bin.id).where(Bin.site_id == site)))[:3]
        already = store.raise_alert(session, live, finding, now=T0, prefix="t")
        single = store.raise_alert(session, one, finding, now=T0, prefix="t")
        assert already is not None and single is not None
        session.commit()
        later, last = T0 + timedelta(seconds=5), T0 + timedelta(seconds=9)
        raised = store.raise_alerts(
            session,
            [store.Raise(two, finding, later, last), store.Raise(live, finding, later, last)],
            prefix="t",
        )
        session.commit()
        assert [(alert.bin_id, alert.started_at, alert.last_seen_at) for alert in raised] == [
            (two, later, last)
        ]
        batch = session.get_one(Alert, raised[0].id)
        assert (batch.state, batch.site_id, batch.detail) == ("active", site, finding.detail)
        assert batch.detail_msg == single.detail_msg is not None
        assert _rows_of(session, batch.id) == _rows_of(session, single.id)
        assert _rows_of(session, batch.id)[1], "the fleet's site has recipients"
        session.refresh(already)
        assert (already.started_at, already.last_seen_at) == (T0, last)
        assert (
            session.scalar(
                select(func.count()).where(Alert.type == kind.value, Alert.state == "active")
            )
            == 3
        )


def test_two_workers_raising_one_alert_at_once_raise_it_once(
    registry: tuple[Engine, list[str]],
) -> None:
    """The second worker's INSERT waits for the first's transaction, then finds the alert
    live (the partial unique index): nothing is raised twice, nothing fails."""
    engine, (_, b, _) = registry
    finding = Finding(AlertType.fault, True, Reason.of("alert.event", type="fault", at=T0))
    first_holds = threading.Event()
    second_raised: list[list[Alert]] = []

    def second() -> None:
        first_holds.wait(10)
        with Session(engine) as session:
            late = T0 + timedelta(seconds=3)
            second_raised.append(
                store.raise_alerts(session, [store.Raise(b, finding, late, late)], prefix="t")
            )
            session.commit()

    worker = threading.Thread(target=second)
    worker.start()
    with Session(engine) as session:
        raised = store.raise_alerts(session, [store.Raise(b, finding, T0, T0)], prefix="t")
        first_holds.set()
        time.sleep(0.5)  # the second worker inserts now, unless it has to wait
        session.commit()
    worker.join(30)
    assert [alert.bin_id for alert in raised] == [b] and second_raised == [[]]
    with Session(engine) as session:
        [alert] = session.scalars(select(Alert).where(Alert.bin_id == b, Alert.type == "fault"))
        assert alert.last_seen_at == T0 + timedelta(seconds=3)
        events = session.scalars(select(AlertEvent.kind).where(AlertEvent.alert_id == alert.id))
        assert list(events) == ["raised"]


def test_the_hook_raises_and_clears_within_one_batch_in_the_order_it_happened(
    registry: tuple[Engine, list[str]],
) -> None:
    """A bin's will, its return and its will again in one batch: the first offline alert is
    raised and then cleared (raised first, though a batch's new alerts are raised together at
    its end), the second stays live."""
    engine, (a, _, _) = registry
    url = engine.url.render_as_string(hide_password=False)
    hook = AlertHook(Settings(database_url=url, topic_prefix="t"))
    t0 = T0.timestamp()
    try:
        hook(
            [
                Arrival(a, Status(ts=T0, online=online), t0 + offset)
                for offset, online in ((1, False), (2, True), (3, False))
            ]
        )
    finally:
        hook.close()
    with Session(engine) as session:
        found = session.scalars(
            select(Alert).where(Alert.bin_id == a, Alert.type == "offline").order_by(Alert.id)
        ).all()
        assert [(x.state, x.started_at, x.cleared_at) for x in found] == [
            ("cleared", T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)),
            ("active", T0 + timedelta(seconds=3), None),
        ]
        history = [
            (event.alert_id, event.kind)
            for event in session.scalars(
                select(AlertEvent)
                .where(AlertEvent.alert_id.in_([x.id for x in found]))
                .order_by(AlertEvent.id)
            )
        ]
        assert history == [
            (found[0].id, "raised"),
            (found[0].id, "cleared"),
            (found[1].id, "raised"),
        ]
        notices = session.execute(
            select(AlertDelivery.alert_id, AlertDelivery.notice).where(
                AlertDelivery.alert_id.in_([x.id for x in found]), AlertDelivery.channel == "mqtt"
            )
        ).all()
        assert sorted(notices) == [
            (found[0].id, "cleared"),
            (found[0].id, "raised"),
            (found[1].id, "raised"),
        ]
