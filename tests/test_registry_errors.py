"""devices.registry_errors against the real databases: what each failure really raises, and
that the transient ones do pass once the database is back, with nothing of the work lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from binwatch.servers import PostgresServer, free_port
from binwatch.settings import Settings
from devices.db import migrate
from devices.models import Operator
from devices.registry import make_engine
from devices.registry_errors import RegistryFailure, classify
from tests.registry_backends import PostgresDatabases

TRANSIENT, PERMANENT = RegistryFailure.transient, RegistryFailure.permanent


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
    assert classify(raised.value) is PERMANENT


def test_a_missing_table_is_transient_until_migrated(registry_url: str) -> None:
    engine = make_engine(registry_url)
    try:
        assert classify(_failure(engine, "SELECT id FROM operators")) is TRANSIENT
        migrate(registry_url)
        with engine.connect() as connection:
            assert list(connection.execute(text("SELECT id FROM operators"))) == []
    finally:
        engine.dispose()


def test_a_pool_without_a_free_connection_is_transient(registry_url: str) -> None:
    small = Settings(database_pool_size=1, database_max_overflow=0, database_pool_timeout_s=0.2)
    engine = make_engine(registry_url, small)
    try:
        with engine.connect(), pytest.raises(SQLAlchemyError) as raised, engine.connect():
            pass
        assert classify(raised.value) is TRANSIENT
    finally:
        engine.dispose()


@pytest.mark.registry_backends("postgresql", reason="SQLite does not enforce a VARCHAR's length")
def test_a_value_too_long_for_its_column_is_permanent(engine: Engine) -> None:
    with pytest.raises(SQLAlchemyError) as raised:
        _add_operator(engine, "op-long", name="x" * 201)  # operators.name is VARCHAR(200)
    assert getattr(raised.value.orig, "sqlstate", None) == "22001"  # type: ignore[attr-defined]
    assert classify(raised.value) is PERMANENT


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
    assert classify(raised.value) is TRANSIENT


@pytest.mark.registry_backends("postgresql", reason="SQLite has no statement timeout")
def test_the_statement_timeout_cancels_a_slow_statement_as_transient(registry_url: str) -> None:
    engine = make_engine(registry_url, Settings(database_statement_timeout_s=0.2))
    try:
        failure = _failure(engine, "SELECT pg_sleep(5)")
        assert getattr(failure.orig, "sqlstate", None) == "57014"  # type: ignore[attr-defined]
        assert classify(failure) is TRANSIENT
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
        engine = make_engine(url, Settings(database_connect_timeout_s=2))
        try:
            _add_operator(engine, "op-before")
            server.stop()
            with pytest.raises(SQLAlchemyError) as raised:
                _add_operator(engine, "op-during")
            assert classify(raised.value) is TRANSIENT
            server.start()
            _add_operator(engine, "op-during")  # the retry: the pool's dead links replaced
            with Session(engine) as session:
                ids = set(session.scalars(select(Operator.id)))
            assert ids == {"op-before", "op-during"}
        finally:
            engine.dispose()


def test_anything_else_is_permanent() -> None:
    assert classify(ValueError("not a database error")) is PERMANENT
