"""What the alert rules remember per bin (`bin_health`), written by `alerts.store.remember` once per
batch, on each registry backend (no MQTT or InfluxDB): only what changed is written, and a bin's
`last_seen_at` never moves back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from alerts import store
from alerts.models import BinHealth
from alerts.rules import Memory
from binwatch.database import migrate
from core.sql import make_engine
from devices.fleet import default_fleet_path, import_fleet, load_fleet
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
