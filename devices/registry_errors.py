"""Which registry failures are worth retrying: the one place that reads SQLAlchemy's and the
drivers' (psycopg, sqlite3) exceptions for it, so ingest, the services and the API agree.

- **transient** — the database's state, not the work: unreachable or restarting, out of
  connections, a pool or statement timeout, SQLite's lock, PostgreSQL's serialization failure
  or deadlock (SQLSTATE class 40: the transaction was rolled back and may simply be run
  again), and a schema not migrated yet (a deployment's migrate job still running). The same
  work later succeeds: retry it, and lose nothing meanwhile.
- **permanent** — the work itself is refused: a constraint (IntegrityError), a value the column
  cannot hold (DataError: too long, out of range), SQL the server rejects. Running it again
  gets the same answer: report it.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import exc

# SQLSTATEs of a schema the code expects but the database does not have yet (PostgreSQL
# raises them as ProgrammingError; SQLite says "no such table" as an OperationalError).
_NOT_MIGRATED = frozenset({"42P01", "3F000"})  # undefined table, invalid schema name


class RegistryFailure(StrEnum):
    transient = "transient"
    permanent = "permanent"


def classify(error: BaseException) -> RegistryFailure:
    """Whether `error`, raised by a registry call, is worth retrying."""
    if isinstance(error, exc.TimeoutError | exc.DisconnectionError):  # pool timeout, dead link
        return RegistryFailure.transient
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated or isinstance(error, exc.OperationalError):
            return RegistryFailure.transient
        if getattr(error.orig, "sqlstate", None) in _NOT_MIGRATED:
            return RegistryFailure.transient
    return RegistryFailure.permanent


def is_transient(error: BaseException) -> bool:
    return classify(error) is RegistryFailure.transient
