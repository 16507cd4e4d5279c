"""`binwatch db …`: the registry's schema, for a deployment's one-shot migrate job."""

from __future__ import annotations

import typer
from sqlalchemy.engine import make_url

from binwatch.settings import Settings
from devices.db import migrate

db_app = typer.Typer(help="The registry database (BINWATCH_DATABASE_URL): its schema.")


@db_app.command("migrate")
def migrate_command() -> None:
    """Bring the registry to the newest schema (Alembic); harmless when it is there already."""
    settings = Settings()
    migrate(settings.database_url)
    typer.echo(f"registry at the newest schema: {make_url(settings.database_url)!r}")
