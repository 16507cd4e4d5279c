"""`binwatch fleet …`: put the city's fleet file (whole or partial) into the registry, see what a
file holds, write the registry back as a file, and retire or reinstate bins and sites."""

from __future__ import annotations

import secrets
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from binwatch.database import migrate
from binwatch.output import PlainTable, console, fail, stdin_line
from core.errors import BinwatchError, FleetError
from core.settings import Settings
from core.sql import database_engine, session_factory, sqlite_file
from devices import retirement
from devices.contract import SiteType, Stream
from devices.fleet import Fleet, Known, default_fleet_path, import_fleet, known_ids, load_fleet
from devices.fleet_export import export_fleet
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


@contextmanager
def _registry(*, migrated: bool = True, create: bool = False) -> Iterator[Session]:
    """A session on the registry (migrated first unless `migrated` is False; made first where
    there is none only with `create`: `fleet import`); binwatch's own errors end the command
    with their message."""
    settings = Settings()
    if migrated:
        migrate(settings.database_url, create=create)
    engine = database_engine(settings)
    try:
        with session_factory(engine)() as session:
            yield session
    except BinwatchError as exc:
        fail(str(exc))
    finally:
        engine.dispose()


@fleet_app.command("import")
def import_command(file: FleetFile = None) -> None:
    """Create or update the registry from FILE, whole or partial (sites and areas under what the
    registry already has). Safe to repeat; deletes nothing."""
    with _registry(create=True) as session:
        fleet = _load_or_exit(file, known_ids(session))
        summary = import_fleet(session, fleet)
        url = session.get_bind().engine.url
    table = PlainTable("kind", "created", "updated", "unchanged", title=f"imported into {url!r}")
    for kind, counts in summary.by_kind().items():
        table.add_row(kind, str(counts.created), str(counts.updated), str(counts.unchanged))
    console().print(table)


@fleet_app.command("export")
def export_command(
    file: Annotated[
        Path | None,
        typer.Argument(help="where to write (default: standard output)", dir_okay=False),
    ] = None,
) -> None:
    """Write the registry as a fleet file that imports back to the same registry."""
    with _registry() as session:
        text = export_fleet(session)
    if file is None:
        sys.stdout.write(text)
    else:
        file.write_text(text, encoding="utf-8")


@fleet_app.command("show")
def show_command(file: FleetFile = None) -> None:
    """Check FILE and count what it holds, without changing the registry (a partial file's
    references are looked up in it)."""
    missing = sqlite_file(Settings().database_url)
    if missing is not None and not missing.exists():  # none is made: the file alone is checked
        console(stderr=True).print(
            f"no registry to refer to at {missing.absolute()} (BINWATCH_DATABASE_URL): "
            "checking the file alone",
            markup=False,
        )
        fleet = _load_or_exit(file, Known())
    else:
        with _registry(migrated=False) as session:
            fleet = _load_or_exit(file, _known_if_any(session))
    table = PlainTable("what", "count", title=(file or default_fleet_path()).name)
    for what, count in _counts(fleet).items():
        table.add_row(what, str(count))
    console().print(table)


BinId = Annotated[str | None, typer.Option("--bin", help="a bin's id")]
SiteId = Annotated[str | None, typer.Option("--site", help="a site's id (all its bins)")]
Note = Annotated[str, typer.Option(help="why (kept in the audit trail)")]
By = Annotated[str, typer.Option("--by", help="who does it (kept in the audit trail)")]


@fleet_app.command("retire")
def retire_command(note: Note, by: By, bin_id: BinId = None, site_id: SiteId = None) -> None:
    """Retire a bin, or a site with all its bins: kept with their history, no longer expected to
    report (ingest dead-letters their readings as `retired_bin`, the alerter stops calling them
    offline) and left out of the broker's files at the next `binwatch mqtt-auth export`."""
    _change(retirement.retire, note=note, by=by, bin_id=bin_id, site_id=site_id)


@fleet_app.command("reinstate")
def reinstate_command(note: Note, by: By, bin_id: BinId = None, site_id: SiteId = None) -> None:
    """Put a retired bin or site back in service (its silence is counted from now)."""
    _change(retirement.reinstate, note=note, by=by, bin_id=bin_id, site_id=site_id)


def _change(
    action: retirement.Change, *, note: str, by: str, bin_id: str | None, site_id: str | None
) -> None:
    if (bin_id is None) == (site_id is None):
        raise typer.BadParameter("give exactly one of --bin and --site")
    target: retirement.Target = "bin" if bin_id else "site"
    target_id = bin_id or site_id or ""
    with _registry() as session:
        entry = action(session, target, target_id, actor=by, note=note, now=datetime.now(UTC))
        at = f"{entry.at:%Y-%m-%d %H:%M:%S} UTC"
        typer.echo(f"{entry.target} {entry.target_id} {entry.action} at {at} by {entry.actor}")
    typer.echo("running services follow within a minute; export the MQTT accounts again "
               "(binwatch mqtt-auth export) so the broker follows too")  # fmt: skip


@fleet_app.command("history")
def history_command(
    target_id: Annotated[
        str | None, typer.Argument(help="a bin's or site's id (default: all)")
    ] = None,
) -> None:
    """The audit trail of retirements and reinstatements, oldest first."""
    table = PlainTable("at (UTC)", "action", "what", "by", "note")
    with _registry() as session:
        for entry in retirement.history(session, target_id):
            what = f"{entry.target} {entry.target_id}"
            at = f"{entry.at:%Y-%m-%d %H:%M:%S}"
            table.add_row(at, entry.action, what, entry.actor, entry.note)
    console().print(table)


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
                fail(f"{what} has no webhook_url in the registry: add it to the fleet file "
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
        secret = stdin_line(
            "secret",
            "pipe one line to the command, run it in a terminal to be asked, or pass --generate",
        ).strip()
    if len(secret) < MIN_SECRET_CHARS:
        fail(f"a webhook secret needs at least {MIN_SECRET_CHARS} characters (or --generate)")
    return secret


def _known_if_any(session: Session) -> Known:
    """The registry's ids, or none when there is no registry (yet) to read."""
    try:
        if inspect(session.get_bind()).has_table("areas"):
            return known_ids(session)
    except SQLAlchemyError as exc:
        console(stderr=True).print(
            f"no registry to refer to ({type(exc).__name__}): checking the file alone",
            markup=False,
        )
    return Known()


def _load_or_exit(file: Path | None, known: Known) -> Fleet:
    try:
        return load_fleet(
            file or default_fleet_path(),
            allow_private_webhooks=Settings().webhook.allow_private,
            known=known,
        )
    except FleetError as exc:
        fail(str(exc))


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
