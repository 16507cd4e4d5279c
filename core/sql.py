"""The SQL boundary's common part: an engine for the registry database and its sessions, the same
for every service (the schema itself is the migrations' business: binwatch/database.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import SecretStr
from sqlalchemy import Engine, Select, create_engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.interfaces import ORMOption

from core.settings import reveal

Row = TypeVar("Row")


def make_engine(
    database_url: str | SecretStr,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_timeout: float = 30,
) -> Engine:
    """An engine for the registry; SQLite gets WAL and a busy timeout so ingest workers, the API
    and the CLI can share one file without 'database is locked' errors. The pool's sizes and
    wait are SQLAlchemy's defaults unless a caller (the API) sizes them to its concurrency."""
    database_url = reveal(database_url)
    pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout}
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url, connect_args={"timeout": 30, "check_same_thread": False}, **pool
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(database_url, pool_pre_ping=True, **pool)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for `engine`. Objects stay readable after commit (`expire_on_commit=False`), so
    a command or an API handler can report what it just wrote without another round trip."""
    return sessionmaker(engine, expire_on_commit=False)


def paged(
    session: Session,
    query: Select[Row],
    *,
    order_by: Sequence[Any],
    limit: int,
    offset: int,
    options: Sequence[ORMOption] = (),
) -> tuple[list[Row], int]:
    """One page of `query` in `order_by` order, and how many rows it matches in all (counted
    over the same query, so the two always agree); `options` load what the page needs."""
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = session.scalars(query.options(*options).order_by(*order_by).limit(limit).offset(offset))
    return list(page), total
