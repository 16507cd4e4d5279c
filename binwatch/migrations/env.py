"""Alembic's entry point for the registry. It migrates over the connection that
`binwatch.database.alembic_config` hands it, never over a URL of its own, so there is exactly one way
to reach the database (`core.sql.make_engine`, with its SQLite pragmas)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from binwatch.database import METADATA

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "run registry migrations through binwatch.database.migrate(), not the alembic CLI"
    )

# Batch mode lets later migrations alter columns and constraints on SQLite, which has no
# ALTER for them: Alembic copies the table instead, and drops the old one. With the foreign keys
# that `make_engine` turns on, that DROP first deletes every row, as a DELETE would: the rows of
# tables that reference it with ON DELETE CASCADE go with them (0015's copy of `users` took
# every console session), and any other reference to a row fails the migration. So on SQLite
# the keys are off while migrating (PRAGMA foreign_keys is a no-op inside a transaction: it is
# set, and committed, before the migrations' own), checked once at the end, and on again
# (https://alembic.sqlalchemy.org/en/latest/batch.html, "Dealing with Referencing Foreign Keys").
sqlite = connection.dialect.name == "sqlite"
if sqlite:
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
try:
    context.configure(connection=connection, target_metadata=METADATA, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").all()):
        raise RuntimeError(f"the migration left rows whose references are broken: {broken}")
finally:
    if sqlite:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()
