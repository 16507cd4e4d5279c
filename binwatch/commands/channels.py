"""`binwatch channels …`: where people read of alerts and escalations — a site's property
manager, an area's contact (a community, a street's squad) — on a WeCom or DingTalk group robot
or by e-mail, in Chinese or English (docs/alerts.md).

They live in the registry, not the fleet file: a robot's URL holds its key (whoever has it can
post to the group) and DingTalk's signing secret is one too, and the fleet file lives in git. So
both are read from standard input, like webhook secrets, and `list` never shows them."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer
from sqlalchemy import Select, select

from binwatch.commands.fleet import _registry
from binwatch.output import PlainTable, console, fail
from core.chat_robots import shown_url
from core.settings import Settings
from core.webhook_targets import url_problem
from devices.models import Area, ContactChannel, Site

channels_app = typer.Typer(
    help="People's channels of site and area contacts: WeCom and DingTalk robots, e-mail."
)


class Kind(StrEnum):
    wecom = "wecom"
    dingtalk = "dingtalk"
    email = "email"


class Language(StrEnum):
    zh_CN = "zh_CN"
    en = "en"


SiteOption = Annotated[str | None, typer.Option(help="a site: its property manager")]
AreaOption = Annotated[str | None, typer.Option(help="an area: a community or a street's squad")]


@channels_app.command("set")
def set_command(
    kind: Annotated[Kind, typer.Argument(help="wecom, dingtalk or email")],
    site: SiteOption = None,
    area: AreaOption = None,
    to: Annotated[str | None, typer.Option(help="e-mail: the addresses, comma-separated")] = None,
    locale: Annotated[Language, typer.Option(help="the messages' language")] = Language.zh_CN,
) -> None:
    """Add or replace a contact's channel. A robot's URL (WeCom: …/webhook/send?key=…,
    DingTalk: …/robot/send?access_token=…) is read from standard input, then for DingTalk its
    signing secret (SEC…) on the next line."""
    owner, owner_id = _owner(site, area)
    addresses = robot_url = robot_secret = None
    if kind is Kind.email:
        addresses = ",".join(a.strip() for a in (to or "").split(",") if a.strip())
        if not addresses or any("@" not in a for a in addresses.split(",")):
            fail("an e-mail channel needs --to with one or more addresses")
        # Each goes into the To header: a space or a line break would make it something else.
        if odd := [
            a for a in addresses.split(",") if any(c.isspace() or not c.isprintable() for c in a)
        ]:
            fail(f"an e-mail address holds a space or a control character: {odd[0]!r}")
    else:
        robot_url = _read("robot URL")
        allow = Settings().webhook.allow_private
        if problem := url_problem(shown_url(robot_url), allow_private=allow):
            fail(f"refused: {problem}")
        if kind is Kind.dingtalk:
            robot_secret = _read("signing secret")
    with _registry() as session:
        known = session.get(Site if owner == "site" else Area, owner_id)
        if known is None:
            fail(f"no {owner} {owner_id!r} in the registry")
        channel = session.scalar(_query(owner, owner_id).where(ContactChannel.kind == kind.value))
        if channel is None:
            channel = ContactChannel(owner=owner, owner_id=owner_id, kind=kind.value)
            session.add(channel)
        channel.locale = locale.value
        channel.addresses, channel.robot_url, channel.robot_secret = (
            addresses,
            robot_url,
            robot_secret,
        )
        session.commit()
        typer.echo(f"{kind.value} channel {channel.id} set for {owner} {owner_id} ({locale.value})")


@channels_app.command("remove")
def remove_command(
    kind: Annotated[Kind, typer.Argument(help="wecom, dingtalk or email")],
    site: SiteOption = None,
    area: AreaOption = None,
) -> None:
    """Remove a contact's channel (its queued notifications go with it)."""
    owner, owner_id = _owner(site, area)
    with _registry() as session:
        channel = session.scalar(_query(owner, owner_id).where(ContactChannel.kind == kind.value))
        if channel is None:
            fail(f"{owner} {owner_id} has no {kind.value} channel")
        session.delete(channel)
        session.commit()
    typer.echo(f"{kind.value} channel removed from {owner} {owner_id}")


@channels_app.command("list")
def list_command(site: SiteOption = None, area: AreaOption = None) -> None:
    """The channels (of one contact, or all): robots by host only, secrets never shown."""
    table = PlainTable("id", "contact", "kind", "language", "to")
    with _registry() as session:
        query = select(ContactChannel)
        if site or area:
            query = _query(*_owner(site, area))
        for channel in session.scalars(query.order_by(ContactChannel.id)):
            to = channel.addresses or shown_url(channel.robot_url or "")
            contact = f"{channel.owner} {channel.owner_id}"
            table.add_row(str(channel.id), contact, channel.kind, channel.locale, to)
    console().print(table)


def _owner(site: str | None, area: str | None) -> tuple[str, str]:
    if (site is None) == (area is None):
        raise typer.BadParameter("give exactly one of --site and --area")
    return ("site", site) if site is not None else ("area", area or "")


def _query(owner: str, owner_id: str) -> Select[ContactChannel]:
    return select(ContactChannel).where(
        ContactChannel.owner == owner, ContactChannel.owner_id == owner_id
    )


def _read(what: str) -> str:
    if sys.stdin.isatty():
        value: str = typer.prompt(what, hide_input=True)
    else:
        value = sys.stdin.readline().strip()
    if not value:
        fail(f"no {what} on standard input")
    return value
