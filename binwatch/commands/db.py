"""`binwatch db …`: the registry's schema, for a deployment's one-shot migrate job."""

from __future__ import annotations

import typer

from binwatch.database import migrate
from core.settings import Settings

db_app = typer.Typer(help="The registry database (BINWATCH_DATABASE_URL): its schema.")


@db_app.command("migrate")
def migrate_command() -> None:
    """Bring the registry to the newest schema (Alembic); harmless when it is there already."""
    settings = Settings()
    migrate(settings.database_url)
    # The URL as every log shows it: its password, if any, as ***.
    typer.echo(f"registry at the newest schema: {settings.database_url}")
