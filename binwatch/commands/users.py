"""`binwatch users …`: the console's people: create, disable, reset a password.

A password is never an argument (it would sit in the shell's history and in `ps`): it is read
from stdin when piped, prompted for (twice, hidden) on a terminal, or generated with
`--generate` and printed once."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from binwatch.commands.security import _session, console
from security import passwords
from security.users import UserRole, create_user, disable_user, reset_password

users_app = typer.Typer(help="Console users: create, disable, reset a password.")

_GENERATE = typer.Option(help="generate a password and print it once, instead of reading one")


def _password(generate: bool) -> str:
    if generate:
        return passwords.generate()
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


def _show(password: str, generate: bool) -> None:
    if generate:
        console.print("password, shown once:")
        print(password)


@users_app.command("create")
def create_command(
    username: Annotated[str, typer.Argument(help="the login name (lower case)")],
    role: Annotated[UserRole, typer.Option(help="admin, manager, grid or operator")],
    name: Annotated[str, typer.Option(help="the name the console shows")] = "",
    site: Annotated[list[str] | None, typer.Option(help="a manager's site (repeat)")] = None,
    area: Annotated[str | None, typer.Option(help="a grid official's area id")] = None,
    operator: Annotated[str | None, typer.Option(help="an operator's company id")] = None,
    locale: Annotated[str, typer.Option(help="zh_CN or en")] = "zh_CN",
    generate: Annotated[bool, _GENERATE] = False,
) -> None:
    """Create a user with a password (from stdin, a prompt, or --generate)."""
    password = _password(generate)
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
            locale=locale,
        )
    console.print(f"user {username} ({role.value}) created")
    _show(password, generate)


@users_app.command("disable")
def disable_command(username: Annotated[str, typer.Argument(help="the login name")]) -> None:
    """The user can no longer log in; their open sessions end."""
    with _session() as (session, _):
        disable_user(session, username, now=datetime.now(UTC))
    console.print(f"user {username} disabled")


@users_app.command("reset-password")
def reset_command(
    username: Annotated[str, typer.Argument(help="the login name")],
    generate: Annotated[bool, _GENERATE] = False,
) -> None:
    """A new password (from stdin, a prompt, or --generate); open sessions end."""
    password = _password(generate)
    with _session() as (session, _):
        reset_password(session, username, password, now=datetime.now(UTC))
    console.print(f"password of {username} reset")
    _show(password, generate)
