"""A crew's day (issue 16): the stops of its vehicle's route in force, and its taps on them.

A tap is "emptied" or "could not empty" (with a reason) on one stop. Its id is made by the
phone (a UUID), so the network may lose an answer or the phone replay its offline queue:
the id is claimed first (the table's primary key, so two copies racing cannot both act),
then the tap acts, and every later copy answers what the first did.

- emptied: the stop's request is completed through the lifecycle like the API's complete
  (acknowledged first when the dispatch has not been acknowledged yet: the crew at the bin is
  the operator's answer), so the bin's next readings verify or dispute it;
- could not empty: a `report` event on the request with the reason as a structured message
  (core/reasons.py), and the request left waiting for the dispatcher.
A stop without a request (a bin forecast to fill) has nothing to complete: the tap is kept.
A tap the lifecycle refuses (the request was cancelled, or completed by someone else) is kept
as refused with the reason, and answers so again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from collection import store
from collection.lifecycle import OPEN, Actor, Role, Status, TransitionRefused
from collection.models import TAP_REASONS, CollectionRequest, CrewTap, RoutePlan, RouteStop
from collection.plans import latest_plan
from core.errors import InvalidRequest, NotAllowed, NotFound
from core.reasons import Reason
from devices.models import Site, Vehicle

EMPTIED: Final = "emptied"
NOT_EMPTIED: Final = "not_emptied"


@dataclass(frozen=True, slots=True)
class CrewStop:
    """A job stop of the crew's route with its site, its request as it is now and the crew's
    last tap on it."""

    stop: RouteStop
    site: Site | None
    request: CollectionRequest | None
    tap: CrewTap | None


@dataclass(frozen=True, slots=True)
class Tap:
    """What the phone sent: its id for the tap, what was done and, if not emptied, why."""

    id: UUID
    action: str
    reason: str | None = None

    @classmethod
    def of(cls, tap_id: str, action: str, reason: str) -> Tap:
        """The tap from a form's fields (a reason alone is "could not empty": the screen has a
        button per reason); TapError says what is wrong with them."""
        if not action and reason:
            action = NOT_EMPTIED
        try:
            parsed = UUID(tap_id)
        except ValueError:
            raise TapError(f"tap id {tap_id[:40]!r} is not a UUID", "bad_tap_id") from None
        if action == EMPTIED:
            return cls(parsed, action)
        if action != NOT_EMPTIED:
            raise TapError(
                f"a tap is {EMPTIED} or {NOT_EMPTIED}, not {action[:40]!r}", "bad_action"
            )
        if reason not in TAP_REASONS:
            raise TapError(
                f"could not empty needs a reason: {', '.join(TAP_REASONS)}", "bad_reason"
            )
        return cls(parsed, action, reason)


class TapError(InvalidRequest):
    """A tap that cannot be taken; `code` lets the console say why in the reader's language."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Tapped:
    tap: CrewTap
    repeated: bool  # this id had been taken before: nothing was done again


def vehicle(session: Session, vehicle_id: str | None) -> Vehicle:
    found = session.get(Vehicle, vehicle_id) if vehicle_id else None
    if found is None:
        raise NotFound(f"no vehicle with id {vehicle_id!r}")
    return found


def day_stops(session: Session, crew_vehicle: Vehicle, day: date) -> list[CrewStop]:
    """The job stops of the vehicle's route in the plan in force for `day`, in driving order
    (none when nothing is planned)."""
    plan = latest_plan(session, crew_vehicle.operator_id, day)
    if plan is None:
        return []
    stops = [s for s in plan.stops if s.vehicle_id == crew_vehicle.id and s.kind == "job"]
    taps = _last_taps(session, [s.id for s in stops])
    requests = {
        r.id: r
        for r in session.scalars(
            select(CollectionRequest).where(
                CollectionRequest.id.in_([s.request_id for s in stops if s.request_id])
            )
        )
    }
    sites = {
        site.id: site
        for site in session.scalars(select(Site).where(Site.id.in_({s.site_id for s in stops})))
    }
    return [
        CrewStop(
            s,
            sites.get(s.site_id or ""),
            requests.get(s.request_id) if s.request_id else None,
            taps.get(s.id),
        )
        for s in stops
    ]


def _last_taps(session: Session, stop_ids: list[int]) -> dict[int, CrewTap]:
    taps: dict[int, CrewTap] = {}
    query = select(CrewTap).where(CrewTap.stop_id.in_(stop_ids)).order_by(CrewTap.at)
    for tap in session.scalars(query):
        if tap.outcome != "refused" or tap.stop_id not in taps:
            taps[tap.stop_id] = tap  # a refused tap does not hide one that acted
    return taps


def crew_stop(session: Session, crew_vehicle: Vehicle, stop_id: int, day: date) -> RouteStop:
    """A job stop of this vehicle in any version of the day's plans (a tap queued offline may
    name a stop of a plan re-planned since); NotFound for any other, existing or not."""
    stop = session.get(RouteStop, stop_id)
    plan = session.get(RoutePlan, stop.plan_id) if stop is not None else None
    if (
        stop is None
        or plan is None
        or stop.vehicle_id != crew_vehicle.id
        or stop.kind != "job"
        or plan.day != day.isoformat()
    ):
        raise NotFound(f"no stop with id {stop_id} on this vehicle's route today")
    return stop


def taken(session: Session, tap: Tap, stop: RouteStop) -> Tapped | None:
    """The earlier copy of this tap, if it was taken already; TapError if its id was used for
    another stop (a phone's UUIDs do not collide: this is someone replaying another's)."""
    existing = session.get(CrewTap, str(tap.id))
    if existing is None:
        return None
    if existing.stop_id != stop.id or existing.vehicle_id != stop.vehicle_id:
        raise TapError(f"tap {tap.id} was taken on another stop", "tap_elsewhere")
    return Tapped(existing, repeated=True)


def take(
    session: Session,
    tap: Tap,
    stop: RouteStop,
    *,
    crew_vehicle: Vehicle,
    actor_key: str,
    now: datetime,
    photo: str | None = None,
) -> Tapped:
    """Take the tap once: claim its id (insert it: the primary key refuses a second copy, even
    one racing this from another worker), act, record the outcome; a copy answers that."""
    row = CrewTap(
        id=str(tap.id),
        stop_id=stop.id,
        vehicle_id=stop.vehicle_id,
        request_id=stop.request_id,
        actor=actor_key,
        action=tap.action,
        reason=tap.reason,
        photo=photo,
        at=now,
        outcome="pending",
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # taken before, or by a copy racing this one: that copy acts
        session.rollback()
        again = taken(session, tap, stop)
        if again is None:
            raise
        return again
    actor = Actor(Role.operator, crew_vehicle.operator_id, key=actor_key)
    row.outcome, row.refusal = _act(session, tap, stop.request_id, actor, now)
    if row.outcome != "refused" and stop.done_at is None:
        stop.done_at = now
    session.commit()
    return Tapped(row, repeated=False)


def _act(
    session: Session, tap: Tap, request_id: int | None, actor: Actor, now: datetime
) -> tuple[str, str | None]:
    """What the tap does to the stop's request: its outcome and, if refused, why."""
    if request_id is None:
        return "noted", None
    request = store.get_request(session, request_id)
    try:
        if tap.action == NOT_EMPTIED:
            if Status(request.status) not in OPEN:
                raise TransitionRefused(f"request {request_id} is {request.status}")
            store.report(session, request, actor=actor, now=now, note=_reason(tap))
            return "reported", None
        if Status(request.status) in (Status.open, Status.dispatched):
            store.transition(session, request_id, Status.acknowledged, actor=actor, now=now)
        store.complete(session, request_id, actor=actor, now=now)
    except TransitionRefused as exc:
        return "refused", str(exc)
    return "completed", None


def _reason(tap: Tap) -> Reason:
    return Reason.of(f"crew.{tap.reason}")


# --- the photos, for the people who check the crews' work -----------------------------------


@dataclass(frozen=True, slots=True)
class Photo:
    """A tap's photo: its key in the photo store, and the site it proves a visit to
    (what decides who may see it)."""

    tap: CrewTap
    site_id: str


def photo(session: Session, tap_id: UUID) -> Photo:
    """The photo of tap `tap_id`; NotFound when there is no such tap or it has no photo."""
    tap = session.get(CrewTap, str(tap_id))
    stop = session.get(RouteStop, tap.stop_id) if tap is not None else None
    if tap is None or tap.photo is None or stop is None or stop.site_id is None:
        raise NotFound(f"no photo of tap {tap_id}")
    return Photo(tap, stop.site_id)


def tap_on(session: Session, tap_id: UUID, stop_id: int, crew_vehicle: Vehicle) -> CrewTap:
    """A tap this vehicle took on this stop, on any day (its photo may follow it after
    midnight); NotFound for any other, existing or not."""
    tap = session.get(CrewTap, str(tap_id))
    if tap is None or tap.stop_id != stop_id or tap.vehicle_id != crew_vehicle.id:
        raise NotFound(f"no tap {tap_id} on stop {stop_id} of vehicle {crew_vehicle.id!r}")
    return tap


class PhotoTooLate(InvalidRequest):
    """A photo sent for a tap taken too long before: it would be shown as that visit's evidence,
    at the tap's time, though it may show the bin on any later day."""


def photo_in_time(tap: CrewTap, now: datetime, *, late: timedelta) -> None:
    """PhotoTooLate unless `now` is within `late` of the tap (BINWATCH_ROUTE_PHOTO_LATE_H): a
    photo follows its tap from the same phone, after midnight at worst, never days later (a
    tap of last week left without one took a photo of today's bin as its proof)."""
    at = tap.at if tap.at.tzinfo is not None else tap.at.replace(tzinfo=UTC)
    if now - at > late:
        hours = late.total_seconds() / 3600
        raise PhotoTooLate(
            f"tap {tap.id} was taken at {at.isoformat(timespec='seconds')}; its photo had to"
            f" follow within {hours:g} h of it, and a photo sent later proves nothing of that visit"
        )


def photo_by_its_taker(tap: CrewTap, actor: str) -> None:
    """NotAllowed unless `actor` (the caller as the audit trail names it) took the tap: the
    history shows a photo as the crew's, beside the tap, so an operator's or an admin's key
    giving a crew's tap a photo would put words in the crew's mouth."""
    if tap.actor != actor:
        raise NotAllowed(
            f"tap {tap.id} was taken by another key: only the key that took a tap may send its"
            " photo"
        )


def attach_photo(session: Session, tap: CrewTap, key: str) -> bool:
    """Give the tap its photo unless it has one: a photo is the crew's evidence and is never
    replaced, not even by a copy of the same upload racing this one. Whether this one did."""
    attached = session.execute(
        update(CrewTap).where(CrewTap.id == tap.id, CrewTap.photo.is_(None)).values(photo=key)
    )
    session.commit()
    session.refresh(tap)
    return bool(attached.rowcount)  # type: ignore[attr-defined]


def photos_of(session: Session, request_id: int) -> list[CrewTap]:
    """The taps on a request that carried a photo, oldest first."""
    query = (
        select(CrewTap)
        .where(CrewTap.request_id == request_id, CrewTap.photo.is_not(None))
        .order_by(CrewTap.at)
    )
    return list(session.scalars(query))
