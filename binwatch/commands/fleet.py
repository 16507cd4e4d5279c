"""`binwatch fleet …`: put the city's fleet file into the registry, or see what a file holds."""

from __future__ import annotations

import secrets
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from binwatch.database import migrate
from core.errors import FleetError
from core.settings import Settings
from core.sql import database_engine, session_factory
from devices.contract import SiteType, Stream
from devices.fleet import Fleet, default_fleet_path, import_fleet, load_fleet
from devices.models import AreaContact, Operator

fleet_app = typer.Typer(
    help="The fleet file: areas (and their contacts), operators, sites and bins of the pilot."
)

FleetFile = Annotated[
    Path | None,
    typer.Argument(
        help="fleet YAML file (default: the pilot fleet shipped with binwatch)",
        exists=True,
        dir_okay=False,
    ),
]


@fleet_app.command("import")
def import_command(file: FleetFile = None) -> None:
    """Create or update the registry from FILE. Safe to repeat; deletes nothing."""
    settings = Settings()
    fleet = _load_or_exit(file)
    migrate(settings.database_url)
    engine = database_engine(settings)
    try:
        with session_factory(engine)() as session:
            summary = import_fleet(session, fleet)
    finally:
        engine.dispose()
    table = Table("kind", "created", "updated", "unchanged", title=f"imported into {engine.url!r}")
    for kind, counts in summary.by_kind().items():
        table.add_row(kind, str(counts.created), str(counts.updated), str(counts.unchanged))
    Console().print(table)


@fleet_app.command("show")
def show_command(file: FleetFile = None) -> None:
    """Check FILE and count what it holds, without touching the registry."""
    fleet = _load_or_exit(file)
    table = Table("what", "count", title=(file or default_fleet_path()).name)
    for what, count in _counts(fleet).items():
        table.add_row(what, str(count))
    Console().print(table)


MIN_SECRET_CHARS = 16


@fleet_app.command("webhook-secret")
def webhook_secret_command(
    area: Annotated[
        str | None, typer.Option(help="an area whose contact has a webhook_url")
    ] = None,
    operator: Annotated[str | None, typer.Option(help="an operator with a webhook_url")] = None,
    generate: Annotated[
        bool, typer.Option("--generate", help="make a random secret and print it once")
    ] = False,
) -> None:
    """Set the secret that signs the webhooks (X-Binwatch-Signature) sent to an area's contact
    or an operator. Read from standard input, so it is in no command line or shell history; the
    fleet file, which lives in git, never holds secrets."""
    if (area is None) == (operator is None):
        raise typer.BadParameter("give exactly one of --area and --operator")
    secret = secrets.token_urlsafe(32) if generate else _read_secret()
    settings = Settings()
    engine = database_engine(settings)
    try:
        with session_factory(engine)() as session:
            target: AreaContact | Operator | None = (
                session.get(AreaContact, area) if area else session.get(Operator, operator)
            )
            what = f"area {area!r}" if area else f"operator {operator!r}"
            if target is None or not target.webhook_url:
                _fail(f"{what} has no webhook_url in the registry: add it to the fleet file "
                      "(a contact's or an operator's webhook_url) and import it first")  # fmt: skip
            target.webhook_secret = secret
            session.commit()
    finally:
        engine.dispose()
    typer.echo(f"webhook secret set for {what} ({target.webhook_url})")
    if generate:
        typer.echo(secret)


def _read_secret() -> str:
    if sys.stdin.isatty():
        secret: str = typer.prompt("secret", hide_input=True, confirmation_prompt=True)
    else:
        secret = sys.stdin.readline().strip()
    if len(secret) < MIN_SECRET_CHARS:
        _fail(f"a webhook secret needs at least {MIN_SECRET_CHARS} characters (or --generate)")
    return secret


def _fail(message: str) -> NoReturn:
    Console(stderr=True).print(message, style="red", markup=False, highlight=False)
    raise typer.Exit(1)


def _load_or_exit(file: Path | None) -> Fleet:
    try:
        return load_fleet(
            file or default_fleet_path(),
            allow_private_webhooks=Settings().webhook.allow_private,
        )
    except FleetError as exc:
        _fail(str(exc))


def _counts(fleet: Fleet) -> dict[str, int]:
    kinds = Counter(kind for _loc, _area, kind, _parent in fleet.areas())
    sites = Counter(site.type for site in fleet.sites)
    bins = Counter(planned.stream for site in fleet.sites for planned in site.planned_bins())
    return {
        "districts": kinds["district"],
        "streets": kinds["street"],
        "communities": kinds["community"],
        **{f"sites: {site_type.value}": sites[site_type] for site_type in SiteType},
        **{f"bins: {stream.value}": bins[stream] for stream in Stream},
        "operators": len(fleet.operators),
        "area contacts": sum(1 for _loc, area, _k, _p in fleet.areas() if area.contact),
    }
