"""The SQL boundary of collection: requests, their audit trail, and the grid's contacts.

"One open request per bin" is the partial unique index `uq_collection_requests_open_bin`
(devices/models.py), so creating is "insert, and if the database refuses, one exists": no
process memory is involved and any number of ingest workers may race. Every change of status
or escalation level is a conditional UPDATE (`WHERE status = <what we read>`), so two writers
cannot both move the same request, and appends its audit event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from collection.lifecycle import OPEN, Actor, Status, TransitionRefused, check
from collection.models import CollectionEvent, CollectionRequest, RoutePlan
from collection.rules import Policy, Rule
from core.errors import NotFound
from core.reasons import Reason, as_columns
from core.sql import Slice, paged
from devices.models import Area, AreaContact, Bin, Operator, Site, Vehicle
from devices.retirement import in_service

_OPEN = [s.value for s in OPEN]
# A completed request still waiting for its verification speaks for the bin too: a reading
# sent before the crew emptied it but stored after must not open a second request. If the bin
# really is still full, verification disputes it and the next reading opens a new one.
_BUSY = [*_OPEN, Status.completed.value]


@dataclass(frozen=True, slots=True)
class Opened:
    """The bin's request now: `created` says whether this call made it."""

    request: CollectionRequest
    created: bool


def thresholds(session: Session) -> dict[str, float]:
    """Every bin's threshold, by bin id (ingest's hook caches this)."""
    return {bin_id: pct for bin_id, pct in session.execute(select(Bin.id, Bin.threshold_pct))}


def busy_bins(session: Session, bin_ids: Iterable[str]) -> set[str]:
    """Which of these bins already have a request the rules defer to: one query for a batch."""
    return set(
        session.scalars(
            select(CollectionRequest.bin_id).where(
                CollectionRequest.bin_id.in_(list(bin_ids)), CollectionRequest.status.in_(_BUSY)
            )
        )
    )


def kitchen_bins(session: Session) -> list[str]:
    """The kitchen bins in service: a retired one is not cleared (devices/retirement.py). A bin
    whose site is missing from the registry is kept, to fail loudly where it is handled."""
    query = select(Bin.id).outerjoin(Site, Bin.site_id == Site.id)
    return list(
        session.scalars(query.where(Bin.stream == "kitchen", in_service()).order_by(Bin.id))
    )


def open_request(
    session: Session,
    *,
    bin_id: str,
    rule: Rule,
    reason: Reason | str,
    now: datetime,
    policy: Policy,
    actor: Actor,
    fill_pct: float | None = None,
    commit: bool = True,
) -> Opened:
    """Ensure the bin has a request waiting for a crew: the existing one, or a new one. Manual
    requests only defer to open ones; rules also to one awaiting verification. `commit=False`
    leaves the commit to the caller, so a batch of bins costs one (SQLite: one fsync). A rule
    gives its `Reason`; a person's own words (a `str`) are stored as typed."""
    blocking = _OPEN if rule is Rule.manual else _BUSY
    existing = _current(session, bin_id, blocking)
    if existing is not None:
        return Opened(existing, created=False)
    bin_ = session.get(Bin, bin_id)
    if bin_ is None:
        raise NotFound(f"no bin with id {bin_id!r}")
    site = session.get_one(Site, bin_.site_id)
    text, message = as_columns(reason)
    request = CollectionRequest(
        bin_id=bin_.id,
        site_id=site.id,
        operator_id=site.operator_id,
        stream=bin_.stream,
        rule=rule.value,
        reason=text,
        reason_msg=message,
        status=Status.open.value,
        created_at=now,
        due_at=policy.due_at(now, bin_.stream, rule),
        updated_at=now,
        trigger_fill_pct=fill_pct,
        escalation_level=0,
        webhook_attempts=0,
    )
    try:
        with session.begin_nested():  # a savepoint: a lost race undoes this insert only
            session.add(request)
            session.flush()
            _event(session, request, now, actor, None, Status.open, note=reason)
        if commit:
            session.commit()
    except IntegrityError:
        # Another worker opened it between our look and our insert.
        winner = _current(session, bin_id, _OPEN)
        if winner is None:
            raise
        return Opened(winner, created=False)
    return Opened(request, created=True)


# Each lost race means another writer moved the request; a request has only a few states to
# move through, so a few attempts settle it.
TRANSITION_ATTEMPTS: Final = 3


def transition(
    session: Session,
    request_id: int,
    to: Status,
    *,
    actor: Actor,
    now: datetime,
    note: Reason | str = "",
    **changes: Any,
) -> CollectionRequest:
    """Move a request to `to` if the state machine lets `actor` do it; `TransitionRefused` says
    why not. `changes` are further columns set in the same UPDATE.

    Optimistic: the UPDATE holds only while the status is still the one checked. When another
    writer moved it in between (the collector dispatching a request as its operator
    acknowledges it, on another node), the state machine is asked again on the new status, so
    an action that is still allowed is not refused for a race the caller cannot see."""
    for _attempt in range(TRANSITION_ATTEMPTS):
        request = get_request(session, request_id)
        status = Status(request.status)
        check(
            request_id=request.id,
            status=status,
            operator_id=request.operator_id,
            to=to,
            actor=actor,
        )
        moved = session.execute(
            update(CollectionRequest)
            .where(CollectionRequest.id == request_id, CollectionRequest.status == status.value)
            .values(status=to.value, updated_at=now, **changes)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount == 1:  # type: ignore[attr-defined]
            _event(session, request, now, actor, status, to, note=note)
            session.commit()
            session.refresh(request)
            return request
        session.rollback()  # and read the request again
    raise TransitionRefused(f"request {request_id} changed while this was asked; try again")


def complete(
    session: Session, request_id: int, *, actor: Actor, now: datetime, note: Reason | str = ""
) -> CollectionRequest:
    """The operator's crew emptied the bin (the API's complete, the crew's "emptied" tap): the
    next readings verify or dispute it (collection/service.py)."""
    return transition(
        session, request_id, Status.completed, actor=actor, now=now, note=note, completed_at=now
    )


def report(
    session: Session, request: CollectionRequest, *, actor: Actor, now: datetime, note: Reason
) -> CollectionEvent:
    """A crew's word on a request that changes nothing (it could not empty the bin, and why):
    a `report` event, for the dispatcher to decide what comes next."""
    status = Status(request.status)
    event = _event(session, request, now, actor, status, status, note=note)
    event.kind = "report"
    session.commit()
    return event


def escalate(
    session: Session,
    request: CollectionRequest,
    *,
    level: int,
    now: datetime,
    actor: Actor,
    note: Reason | str,
    **webhook: Any,
) -> bool:
    """Raise an open request to `level` (from the level below); False if someone got there first
    or it is no longer open. `webhook` is the first webhook attempt's state for the event
    (`webhook_attempts`, `webhook_next_at`, `webhook_delivered_at`)."""
    moved = session.execute(
        update(CollectionRequest)
        .where(
            CollectionRequest.id == request.id,
            CollectionRequest.escalation_level == level - 1,
            CollectionRequest.status.in_(_OPEN),
        )
        .values(escalation_level=level, escalated_at=now)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return False
    status = Status(request.status)
    event = _event(session, request, now, actor, status, status, note=note)
    event.kind, event.escalation_level = "escalation", level
    for key, value in webhook.items():
        setattr(event, key, value)
    session.commit()
    session.refresh(request)
    return True


def record_delivery(session: Session, row: CollectionRequest | RoutePlan, **changes: Any) -> None:
    """Delivery bookkeeping of a request or a plan (published, webhook attempts, the last
    error): not a transition, so no audit event; the row shows it."""
    for key, value in changes.items():
        setattr(row, key, value)
    session.commit()


def escalation_webhooks_due(session: Session, now: datetime) -> list[CollectionEvent]:
    """Escalations whose webhook has another attempt due by `now`, oldest first."""
    return list(
        session.scalars(
            select(CollectionEvent)
            .options(selectinload(CollectionEvent.request))
            .where(
                CollectionEvent.kind == "escalation",
                CollectionEvent.webhook_next_at.is_not(None),
                CollectionEvent.webhook_next_at <= now,
            )
            .order_by(CollectionEvent.id)
        )
    )


def record_escalation_webhook(session: Session, event: CollectionEvent, **changes: Any) -> None:
    """An escalation webhook's retry bookkeeping (attempts, next try, delivery, the note's
    outcome): the event stays the one escalation, no new audit row."""
    for key, value in changes.items():
        setattr(event, key, value)
    session.commit()


def _current(session: Session, bin_id: str, statuses: list[str]) -> CollectionRequest | None:
    return session.scalars(
        select(CollectionRequest)
        .where(CollectionRequest.bin_id == bin_id, CollectionRequest.status.in_(statuses))
        .order_by(CollectionRequest.id.desc())
        .limit(1)
    ).first()


def _event(
    session: Session,
    request: CollectionRequest,
    now: datetime,
    actor: Actor,
    from_status: Status | None,
    to: Status,
    *,
    note: Reason | str,
) -> CollectionEvent:
    text, message = as_columns(note)
    event = CollectionEvent(
        request_id=request.id,
        at=now,
        actor=str(actor),
        kind="transition",
        from_status=from_status.value if from_status else None,
        to_status=to.value,
        note=text,
        note_msg=message,
        exported=False,
    )
    session.add(event)
    return event


# --- reads -------------------------------------------------------------------------------------


def get_request(session: Session, request_id: int) -> CollectionRequest:
    request = session.get(
        CollectionRequest, request_id, options=[selectinload(CollectionRequest.events)]
    )
    if request is None:
        raise NotFound(f"no collection request with id {request_id}")
    return request


def list_requests(
    session: Session,
    *,
    status: Status | None = None,
    site_id: str | None = None,
    operator_id: str | None = None,
    bin_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    visible_sites: frozenset[str] | None = None,
    limit: int = 100,
    offset: int = 0,
    after: tuple[int] | None = None,
    count: bool = True,
) -> Slice[CollectionRequest]:
    """A page of requests, newest first (by id), and the total matching (`count`); `after`
    the id of the last request of the previous page; start/end bound `created_at`;
    `visible_sites` (None: all) is the caller's scope."""
    conditions: list[ColumnElement[bool]] = []
    if visible_sites is not None:
        conditions.append(CollectionRequest.site_id.in_(visible_sites))
    if status is not None:
        conditions.append(CollectionRequest.status == status.value)
    if site_id is not None:
        conditions.append(CollectionRequest.site_id == site_id)
    if operator_id is not None:
        conditions.append(CollectionRequest.operator_id == operator_id)
    if bin_id is not None:
        conditions.append(CollectionRequest.bin_id == bin_id)
    if start is not None:
        conditions.append(CollectionRequest.created_at >= start)
    if end is not None:
        conditions.append(CollectionRequest.created_at < end)
    return paged(
        session,
        select(CollectionRequest).where(*conditions),
        keys=[CollectionRequest.id],
        descending=True,
        limit=limit,
        offset=offset,
        after=after,
        count=count,
    )


def with_status(session: Session, statuses: Iterable[Status]) -> list[CollectionRequest]:
    """Requests in these statuses, oldest first (the collector's work lists)."""
    return list(
        session.scalars(
            select(CollectionRequest)
            .where(CollectionRequest.status.in_([s.value for s in statuses]))
            .order_by(CollectionRequest.id)
        )
    )


def overdue(session: Session, now: datetime) -> list[CollectionRequest]:
    """Open requests past their deadline that have not reached the top of the grid yet."""
    return list(
        session.scalars(
            select(CollectionRequest)
            .where(
                CollectionRequest.status.in_(_OPEN),
                CollectionRequest.due_at <= now,
                CollectionRequest.escalation_level < 2,
            )
            .order_by(CollectionRequest.id)
        )
    )


def operator(session: Session, operator_id: str) -> Operator:
    return session.get_one(Operator, operator_id)


def escalation_contact(
    session: Session, request: CollectionRequest, level: int
) -> tuple[str, AreaContact | None]:
    """The area that hears of an overdue request at `level` (1: the site's community, 2: that
    community's street) and its contact, if one is configured."""
    area_id = session.get_one(Site, request.site_id).community_id
    if level == 2:
        area_id = session.get_one(Area, area_id).parent_id or area_id
    return area_id, session.get(AreaContact, area_id)


def kitchen_requested_since(session: Session, since: datetime) -> set[str]:
    """Bins that already had a kitchen-daily request in this round."""
    return set(
        session.scalars(
            select(CollectionRequest.bin_id).where(
                CollectionRequest.rule == Rule.kitchen_daily.value,
                CollectionRequest.created_at >= since,
            )
        )
    )


def last_emptied(session: Session) -> dict[str, datetime]:
    """When each bin was last reported emptied (by a completion that was not disputed)."""
    rows = session.execute(
        select(CollectionRequest.bin_id, func.max(CollectionRequest.completed_at))
        .where(CollectionRequest.status.in_([Status.completed.value, Status.verified.value]))
        .group_by(CollectionRequest.bin_id)
    )
    return {bin_id: at for bin_id, at in rows if at is not None}


def unexported_events(session: Session, limit: int) -> list[CollectionEvent]:
    return list(
        session.scalars(
            select(CollectionEvent)
            .options(selectinload(CollectionEvent.request))
            .where(CollectionEvent.exported.is_(False))
            .order_by(CollectionEvent.id)
            .limit(limit)
        )
    )


def mark_exported(session: Session, events: list[CollectionEvent]) -> None:
    session.execute(
        update(CollectionEvent)
        .where(CollectionEvent.id.in_([e.id for e in events]))
        .values(exported=True)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def route_plans_to_deliver(session: Session, attempts: int, now: datetime) -> list[RoutePlan]:
    """Plans not yet on the broker, or whose webhook is still to be tried (the operator has a
    signed webhook, not delivered, attempts left, next try due)."""
    return list(
        session.scalars(
            select(RoutePlan)
            .join(Operator, RoutePlan.operator_id == Operator.id)
            .where(
                or_(
                    RoutePlan.published_at.is_(None),
                    and_(
                        Operator.webhook_url.is_not(None),
                        Operator.webhook_secret.is_not(None),
                        RoutePlan.webhook_delivered_at.is_(None),
                        RoutePlan.webhook_attempts < attempts,
                        or_(RoutePlan.webhook_next_at.is_(None), RoutePlan.webhook_next_at <= now),
                    ),
                )
            )
            .order_by(RoutePlan.id)
        )
    )


def operators_to_plan(session: Session, day: date) -> list[str]:
    """Operators with vehicles and no plan for `day` yet."""
    planned = select(RoutePlan.operator_id).where(RoutePlan.day == day.isoformat())
    return list(
        session.scalars(
            select(Vehicle.operator_id)
            .where(Vehicle.operator_id.not_in(planned))
            .distinct()
            .order_by(Vehicle.operator_id)
        )
    )
