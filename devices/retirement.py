"""Retiring and reinstating bins and sites: a bin taken away (or a whole site closed) stays in the
registry with its history, but is no longer expected to report; reinstating brings it back.

A bin is *in service* when neither it nor its site is retired. The services read this from the
registry (ingest on its registry refresh, the alerter on every tick, the MQTT ACL on export), so
nothing else has to be told. Every change is recorded in `retirements` with who and why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from core.errors import InvalidRequest, NotFound
from devices.models import Bin, Retirement, Site

Target = Literal["bin", "site"]


class Change(Protocol):
    """`retire` or `reinstate`."""

    def __call__(
        self, session: Session, target: Target, target_id: str, *, actor: str, note: str,
        now: datetime,
    ) -> Retirement: ...  # fmt: skip


def in_service() -> ColumnElement[bool]:
    """The condition on a query joining `Bin` and `Site` that keeps the bins in service (an
    outer join's missing bin or site passes: what is not there cannot be retired)."""
    return Bin.retired_at.is_(None) & Site.retired_at.is_(None)


def retired_bin_ids(session: Session) -> set[str]:
    """Bins retired on their own or with their site."""
    query = select(Bin.id).join(Site, Bin.site_id == Site.id).where(~in_service())
    return set(session.scalars(query))


def retire(
    session: Session, target: Target, target_id: str, *, actor: str, note: str, now: datetime
) -> Retirement:
    """Retire a bin or a site and record it; an error if it is unknown or already retired."""
    _require_who_and_why(actor, note)
    row = _get(session, target, target_id)
    if row.retired_at is not None:
        raise InvalidRequest(
            f"{target} {target_id!r} is already retired (since {row.retired_at:%Y-%m-%d %H:%M:%S} UTC)"
        )
    row.retired_at = now
    return _record(session, "retired", target, target_id, actor=actor, note=note, now=now)


def reinstate(
    session: Session, target: Target, target_id: str, *, actor: str, note: str, now: datetime
) -> Retirement:
    """Put a retired bin or site back in service and record it. Its bins' silence is counted
    from now, so the alerter does not call a bin offline for the time it was retired."""
    _require_who_and_why(actor, note)
    row = _get(session, target, target_id)
    if row.retired_at is None:
        raise InvalidRequest(f"{target} {target_id!r} is not retired")
    row.retired_at = None
    bins = Bin.id == target_id if target == "bin" else Bin.site_id == target_id
    session.execute(update(Bin).where(bins).values(reinstated_at=now))
    return _record(session, "reinstated", target, target_id, actor=actor, note=note, now=now)


def history(session: Session, target_id: str | None = None) -> list[Retirement]:
    """The audit trail, oldest first; of one bin or site id if given."""
    query = select(Retirement).order_by(Retirement.id)
    if target_id is not None:
        query = query.where(Retirement.target_id == target_id)
    return list(session.scalars(query))


def _get(session: Session, target: Target, target_id: str) -> Bin | Site:
    row: Bin | Site | None = (
        session.get(Bin, target_id) if target == "bin" else session.get(Site, target_id)
    )
    if row is None:
        raise NotFound(f"no {target} with id {target_id!r}")
    return row


def _require_who_and_why(actor: str, note: str) -> None:
    if not actor.strip() or not note.strip():
        raise InvalidRequest("say who does it and why (--by, --note): the change is audited")


def _record(
    session: Session,
    action: str,
    target: Target,
    target_id: str,
    *,
    actor: str,
    note: str,
    now: datetime,
) -> Retirement:
    entry = Retirement(
        at=now, action=action, target=target, target_id=target_id, actor=actor, note=note
    )
    session.add(entry)
    session.commit()
    return entry
