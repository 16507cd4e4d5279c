"""`binwatch keys …` and `binwatch mqtt-auth …`: issue, list and revoke API keys and MQTT
credentials. Secrets are printed once, here, and never again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session

from binwatch.database import migrate
from binwatch.output import PlainTable, console, fail, stdin_line
from core.errors import BinwatchError
from core.settings import Settings
from core.sql import database_engine, session_factory
from security import mqtt_auth
from security.keys import ApiRole, create_key, list_keys, revoke_key

keys_app = typer.Typer(help="API keys: create (token shown once), list, revoke.")
mqtt_auth_app = typer.Typer(help="MQTT credentials, and the broker's password and ACL files.")


@contextmanager
def _session() -> Iterator[tuple[Session, Settings]]:
    settings = Settings()
    migrate(settings.database_url, create=False)
    engine = database_engine(settings)
    try:
        with session_factory(engine)() as session:
            yield session, settings
    except BinwatchError as exc:
        fail(exc)
    finally:
        engine.dispose()


# The longest a key may be made valid for: an expiry must be a date (`--days 1e12` overflowed).
KEY_DAYS_MAX = 3650


@keys_app.command("create")
def create_command(
    role: Annotated[ApiRole, typer.Option(help="admin, manager, grid, operator or crew")],
    name: Annotated[str, typer.Option(help="who holds the key, for the list")],
    site: Annotated[list[str] | None, typer.Option(help="a manager's site (repeat)")] = None,
    operator: Annotated[str | None, typer.Option(help="an operator key's company")] = None,
    area: Annotated[
        str | None, typer.Option(help="a grid key's district, street or community")
    ] = None,
    vehicle: Annotated[str | None, typer.Option(help="a crew key's vehicle")] = None,
    days: Annotated[
        float,
        typer.Option(
            min=0,
            max=KEY_DAYS_MAX,
            help="valid for this many days (0: until revoked)",
        ),
    ] = 365.0,
) -> None:
    """Create a key and print its token (only now: only its hash is kept)."""
    now = datetime.now(UTC)
    with _session() as (session, _):
        issued = create_key(
            session,
            name=name,
            role=role,
            now=now,
            site_ids=site or (),
            operator_id=operator,
            area_id=area,
            vehicle_id=vehicle,
            expires_at=now + timedelta(days=days) if days else None,
        )
    console().print(f"key {issued.key.id} ({role.value}); token, shown once:")
    print(issued.token)


@keys_app.command("list")
def list_command() -> None:
    """Every key with its role, scope, expiry and revocation (never a token)."""
    table = PlainTable("id", "name", "role", "scope", "created", "expires", "revoked")
    with _session() as (session, _):
        for key in list_keys(session):
            table.add_row(
                key.id,
                key.name,
                key.role,
                key.site_ids or key.operator_id or key.area_id or key.vehicle_id or "everything",
                f"{key.created_at:%Y-%m-%d %H:%M}",
                f"{key.expires_at:%Y-%m-%d %H:%M}" if key.expires_at else "never",
                f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "",
            )
    console().print(table)


@keys_app.command("revoke")
def revoke_command(key_id: Annotated[str, typer.Argument(help="the key's id")]) -> None:
    """Revoke a key: from the next request on, it is refused."""
    with _session() as (session, _):
        revoke_key(session, key_id, now=datetime.now(UTC))
    console().print(f"revoked {key_id}")


@mqtt_auth_app.command("issue")
def issue_command(
    username: Annotated[
        list[str] | None,
        typer.Argument(
            help="bin ids, services (ingest, collector, alerter, simulator), operator-<id>,"
            " manager-<name> (with --site), admin-<name>"
        ),
    ] = None,
    site: Annotated[
        list[str] | None, typer.Option(help="a manager-<name> account's site (repeat)")
    ] = None,
) -> None:
    """New passwords for USERNAMEs, or for every bin that has none; printed once as
    `username password` lines. Run `export` afterwards and SIGHUP the broker."""
    now = datetime.now(UTC)
    with _session() as (session, _):
        if username:
            issued = [
                mqtt_auth.issue(session, name, now=now, site_ids=site or ()) for name in username
            ]
        else:
            issued = mqtt_auth.issue_missing_bins(session, now=now)
    for one in issued:
        print(one.username, one.password)


@mqtt_auth_app.command("set")
def set_command(
    username: Annotated[str, typer.Argument(help="the account, e.g. a service (ingest, …)")],
) -> None:
    """Give USERNAME the password read from standard input (one line), for deployments that
    hand their services their passwords themselves (docker-compose.yml). Run `export` after."""
    password = stdin_line(
        "password", f"pipe one line: printf '%s\\n' \"$PW\" | binwatch mqtt-auth set {username}"
    )
    with _session() as (session, _):
        mqtt_auth.issue(session, username, now=datetime.now(UTC), password=password)
    console().print(f"password of {username} set; run export and SIGHUP the broker")


@mqtt_auth_app.command("revoke")
def revoke_account(
    username: Annotated[str, typer.Argument(help="the account")],
    missing_ok: Annotated[
        bool, typer.Option("--missing-ok", help="no error when there is no such account")
    ] = False,
) -> None:
    """Delete an account; it is refused once the exported files reach the broker."""
    with _session() as (session, _):
        if missing_ok and not mqtt_auth.exists(session, username):
            console().print(f"no account {username}")
            return
        mqtt_auth.revoke(session, username)
    console().print(f"revoked {username}; run export and SIGHUP the broker")


@mqtt_auth_app.command("export")
def export_command(
    directory: Annotated[Path, typer.Argument(help="where to write `passwords` and `acl`")],
) -> None:
    """Write Mosquitto's password file and ACL (topic prefix from BINWATCH_TOPIC_PREFIX)."""
    with _session() as (session, settings):
        passwords, acl = mqtt_auth.export(session, directory, prefix=settings.topic_prefix)
    console().print(f"wrote {passwords} and {acl}; send Mosquitto a SIGHUP to load them")
