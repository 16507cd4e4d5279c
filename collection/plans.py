"""The routes of the day in the registry: what to plan (an operator's waiting requests and its
vehicles' shifts), planning and storing it, inserting an urgent request into the plan in force,
and reading plans back. The SQL boundary of planning; the planning itself is
`collection.routing` (solver) and `collection.planning` (pure rules).

Jobs are the operator's requests still waiting for a crew, whatever raised them: the threshold,
the kitchen daily clearing (日产日清), the forecast (a bin full before the next working day) or
a person. A deadline inside the day becomes the job's time window; a request already overdue
gets none and the highest priority, so it is planned first, as soon as a vehicle can. Then,
with the bins' fill at hand, the bins due before the next shift, and the bins that come along
at the stops all these make (`forecast_jobs`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collection import series
from collection.models import OPEN_STATUSES, CollectionRequest, RoutePlan, RouteStop
from collection.planning import (
    ALONG_PRIORITY,
    Break,
    Job,
    Place,
    Plan,
    Route,
    Stop,
    Unassigned,
    VehicleDay,
    along,
    due_before_next_shift,
    insert_job,
    spare,
)
from collection.routing import plan_day
from collection.rules import Evidence, FillPoint
from collection.travel import great_circle_m, travel_source
from core.errors import InvalidRequest, NotFound, SinkError
from core.influx import InfluxClient
from core.reasons import Reason, as_columns
from core.settings import Settings
from devices.contract import Stream
from devices.fleet import minutes_of
from devices.messages import PlannedStop, RoutesPlanned, UnassignedJob, VehicleRoute
from devices.models import Bin, Depot, Site, Vehicle
from devices.retirement import retired_bin_ids

log = logging.getLogger(__name__)


class NoVehicles(InvalidRequest):
    """Nothing can be planned for the operator: it has no vehicles. `reason` says so as a
    message (core/reasons.py), for the console to write in the reader's language."""

    def __init__(self, operator_id: str) -> None:
        self.reason = Reason.of("route.no_vehicles", operator=operator_id)
        super().__init__(self.reason.text)


OVERDUE_PRIORITY = 100
DUE_TODAY_PRIORITY = 50


def _at(day: date, clock: str, zone: ZoneInfo) -> datetime:
    minutes = minutes_of(clock)
    return datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)


def vehicle_days(
    session: Session, operator_id: str, day: date, *, zone: ZoneInfo, now: datetime
) -> list[VehicleDay]:
    """The operator's vehicles on `day`, each from its shift start (or `now`, later in the day)."""
    rows = session.execute(
        select(Vehicle, Depot)
        .join(Depot, Vehicle.depot_id == Depot.id)
        .where(Vehicle.operator_id == operator_id)
        .order_by(Vehicle.id)
    )
    out = []
    for vehicle, depot in rows:
        start, end = _at(day, vehicle.shift_start, zone), _at(day, vehicle.shift_end, zone)
        breaks = tuple(
            Break(
                _at(day, b["start"], zone),
                _at(day, b["end"], zone),
                timedelta(minutes=b["minutes"]),
            )
            for b in vehicle.breaks
        )
        out.append(
            VehicleDay(
                vehicle.id,
                Place(depot.latitude, depot.longitude),
                frozenset(Stream(s) for s in vehicle.streams),
                vehicle.capacity_l,
                vehicle.capacity_kg,
                max(start, now.astimezone(zone)),
                end,
                breaks,
            )
        )
    return out


def request_jobs(
    session: Session, operator_id: str, *, settings: Settings, now: datetime
) -> list[Job]:
    """The operator's requests waiting for a crew, as jobs (see the module's docstring)."""
    zone = ZoneInfo(settings.timezone)
    depots = depot_places(session, operator_id)
    rows = session.execute(
        select(CollectionRequest, Bin, Site)
        .join(Bin, CollectionRequest.bin_id == Bin.id)
        .join(Site, CollectionRequest.site_id == Site.id)
        .where(
            CollectionRequest.operator_id == operator_id,
            CollectionRequest.status.in_(OPEN_STATUSES),
        )
        .order_by(CollectionRequest.id)
    )
    return [
        _job(request, bin_row, site, depots, settings=settings, now=now, zone=zone)
        for request, bin_row, site in rows
    ]


def depot_places(session: Session, operator_id: str) -> dict[str, Place]:
    """Where each of the operator's depots is, by id: a job is planned from the depot its site
    names (`Site.depot_id`, the fleet file's `depot`; `Job.depot`), else from the nearest."""
    rows = session.execute(
        select(Depot.id, Depot.latitude, Depot.longitude).where(Depot.operator_id == operator_id)
    )
    return {depot_id: Place(lat, lon) for depot_id, lat, lon in rows}


def _job(
    request: CollectionRequest,
    bin_row: Bin,
    site: Site,
    depots: Mapping[str, Place],
    *,
    settings: Settings,
    now: datetime,
    zone: ZoneInfo,
) -> Job:
    overdue = request.due_at <= now
    return Job(
        id=f"request-{request.id}",
        bin_id=bin_row.id,
        site_id=site.id,
        stream=Stream(bin_row.stream),
        place=Place(site.latitude, site.longitude),
        load_l=float(bin_row.capacity_l),  # planned full: a bin is fuller when the crew comes
        service=timedelta(seconds=settings.route.service_s),
        due=None if overdue else request.due_at.astimezone(zone),
        priority=OVERDUE_PRIORITY if overdue else DUE_TODAY_PRIORITY,
        request_id=request.id,
        why=request.rule,
        depot=depots.get(site.depot_id) if site.depot_id else None,
    )


@dataclass(frozen=True, slots=True)
class Fills:
    """What the forecast part of a plan reads, by bin: the last hours in 15-minute means
    (`recent`) and the last day in hourly means (`day`)."""

    recent: Mapping[str, Sequence[FillPoint]]
    day: Mapping[str, Sequence[FillPoint]]


def fills_or_none(influx: InfluxClient, now: datetime) -> Fills | None:
    """The bins' fill for the forecast part of a plan; with InfluxDB down (or its database
    not made yet), none: a plan of the waiting requests beats no plan, and the collector's
    forecast step reports the outage."""
    try:
        return Fills(
            recent=series.recent_fill(influx, now),
            day=series.recent_fill(
                influx, now, history=series.DAY_HISTORY, bucket=series.DAY_BUCKET
            ),
        )
    except SinkError as exc:
        log.warning("planning routes without the forecast: %s", exc)
        return None


FORECAST_PRIORITY = 10  # below any request: a bin not yet due goes only where there is room


def forecast_jobs(
    session: Session,
    operator_id: str,
    fills: Fills,
    *,
    now: datetime,
    next_shift: tuple[datetime, datetime],
    settings: Settings,
    requests: Sequence[Job],
) -> list[Job]:
    """The operator's bins without a request that should be emptied today: on the forecast
    (`collection.planning.due_before_next_shift`), over their threshold before the next
    shift starts, or full before it ends, instead of overflowing or needing a trip of their
    own tomorrow; and, at the stops these and the `requests` make (or within
    `BINWATCH_COLLECTION_TOP_UP_REACH_M` of one), the bins of the same stream at least
    `BINWATCH_COLLECTION_TOP_UP_PCT` full (`collection.planning.along`)."""
    evidence = Evidence.of(settings.collection)
    retired = retired_bin_ids(session)
    depots = depot_places(session, operator_id)
    skip = {job.bin_id for job in requests}
    rows = session.execute(
        select(Bin, Site)
        .join(Site, Bin.site_id == Site.id)
        .where(Site.operator_id == operator_id, Bin.id.in_({*fills.recent, *fills.day}))
        .order_by(Bin.id)
    )
    jobs, spares = [], []
    for bin_row, site in rows:
        if bin_row.id in skip or bin_row.id in retired:
            continue
        recent, day = fills.recent.get(bin_row.id, ()), fills.day.get(bin_row.id, ())
        job = Job(
            id=f"forecast-{bin_row.id}",
            bin_id=bin_row.id,
            site_id=site.id,
            stream=Stream(bin_row.stream),
            place=Place(site.latitude, site.longitude),
            load_l=float(bin_row.capacity_l),
            service=timedelta(seconds=settings.route.service_s),
            priority=FORECAST_PRIORITY,
            depot=depots.get(site.depot_id) if site.depot_id else None,
        )
        passes = due_before_next_shift(
            recent,
            day,
            threshold_pct=bin_row.threshold_pct,
            now=now,
            next_start=next_shift[0],
            next_end=next_shift[1],
            evidence=evidence,
        )
        if passes is not None:
            why = f"forecast: passes {bin_row.threshold_pct:.0f} % at {passes.isoformat(timespec='minutes')}"
            jobs.append(replace(job, why=why))
        elif (
            bin_ := spare(
                job,
                recent,
                day,
                threshold_pct=bin_row.threshold_pct,
                now=now,
                next_shift=next_shift,
                evidence=evidence,
            )
        ) is not None:
            spares.append(bin_)
    return jobs + along(
        [*requests, *jobs],
        spares,
        level_pct=settings.collection.top_up_pct,
        reach_m=settings.collection.top_up_reach_m,
        distance_m=great_circle_m,
    )


def shifts_of(
    session: Session, operator_id: str, day: date, zone: ZoneInfo
) -> tuple[datetime, datetime]:
    """When the operator's first shift starts and its last shift ends on `day` (shifts repeat
    daily); ValueError when it has no vehicles."""
    shifts = session.execute(
        select(Vehicle.shift_start, Vehicle.shift_end).where(Vehicle.operator_id == operator_id)
    ).all()
    return (
        _at(day, min((s for s, _e in shifts), key=minutes_of), zone),
        _at(day, max((e for _s, e in shifts), key=minutes_of), zone),
    )


def next_shift(
    session: Session, operator_id: str, day: date, zone: ZoneInfo
) -> tuple[datetime, datetime]:
    """The operator's shifts of the day after `day` (`shifts_of`)."""
    return shifts_of(session, operator_id, day + timedelta(days=1), zone)


def automatic_plan_at(settings: Settings, day: date) -> datetime | None:
    """When the collector plans `day` by itself, if the day has no plan by then
    (`BINWATCH_ROUTE_PLAN_HOUR`, `CollectorService.plan_routes`); None: days are planned only
    on request. A day with a plan (a dispatcher's, or the demo's) is not planned over."""
    hour = settings.route.plan_hour
    if hour is None:
        return None
    return datetime.combine(day, time(hour), tzinfo=ZoneInfo(settings.timezone))


@dataclass(frozen=True, slots=True)
class NoRoutes:
    """Why a day shows no route (the operator's, or one vehicle's) and what comes next, for the
    screens that would otherwise be blank: the dispatcher's and the crew's.

    `why`: `past` (a day gone by that was never planned), `not_planned` (today or ahead, no
    plan yet), `shifts_over` (the plan was made after the day's shifts, the vehicle's, had
    ended: no time was left to drive), `left_out` (jobs there were, but no route could take one:
    the plan's unassigned say why), `nothing_due` (no request waited for a crew and no bin was
    due when the plan was made)."""

    why: str
    planned_at: datetime | None  # when the plan in force was made
    shifts_end: datetime | None  # when the day's last shift (the vehicle's) ends
    over: bool  # that end has passed
    next_shift: datetime | None  # when the next day's first shift (the vehicle's) starts
    automatic_at: datetime | None  # when binwatch plans this day by itself (None: it will not)
    next_automatic_at: datetime | None  # when it plans the next day by itself


def no_routes(
    session: Session,
    operator_id: str,
    day: date,
    plan: RoutePlan | None,
    *,
    settings: Settings,
    now: datetime,
    vehicle: Vehicle | None = None,
) -> NoRoutes:
    """Why `day` has no route for the operator (or for `vehicle`, a crew's), given the plan in
    force (`latest_plan`), and when the next plan or shift comes."""
    zone = ZoneInfo(settings.timezone)
    today = now.astimezone(zone).date()
    after = day + timedelta(days=1) if day < date.max else None  # 9999-12-31 has no next day
    shifts: tuple[datetime, datetime] | None
    following: tuple[datetime, datetime] | None = None
    if vehicle is not None:
        shifts = _at(day, vehicle.shift_start, zone), _at(day, vehicle.shift_end, zone)
        if after is not None:
            following = _at(after, vehicle.shift_start, zone), _at(after, vehicle.shift_end, zone)
    else:
        try:
            shifts = shifts_of(session, operator_id, day, zone)
            following = shifts_of(session, operator_id, after, zone) if after else None
        except ValueError:  # no vehicles (any more): no shift to name
            shifts = None
    if plan is None:
        why = "past" if day < today else "not_planned"
    elif shifts is not None and plan.created_at >= shifts[1]:
        why = "shifts_over"
    elif vehicle is None and plan.unassigned:
        why = "left_out"
    else:
        why = "nothing_due"
    return NoRoutes(
        why=why,
        planned_at=plan.created_at if plan is not None else None,
        shifts_end=shifts[1] if shifts else None,
        over=shifts is not None and now >= shifts[1],
        next_shift=following[0] if following else None,
        automatic_at=automatic_plan_at(settings, day) if why == "not_planned" else None,
        next_automatic_at=automatic_plan_at(settings, after) if after else None,
    )


def plan_operator_day(
    session: Session,
    operator_id: str,
    day: date,
    *,
    settings: Settings,
    now: datetime,
    actor: str,
    fills: Fills | None = None,
) -> RoutePlan:
    """Plan the operator's day from scratch (from `now` on) and store it as the next version:
    its waiting requests, and, given the bins' recent `fills`, the bins forecast to pass their
    threshold before the next shift and the bins that come along at the stops of all these."""
    zone = ZoneInfo(settings.timezone)
    vehicles = vehicle_days(session, operator_id, day, zone=zone, now=now)
    if not vehicles:
        raise NoVehicles(operator_id)
    jobs = request_jobs(session, operator_id, settings=settings, now=now)
    if fills is not None:
        jobs += forecast_jobs(
            session,
            operator_id,
            fills,
            now=now,
            next_shift=next_shift(session, operator_id, day, zone),
            settings=settings,
            requests=jobs,
        )
    plan = plan_day(
        jobs,
        vehicles,
        travel_source(settings.route),
        unload=timedelta(minutes=settings.route.unload_min),
        threads=settings.route.solver_threads,
        exploration=settings.route.solver_exploration,
    )
    along_count = sum(1 for j in jobs if j.priority == ALONG_PRIORITY)
    forecast_count = sum(1 for j in jobs if j.request_id is None) - along_count
    note = (
        f"{len(jobs) - forecast_count - along_count} waiting request(s) and {forecast_count} "
        f"bin(s) forecast over their threshold before the next shift, {along_count} bin(s) "
        f"along at their stops, on {len(vehicles)} vehicle(s)"
    )
    return save_plan(session, operator_id, day, plan, now=now, actor=actor, note=note)


def insert_request(
    session: Session,
    request_id: int,
    day: date,
    *,
    operator_id: str,
    settings: Settings,
    now: datetime,
    actor: str,
) -> RoutePlan:
    """A new version of the plan in force with one urgent request inserted into the best
    vehicle's remaining route; stops done or reached stay as they were (or, when it fits
    nowhere, the same routes with the request unassigned and why)."""
    request = session.get(CollectionRequest, request_id)
    if request is None or request.operator_id != operator_id:
        raise NotFound(f"no collection request {request_id} for operator {operator_id!r}")
    if request.status not in OPEN_STATUSES:
        raise InvalidRequest(f"request {request_id} is not waiting for a crew")
    current = latest_plan(session, request.operator_id, day)
    if current is None:
        return plan_operator_day(
            session, request.operator_id, day, settings=settings, now=now, actor=actor
        )
    zone = ZoneInfo(settings.timezone)
    vehicles = vehicle_days(session, request.operator_id, day, zone=zone, now=current.created_at)
    bin_row, site = session.get_one(Bin, request.bin_id), session.get_one(Site, request.site_id)
    depots = depot_places(session, request.operator_id)
    job = _job(request, bin_row, site, depots, settings=settings, now=now, zone=zone)
    routes = [r for r in stored_routes(current) if all(j.request_id != request_id for j in r.jobs)]
    places = {stop.place for route in routes for stop in route.stops}
    places |= {job.place} | {v.depot for v in vehicles}
    travel = travel_source(settings.route).matrix(sorted(places, key=lambda p: (p.lat, p.lon)))
    unload = timedelta(minutes=settings.route.unload_min)
    placed = insert_job(job, routes, vehicles, travel.leg, now=now, unload=unload)
    unassigned = [u for u in _unassigned(current) if u.job.request_id != request_id]
    if isinstance(placed, Unassigned):
        new_routes, unassigned = routes, [*unassigned, placed]
        note = f"request {request_id} fits no route: {placed.reason}"
    else:
        new_routes = [placed if r.vehicle_id == placed.vehicle_id else r for r in routes]
        if all(r.vehicle_id != placed.vehicle_id for r in routes):
            new_routes.append(placed)
        note = f"request {request_id} inserted into {placed.vehicle_id}'s route"
    plan = Plan(tuple(new_routes), tuple(unassigned))
    return save_plan(session, request.operator_id, day, plan, now=now, actor=actor, note=note)


PLAN_AHEAD_DAYS = 7
"""How far ahead a dispatcher may plan: the requests and forecasts a plan is made of say
nothing about next month."""


class DayNotPlannable(InvalidRequest):
    """A re-plan asked for a past day (a plan is what crews will do, never a rewrite of what
    they did) or too far ahead."""


def check_plannable(day: date, today: date) -> None:
    last = today + timedelta(days=PLAN_AHEAD_DAYS)
    if not today <= day <= last:
        raise DayNotPlannable(
            f"a plan can be made for today or a day ahead, {today} to {last}: not {day}"
        )


def replan(
    session: Session,
    influx: InfluxClient,
    operator_id: str,
    day: date,
    *,
    settings: Settings,
    now: datetime,
    actor: str,
    request_id: int | None = None,
) -> RoutePlan:
    """A dispatcher's re-plan, from the API or the console: without `request_id`, the rest of
    the day planned again (waiting requests, bins forecast over their threshold before the next
    shift, and the bins along at their stops); with it, that urgent request inserted into the plan in force."""
    check_plannable(day, now.astimezone(ZoneInfo(settings.timezone)).date())
    if request_id is None:
        fills = fills_or_none(influx, now)
        return plan_operator_day(
            session, operator_id, day, settings=settings, now=now, actor=actor, fills=fills
        )
    return insert_request(
        session, request_id, day, settings=settings, now=now, actor=actor, operator_id=operator_id
    )


def save_plan(
    session: Session,
    operator_id: str,
    day: date,
    plan: Plan,
    *,
    now: datetime,
    actor: str,
    note: str,
) -> RoutePlan:
    """Store `plan` as the day's next version (unpublished: the collector publishes it)."""
    version = session.scalar(
        select(func.max(RoutePlan.version)).where(
            RoutePlan.operator_id == operator_id, RoutePlan.day == day.isoformat()
        )
    )
    row = RoutePlan(
        operator_id=operator_id,
        day=day.isoformat(),
        version=(version or 0) + 1,
        created_at=now,
        actor=actor,
        note=note,
        solver_ms=round(plan.solver_s * 1000),
        unassigned=[_unassigned_json(u) for u in plan.unassigned],
        webhook_attempts=0,
    )
    session.add(row)
    for route in plan.routes:
        for position, stop in enumerate(route.stops):
            row.stops.append(_stop_row(route.vehicle_id, position, stop))
    session.commit()
    return row


def _unassigned_json(item: Unassigned) -> dict[str, Any]:
    job = item.job
    return {
        "job": job.id,
        "request_id": job.request_id,
        "bin_id": job.bin_id,
        "site_id": job.site_id,
        "stream": job.stream.value,
        "lat": job.place.lat,
        "lon": job.place.lon,
        "load_l": job.load_l,
        "service_s": job.service.total_seconds(),
        "due_at": job.due.isoformat() if job.due else None,
        "reason": item.reason,
        # The reason as a message (core/reasons.py): the console writes it in the reader's
        # language. Not in the published plan, whose contract has the English text.
        "reason_msg": as_columns(item.why)[1],
    }


def _stop_row(vehicle_id: str, position: int, stop: Stop) -> RouteStop:
    job = stop.job
    return RouteStop(
        vehicle_id=vehicle_id,
        position=position,
        trip=stop.trip,
        kind=stop.kind,
        request_id=job.request_id if job else None,
        bin_id=job.bin_id if job else None,
        site_id=job.site_id if job else None,
        stream=job.stream.value if job else None,
        latitude=stop.place.lat,
        longitude=stop.place.lon,
        arrival_at=_second(stop.arrival),
        departure_at=_second(stop.departure),
        due_at=_second(job.due) if job and job.due else None,
        distance_m=stop.distance_m,
        load_l=stop.load_l,
        load_kg=stop.load_kg,
        volume_l=job.load_l if job else None,
        done_at=None,
    )


def _second(moment: datetime) -> datetime:
    """UTC to the second, as the plan is stored and read back (the solver counts seconds)."""
    return moment.astimezone(UTC).replace(microsecond=0)


def latest_plan(session: Session, operator_id: str, day: date) -> RoutePlan | None:
    """The plan in force: the day's newest version."""
    return session.scalars(
        select(RoutePlan)
        .where(RoutePlan.operator_id == operator_id, RoutePlan.day == day.isoformat())
        .order_by(RoutePlan.version.desc())
        .limit(1)
    ).first()


def plan_or_404(session: Session, operator_id: str, day: date) -> RoutePlan:
    plan = latest_plan(session, operator_id, day)
    if plan is None:
        raise NotFound(f"no routes planned for operator {operator_id!r} on {day.isoformat()}")
    return plan


def stored_routes(plan: RoutePlan) -> list[Route]:
    """The plan's routes as the planner's data again; a stop whose request no longer waits for
    a crew (or whose crew reported it) is done."""
    by_vehicle: dict[str, list[Stop]] = {}
    for row in plan.stops:
        job = None
        if row.kind == "job" and row.bin_id and row.site_id and row.stream:
            job = Job(
                f"request-{row.request_id}" if row.request_id else f"forecast-{row.bin_id}",
                row.bin_id,
                row.site_id,
                Stream(row.stream),
                Place(row.latitude, row.longitude),
                row.volume_l or 0.0,
                row.departure_at - row.arrival_at,
                row.due_at,
                request_id=row.request_id,
            )
        request = _request_status(row)
        done = row.done_at is not None or (request is not None and request not in OPEN_STATUSES)
        by_vehicle.setdefault(row.vehicle_id, []).append(
            Stop(
                row.kind,  # type: ignore[arg-type]
                Place(row.latitude, row.longitude),
                row.arrival_at,
                row.departure_at,
                row.distance_m,
                row.load_l,
                row.load_kg,
                row.trip,
                job,
                done,
            )
        )
    return [Route(vehicle, tuple(stops)) for vehicle, stops in by_vehicle.items()]


def _request_status(row: RouteStop) -> str | None:
    """The status of the stop's request now (None for a stop without one)."""
    if row.request_id is None:
        return None
    session = Session.object_session(row)
    assert session is not None
    return session.get_one(CollectionRequest, row.request_id).status


def _unassigned(plan: RoutePlan) -> list[Unassigned]:
    return [
        Unassigned(
            Job(
                u["job"],
                u["bin_id"],
                u["site_id"],
                Stream(u["stream"]),
                Place(u["lat"], u["lon"]),
                u["load_l"],
                timedelta(seconds=u["service_s"]),
                datetime.fromisoformat(u["due_at"]) if u["due_at"] else None,
                request_id=u["request_id"],
            ),
            Reason.load(u.get("reason_msg")) or u["reason"],
        )
        for u in plan.unassigned
    ]


def vehicle_stops(plan: RoutePlan, vehicle_id: str) -> Sequence[RouteStop]:
    stops = [s for s in plan.stops if s.vehicle_id == vehicle_id]
    if not stops:
        raise NotFound(f"no route for vehicle {vehicle_id!r} in this plan")
    return stops


def routes_message(plan: RoutePlan, vehicle_id: str | None = None) -> RoutesPlanned:
    """The plan as published and as the API answers it (one vehicle's, or all)."""
    vehicles: dict[str, list[RouteStop]] = {}
    for stop in plan.stops:
        if vehicle_id is None or stop.vehicle_id == vehicle_id:
            vehicles.setdefault(stop.vehicle_id, []).append(stop)
    return RoutesPlanned(
        operator_id=plan.operator_id,
        day=plan.day,
        version=plan.version,
        created_at=plan.created_at,
        note=plan.note,
        solver_ms=plan.solver_ms,
        vehicles=[
            VehicleRoute(
                vehicle_id=vehicle,
                distance_m=round(stops[-1].distance_m),
                duration_s=round((stops[-1].departure_at - stops[0].arrival_at).total_seconds()),
                jobs=sum(1 for s in stops if s.kind == "job"),
                stops=[
                    PlannedStop(
                        stop_id=s.id,
                        position=s.position,
                        trip=s.trip,
                        kind=s.kind,
                        request_id=s.request_id,
                        bin_id=s.bin_id,
                        site_id=s.site_id,
                        stream=s.stream,
                        lat=s.latitude,
                        lon=s.longitude,
                        arrival_at=s.arrival_at,
                        departure_at=s.departure_at,
                        due_at=s.due_at,
                        distance_m=round(s.distance_m),
                        load_l=round(s.load_l, 1),
                        load_kg=round(s.load_kg, 1),
                    )
                    for s in stops
                ],
            )
            for vehicle, stops in vehicles.items()
        ],
        unassigned=[]
        if vehicle_id is not None
        else [
            UnassignedJob(
                request_id=u["request_id"],
                bin_id=u["bin_id"],
                site_id=u["site_id"],
                stream=u["stream"],
                reason=u["reason"],
            )
            for u in plan.unassigned
        ],
    )
