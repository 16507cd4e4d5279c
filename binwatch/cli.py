"""The `binwatch` command. Each command builds the Settings itself (from BINWATCH_* variables);
`binwatch --help` lists them."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from pydantic import SecretStr

from binwatch.commands.alerter import alerter
from binwatch.commands.api import api
from binwatch.commands.channels import channels_app
from binwatch.commands.collector import collector
from binwatch.commands.db import db_app
from binwatch.commands.deadletters import deadletters_app
from binwatch.commands.fleet import fleet_app
from binwatch.commands.ingest import ingest
from binwatch.commands.rollups import rollups_app
from binwatch.commands.security import keys_app, mqtt_auth_app
from binwatch.commands.simulate import simulate
from binwatch.commands.users import users_app
from binwatch.demo import demo
from binwatch.grafana import grafana_app
from core.settings import env_names


def _shown(default: object) -> str:
    """A default as the environment would spell it (a secret URL's, with any password hidden)."""
    return repr(str(default)) if isinstance(default, SecretStr) else repr(default)


def _settings_help() -> str:
    rows = [
        f"  BINWATCH_{name.upper():<36} {field.description or ''} [{_shown(field.default)}]"
        for name, field in env_names().items()
    ]
    # "\b" keeps click from re-wrapping the table.
    return "Configuration, from environment variables [default]:\n\n\b\n" + "\n".join(rows)


app = typer.Typer(
    help="binwatch: smart-bin monitoring for a city's garbage-sorting pilot.\n\n"
    + _settings_help(),
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log debug messages")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO: thousands a minute from ingest.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Alembic says which dialect it uses at INFO before every command's own output.
    logging.getLogger("alembic").setLevel(logging.INFO if verbose else logging.WARNING)


app.add_typer(fleet_app, name="fleet")
app.add_typer(db_app, name="db")
app.add_typer(deadletters_app, name="deadletters")
app.add_typer(rollups_app, name="rollups")
app.add_typer(grafana_app, name="grafana")
app.add_typer(keys_app, name="keys")
app.add_typer(mqtt_auth_app, name="mqtt-auth")
app.add_typer(users_app, name="users")
app.add_typer(channels_app, name="channels")
app.command()(ingest)
app.command()(api)
app.command()(simulate)
app.command()(collector)
app.command()(alerter)
app.command()(demo)
