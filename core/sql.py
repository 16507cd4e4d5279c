"""The SQL boundary's common part: an engine for the registry database and its sessions, the same
for every service, and which of its failures are worth retrying (the schema itself is the
migrations' business: binwatch/database.py)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Generic, NamedTuple, TypeVar

from pydantic import SecretStr
from sqlalchemy import Engine, Select, bindparam, create_engine, event, func, select, tuple_
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.interfaces import ORMOption

from core.errors import ConfigError, InvalidRequest
from core.settings import Settings, reveal

Row = TypeVar("Row")


def make_engine(
    database_url: str | SecretStr,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_timeout: float = 30,
    connect_timeout: int = 10,
    statement_timeout: float = 30,
) -> Engine:
    """An engine for the registry, its pool bounded: at most `pool_size + max_overflow`
    connections, a wait of at most `pool_timeout` seconds for one. The figures are
    SQLAlchemy's defaults unless a caller passes its own (`database_engine`: the
    BINWATCH_DATABASE_* settings; the API sizes its pool to its concurrency).

    PostgreSQL also gets a connect timeout and a statement timeout (seconds; 0: none), and
    each connection is checked before use, so a restarted server's dead ones are replaced
    rather than handed out. SQLite gets WAL and a busy timeout so ingest workers, the API and
    the CLI can share one file without 'database is locked' errors. Either refuses text
    holding NUL before the driver sees it (`refuse_nul_text`)."""
    database_url = reveal(database_url)
    pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout}
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(
            database_url, connect_args={"timeout": 30, "check_same_thread": False}, **pool
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        refuse_nul_text(engine)
        return engine
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        # A server setting sent at connect: no extra round trip, and no SET for a pool's
        # reset-on-return rollback to undo. The URL's own `options`, if any, come after.
        timeout_ms = round(statement_timeout * 1000)
        options = [f"-c statement_timeout={timeout_ms}", *url.normalized_query.get("options", ())]
        connect_args = {"connect_timeout": connect_timeout, "options": " ".join(options)}
    engine = create_engine(database_url, connect_args=connect_args, pool_pre_ping=True, **pool)
    refuse_nul_text(engine)
    return engine


class NulInText(InvalidRequest):
    """Text holding the NUL character (U+0000), which PostgreSQL's text columns cannot hold:
    psycopg refuses the whole statement with a DataError (a 500, had it reached the driver);
    or a lone UTF-16 surrogate, which no UTF-8 text holds (both drivers fail to encode it)."""


NUL_IN_TEXT = "text may not contain the NUL character (U+0000): remove it and send again"
SURROGATE_IN_TEXT = (
    "text may not contain a lone UTF-16 surrogate (U+D800 to U+DFFF): send it as UTF-8"
)
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
# Parameters that hold no text, skipped at once (most of a statement's).
_SCALARS: Final = frozenset({int, float, bool, type(None), bytes, datetime, date, Decimal})


def refuse_nul_text(engine: Engine) -> None:
    """Refuse, before the driver sees it, every statement with a text parameter holding NUL
    (or a lone surrogate), as NulInText (an InvalidRequest: the API's 422, the CLI's one line,
    a service's item logged and counted) on either backend: SQLite would store a NUL,
    PostgreSQL fail the whole statement with a DataError (a traceback, a batch dropped with
    its other rows), and both fail to encode a surrogate with a UnicodeEncodeError.

    Every engine gets it (`make_engine`): such text reaches the registry from outside by many
    paths, a form, a JSON body, a cookie or a query string to the API, a fleet file's
    `"\\0"`, a secret piped to the CLI, a receiver's answer, and each guard at a boundary
    is one more place to forget. Scanning 500 rows of 5 parameters took 0.4 µs a row (timeit,
    2026-12-03 18:03Z, load average 11; the API's guard before, 1.7 µs in the same run)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _refuse(
        _conn: Any, _cursor: Any, _sql: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        if problem := _unstorable(parameters):
            raise NulInText(problem)


def _unstorable(parameters: Any) -> str | None:
    """What no registry text can hold in a statement's parameters (a row or a list of rows:
    dicts, tuples, lists, and values such as an ARRAY's list inside them), or None; walked
    without recursion, exact types first (the common case), subclasses after."""
    pending = [parameters]
    while pending:
        value = pending.pop()
        kind = type(value)
        if kind in _SCALARS:
            continue
        if kind is str or isinstance(value, str):
            if "\x00" in value:
                return NUL_IN_TEXT
            if not value.isascii() and _SURROGATE.search(value):
                return SURROGATE_IN_TEXT
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list | tuple):
            pending.extend(value)
    return None


def sqlite_file(database_url: str | SecretStr) -> Path | None:
    """The file of a SQLite registry URL; None for another backend, an in-memory database or
    a `file:` URI (whose own `mode=` says whether it may be created)."""
    url = make_url(reveal(database_url))
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if str(url.database).startswith("file:") or url.query.get("uri"):
        return None
    return Path(str(url.database))


class NoRegistry(ConfigError):
    """BINWATCH_DATABASE_URL names a SQLite file that does not exist."""


def require_registry(database_url: str | SecretStr) -> None:
    """Refuse a SQLite registry file that does not exist. SQLite creates a missing file on
    the first connection, so a typo in BINWATCH_DATABASE_URL (or a relative path run from
    another folder) made a new, empty registry: `keys list` showed no keys, a service found
    no bins, and nothing said why. Only `binwatch db migrate` and `binwatch fleet import`
    create the registry (`binwatch.database.migrate(create=True)`)."""
    path = sqlite_file(database_url)
    if path is not None and not path.exists():
        raise NoRegistry(
            f"no registry at {path.absolute()} (BINWATCH_DATABASE_URL): check the path, or "
            "create the registry there with `binwatch db migrate` or `binwatch fleet import`"
        )


def database_engine(settings: Settings) -> Engine:
    """The registry engine of a service or command, bounded by its BINWATCH_DATABASE_*
    settings (docs/deployment.md, "The registry database"); a SQLite registry must exist
    (`require_registry`)."""
    require_registry(settings.database_url)
    limits = settings.database
    return make_engine(
        settings.database_url,
        pool_size=limits.pool_size,
        max_overflow=limits.max_overflow,
        pool_timeout=limits.pool_timeout_s,
        connect_timeout=limits.connect_timeout_s,
        statement_timeout=limits.statement_timeout_s,
    )


# SQLSTATEs of a schema the code expects but the database does not have yet (PostgreSQL
# raises them as ProgrammingError; SQLite says "no such table" as an OperationalError).
_NOT_MIGRATED = frozenset({"42P01", "3F000"})  # undefined table, invalid schema name


def is_not_migrated(error: BaseException) -> bool:
    """Whether `error` says the registry lacks a table the code expects: a database nobody has
    migrated (`binwatch db migrate`), or a BINWATCH_DATABASE_URL naming another one."""
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if getattr(error.orig, "sqlstate", None) in _NOT_MIGRATED:
        return True
    return isinstance(error, sa_exc.OperationalError) and "no such table" in str(error.orig)


def is_transient_failure(error: BaseException) -> bool:
    """Whether `error`, raised by a registry call, is worth retrying: the one place that reads
    SQLAlchemy's and the drivers' (psycopg, sqlite3) exceptions for it, so ingest, the
    services and the API agree.

    - **transient**: the database's state, not the work: unreachable or restarting, out of
      connections, a pool or statement timeout, SQLite's lock, PostgreSQL's serialization
      failure or deadlock (SQLSTATE class 40: rolled back, may simply run again), and a schema
      not migrated yet (a deployment's migrate job still running). The same work later
      succeeds: retry it, and lose nothing meanwhile.
    - **permanent** (everything else): the work itself is refused: a constraint
      (IntegrityError), a value the column cannot hold (DataError: too long, out of range), SQL
      the server rejects. Running it again gets the same answer: report it."""
    if isinstance(error, sa_exc.TimeoutError | sa_exc.DisconnectionError):  # pool, dead link
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated or isinstance(error, sa_exc.OperationalError):
            return True
        return getattr(error.orig, "sqlstate", None) in _NOT_MIGRATED
    return False


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for `engine`. Objects stay readable after commit (`expire_on_commit=False`), so
    a command or an API handler can report what it just wrote without another round trip."""
    return sessionmaker(engine, expire_on_commit=False)


class Slice(NamedTuple, Generic[Row]):
    """A page of rows; how many the query matches in all (None when not counted); whether rows
    follow this page (read as one row more than the page, so `next` needs no count)."""

    rows: list[Row]
    total: int | None
    more: bool


def paged(
    session: Session,
    query: Select[Row],
    *,
    keys: Sequence[Any],
    descending: bool,
    limit: int,
    offset: int = 0,
    after: Sequence[Any] | None = None,
    count: bool = True,
    options: Sequence[ORMOption] = (),
) -> Slice[Row]:
    """One page of `query` ordered by the `keys` columns (the last one unique, so the order is
    total, ties on the first broken by it), newest or greatest first when `descending`. `after`
    (keyset paging) starts the page at the first row strictly past those key values, so a page
    read through it neither repeats nor skips a row when rows are added or removed meanwhile,
    and reads no rows it then throws away (an offset does); `count` also counts every match,
    over the same query so the two always agree (issue 18: counting is skipped on the pages
    a client reaches through `next`); `options` load what the page needs."""
    total = session.scalar(select(func.count()).select_from(query.subquery())) if count else None
    if after is not None:
        # Each value bound with its column's type (a time as the registry stores it).
        cursor = tuple_(
            *(
                bindparam(None, value, type_=key.type)
                for key, value in zip(keys, after, strict=True)
            )
        )
        past = tuple_(*keys) < cursor if descending else tuple_(*keys) > cursor
        query = query.where(past)
    order = [key.desc() if descending else key.asc() for key in keys]
    rows = list(
        session.scalars(query.options(*options).order_by(*order).limit(limit + 1).offset(offset))
    )
    return Slice(rows[:limit], total, len(rows) > limit)
