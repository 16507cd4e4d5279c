"""core.sql.is_transient_failure against the real databases: what each failure really raises,
and that the transient ones do pass once the database is back, with nothing of the work lost."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from binwatch.database import migrate
from binwatch.servers import PostgresServer, free_port
from collection.models import CollectionRequest
from core.settings import Settings
from core.sql import database_engine, is_transient_failure, make_engine
from devices.fleet import default_fleet_path, import_fleet, load_fleet
from devices.models import Bin, Operator, Site
from devices.registry import bin_tags
from tests.registry_backends import PostgresDatabases


@pytest.fixture
def engine(registry_url: str) -> Iterator[Engine]:
    migrate(registry_url)
    engine = make_engine(registry_url)
    yield engine
    engine.dispose()


def _failure(engine: Engine, statement: str) -> SQLAlchemyError:
    with pytest.raises(SQLAlchemyError) as raised, engine.begin() as connection:
        connection.execute(text(statement))
    return raised.value


def _add_operator(engine: Engine, operator_id: str, name: str = "Lvyuan") -> None:
    with Session(engine) as session:
        session.add(Operator(id=operator_id, name=name))
        session.commit()


def test_a_duplicate_key_is_permanent(engine: Engine) -> None:
    _add_operator(engine, "op-a")
    with pytest.raises(SQLAlchemyError) as raised:
        _add_operator(engine, "op-a")
    assert not is_transient_failure(raised.value)


def test_a_missing_table_is_transient_until_migrated(registry_url: str) -> None:
    engine = make_engine(registry_url)
    try:
        assert is_transient_failure(_failure(engine, "SELECT id FROM operators"))
        migrate(registry_url)
        with engine.connect() as connection:
            assert list(connection.execute(text("SELECT id FROM operators"))) == []
    finally:
        engine.dispose()


def test_a_pool_without_a_free_connection_is_transient(
    registry_url: str, registry_backend: str
) -> None:
    """Through a service's own engine: the BINWATCH_DATABASE_* settings bound it."""
    settings = Settings(
        database_url=registry_url,
        database_pool_size=1,
        database_max_overflow=0,
        database_pool_timeout_s=0.2,
        database_statement_timeout_s=1.5,
    )
    engine = database_engine(settings)
    try:
        with engine.connect() as held:
            if registry_backend == "postgresql":
                assert held.scalar(text("SHOW statement_timeout")) == "1500ms"
            with pytest.raises(SQLAlchemyError) as raised, engine.connect():
                pass
        assert is_transient_failure(raised.value)
    finally:
        engine.dispose()


@pytest.mark.registry_backends("postgresql", reason="SQLite does not enforce a VARCHAR's length")
def test_a_value_too_long_for_its_column_is_permanent(engine: Engine) -> None:
    with pytest.raises(SQLAlchemyError) as raised:
        _add_operator(engine, "op-long", name="x" * 201)  # operators.name is VARCHAR(200)
    assert getattr(raised.value.orig, "sqlstate", None) == "22001"  # type: ignore[attr-defined]
    assert not is_transient_failure(raised.value)


@pytest.mark.registry_backends(
    "postgresql", reason="SQLite serialises writers with a lock instead of failing one"
)
def test_a_serialization_failure_is_transient(engine: Engine) -> None:
    _add_operator(engine, "op-a")
    with engine.connect() as first, engine.connect() as second:
        first = first.execution_options(isolation_level="REPEATABLE READ")
        first.execute(text("SELECT name FROM operators WHERE id = 'op-a'"))
        second.execute(text("UPDATE operators SET name = 'second' WHERE id = 'op-a'"))
        second.commit()
        with pytest.raises(SQLAlchemyError) as raised:
            first.execute(text("UPDATE operators SET name = 'first' WHERE id = 'op-a'"))
    assert getattr(raised.value.orig, "sqlstate", None) == "40001"  # type: ignore[attr-defined]
    assert is_transient_failure(raised.value)


@pytest.mark.registry_backends("postgresql", reason="SQLite has no statement timeout")
def test_the_statement_timeout_cancels_a_slow_statement_as_transient(registry_url: str) -> None:
    # The URL's own options are kept beside it.
    url = f"{registry_url}?options=-c%20lock_timeout%3D1234"
    engine = make_engine(url, statement_timeout=0.2)
    try:
        with engine.connect() as connection:
            shown = [
                connection.scalar(text(f"SHOW {name}"))
                for name in ("statement_timeout", "lock_timeout")
            ]
        assert shown == ["200ms", "1234ms"]
        failure = _failure(engine, "SELECT pg_sleep(5)")
        assert getattr(failure.orig, "sqlstate", None) == "57014"  # type: ignore[attr-defined]
        assert is_transient_failure(failure)
    finally:
        engine.dispose()


@pytest.mark.registry_backends("postgresql", reason="a SQLite file has no server to stop")
def test_a_stopped_server_is_transient_and_the_work_passes_once_it_is_back(
    registry_backend: str, tmp_path: Path
) -> None:
    """A server of this test's own, stopped and started again under a live engine."""
    server = PostgresServer(tmp_path / "postgresql", free_port())
    with server, PostgresDatabases(server.database_url()).database() as url:
        migrate(url)
        engine = make_engine(url, connect_timeout=2)
        try:
            _add_operator(engine, "op-before")
            server.stop()
            with pytest.raises(SQLAlchemyError) as raised:
                _add_operator(engine, "op-during")
            assert is_transient_failure(raised.value)
            server.start()
            _add_operator(engine, "op-during")  # the retry: the pool's dead links replaced
            with Session(engine) as session:
                ids = set(session.scalars(select(Operator.id)))
            assert ids == {"op-before", "op-during"}
        finally:
            engine.dispose()


def test_anything_else_is_permanent() -> None:
    assert not is_transient_failure(ValueError("not a database error"))


def _request(session: Session, bin_id: str, status: str, at: datetime) -> CollectionRequest:
    bin_ = session.get_one(Bin, bin_id)
    site = session.get_one(Site, bin_.site_id)
    request = CollectionRequest(
        bin_id=bin_id,
        site_id=site.id,
        operator_id=site.operator_id,
        stream=bin_.stream,
        rule="manual",
        reason="test",
        status=status,
        created_at=at,
        due_at=at + timedelta(hours=12),
        updated_at=at,
    )
    session.add(request)
    session.commit()
    return request


def test_one_open_request_per_bin_is_the_databases_own_rule(engine: Engine) -> None:
    """The partial unique index, not a look before the insert, keeps a second open request out,
    so workers on several machines cannot both open one; closed ones are not limited."""
    with Session(engine) as session:
        import_fleet(session, load_fleet(default_fleet_path()))
        bin_id = min(bin_tags(session))
        # Shanghai's offset in, UTC out: the same instant on both backends.
        at = datetime(2026, 11, 27, 16, 0, tzinfo=timezone(timedelta(hours=8)))
        for _ in range(2):
            _request(session, bin_id, "completed", at)
        first = _request(session, bin_id, "open", at)
        with pytest.raises(SQLAlchemyError) as raised:
            _request(session, bin_id, "dispatched", at)
        assert not is_transient_failure(raised.value)
        session.rollback()
        session.expire_all()
        stored = session.get_one(CollectionRequest, first.id).created_at
        assert (stored, stored.utcoffset()) == (at, timedelta(0))
