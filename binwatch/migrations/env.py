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
# ALTER for them: Alembic copies the table instead.
context.configure(connection=connection, target_metadata=METADATA, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
