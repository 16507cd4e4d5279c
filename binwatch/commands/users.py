"""`binwatch users …`: the console's people: create, list, change a scope, disable, reset a
password. The console's user screens (api/console/admin.py) call the same functions
(security.users), which keep the audit trail (`user_events`).

A password is never an argument (it would sit in the shell's history and in `ps`): it is read
from stdin when piped, prompted for (twice, hidden) on a terminal, or generated with
`--generate` and printed once."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from binwatch.commands.security import _session
from binwatch.output import PlainTable, console, stdin_line
from security import passwords
from security.users import (
    UserRole,
    create_user,
    describe_scope,
    disable_user,
    list_users,
    reset_password,
    set_scope,
)

users_app = typer.Typer(help="Console users: create, list, scope, disable, reset a password.")

_GENERATE = typer.Option(help="generate a password and print it once, instead of reading one")


def _password(generate: bool, username: str) -> str:
    if generate:
        return passwords.generate(username)
    if not sys.stdin.isatty():
        return stdin_line(
            "password",
            "pipe one line to the command, run it in a terminal to be asked, or pass --generate",
        )
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


def _show(password: str, generate: bool) -> None:
    if generate:
        console().print("password, shown once:")
        print(password)


@users_app.command("create")
def create_command(
    username: Annotated[str, typer.Argument(help="the login name (lower case)")],
    role: Annotated[UserRole, typer.Option(help="admin, manager, grid, operator or crew")],
    name: Annotated[str, typer.Option(help="the name the console shows")] = "",
    site: Annotated[list[str] | None, typer.Option(help="a manager's site (repeat)")] = None,
    area: Annotated[str | None, typer.Option(help="a grid official's area id")] = None,
    operator: Annotated[str | None, typer.Option(help="an operator's company id")] = None,
    vehicle: Annotated[str | None, typer.Option(help="a crew's vehicle id")] = None,
    locale: Annotated[str, typer.Option(help="zh_CN or en")] = "zh_CN",
    generate: Annotated[bool, _GENERATE] = False,
) -> None:
    """Create a user with a password (from stdin, a prompt, or --generate)."""
    password = _password(generate, username)
    with _session() as (session, _):
        create_user(
            session,
            username=username,
            display_name=name,
            password=password,
            role=role,
            now=datetime.now(UTC),
            site_ids=site or (),
            area_id=area,
            operator_id=operator,
            vehicle_id=vehicle,
            locale=locale,
        )
    console().print(f"user {username} ({role.value}) created")
    _show(password, generate)


@users_app.command("list")
def list_command() -> None:
    """Every user with role, scope and state (never a password)."""
    table = PlainTable("user", "name", "scope", "locale", "state")
    with _session() as (session, _):
        for user in list_users(session):
            state = "disabled" if user.disabled else "active"
            table.add_row(
                user.username, user.display_name, describe_scope(user), user.locale, state
            )
    console().print(table)


@users_app.command("scope")
def scope_command(
    username: Annotated[str, typer.Argument(help="the login name")],
    site: Annotated[list[str] | None, typer.Option(help="a manager's site (repeat)")] = None,
    area: Annotated[str | None, typer.Option(help="a grid official's area id")] = None,
    operator: Annotated[str | None, typer.Option(help="an operator's company id")] = None,
    vehicle: Annotated[str | None, typer.Option(help="a crew's vehicle id")] = None,
) -> None:
    """A new scope of the user's own kind (the role stays); it applies from their next page."""
    with _session() as (session, _):
        user = set_scope(
            session,
            username,
            now=datetime.now(UTC),
            site_ids=site or (),
            area_id=area,
            operator_id=operator,
            vehicle_id=vehicle,
        )
        console().print(f"user {username} now {describe_scope(user)}")


@users_app.command("disable")
def disable_command(username: Annotated[str, typer.Argument(help="the login name")]) -> None:
    """The user can no longer log in; their open sessions end."""
    with _session() as (session, _):
        disable_user(session, username, now=datetime.now(UTC))
    console().print(f"user {username} disabled")


@users_app.command("reset-password")
def reset_command(
    username: Annotated[str, typer.Argument(help="the login name")],
    generate: Annotated[bool, _GENERATE] = False,
) -> None:
    """A new password (from stdin, a prompt, or --generate); open sessions end."""
    password = _password(generate, username)
    with _session() as (session, _):
        reset_password(session, username, password, now=datetime.now(UTC))
    console().print(f"password of {username} reset")
    _show(password, generate)
