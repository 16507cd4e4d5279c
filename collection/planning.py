"""The day's routes as plain data, and the rules around the solver that need no solver: why a
job cannot be planned at all, how a route's times and loads follow from its stops, and where an
urgent job fits into a route that is already being driven.

The port (docs/collection.md, "Routes"): `collection.routing.plan_day(jobs, vehicles, travel)`
→ `Plan` (routes, unassigned jobs with their reasons). Everything here is pure: no I/O, no
clock of its own, so the unit tests pin it with hand-checkable cases.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final, Literal

from collection.rules import DAY, Evidence, FillPoint, daily_gain, day_reaches, forecast
from core.reasons import Reason
from devices.contract import Stream

# Kilograms per litre of bin contents, loose as it sits in the bin: a vehicle's `capacity_kg`
# is checked against the bins' litres times this (kitchen waste is wet and heavy, recyclables
# are mostly air).
DENSITY_KG_PER_L: Final = {
    Stream.kitchen: 0.6,
    Stream.residual: 0.2,
    Stream.recyclable: 0.05,
    Stream.hazardous: 0.3,
}


@dataclass(frozen=True, slots=True)
class Place:
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Job:
    """One bin to empty: `due` is its deadline (None: any time in the shift); `priority` 0–100
    (overdue and urgent first when not everything fits); `depot` the place of the depot whose
    district its site is in (the fleet file's `depot` of the site; None: the nearest depot)."""

    id: str
    bin_id: str
    site_id: str
    stream: Stream
    place: Place
    load_l: float
    service: timedelta
    due: datetime | None = None
    priority: int = 0
    request_id: int | None = None
    why: str = ""
    depot: Place | None = None

    @property
    def load_kg(self) -> float:
        return self.load_l * DENSITY_KG_PER_L[self.stream]


@dataclass(frozen=True, slots=True)
class Break:
    """A break of `length` somewhere between `earliest` and `latest` (its end)."""

    earliest: datetime
    latest: datetime
    length: timedelta


@dataclass(frozen=True, slots=True)
class VehicleDay:
    """A vehicle as the planner sees one day of it (its shift in absolute times)."""

    id: str
    depot: Place
    streams: frozenset[Stream]
    capacity_l: float | None
    capacity_kg: float | None
    start: datetime
    end: datetime
    breaks: tuple[Break, ...] = ()

    def holds(self, load_l: float, load_kg: float) -> bool:
        return (self.capacity_l is None or load_l <= self.capacity_l + 1e-9) and (
            self.capacity_kg is None or load_kg <= self.capacity_kg + 1e-9
        )


StopKind = Literal["start", "job", "break", "unload", "end"]


@dataclass(frozen=True, slots=True)
class Stop:
    """A stop of a route: `arrival` there, `departure` after service (or a break, or unloading);
    `distance_m` driven since the start; `load_l`/`load_kg` on board after it; `trip` counts the
    loads (each trip is one stream and ends by unloading at the depot)."""

    kind: StopKind
    place: Place
    arrival: datetime
    departure: datetime
    distance_m: float
    load_l: float
    load_kg: float
    trip: int
    job: Job | None = None
    done: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    vehicle_id: str
    stops: tuple[Stop, ...]

    @property
    def distance_m(self) -> float:
        return self.stops[-1].distance_m if self.stops else 0.0

    @property
    def duration(self) -> timedelta:
        return self.stops[-1].departure - self.stops[0].arrival if self.stops else timedelta()

    @property
    def jobs(self) -> list[Job]:
        return [stop.job for stop in self.stops if stop.job is not None]


@dataclass(frozen=True, slots=True)
class Unassigned:
    """A job no route takes, and why: a message (core/reasons.py, so a dispatcher reads it in
    their language), or the stored text of a plan from before the messages."""

    job: Job
    why: Reason | str

    @property
    def reason(self) -> str:
        """The English text, as the API and the published plan say it."""
        return self.why if isinstance(self.why, str) else self.why.text


@dataclass(frozen=True, slots=True)
class Plan:
    routes: tuple[Route, ...]
    unassigned: tuple[Unassigned, ...]
    solver_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Leg:
    seconds: float
    metres: float


Travel = Callable[[Place, Place], Leg]
"""Driving time and distance between two places (travel.py makes one from a matrix source)."""


def threshold_at(*, full_at: datetime, rate_pct_h: float, threshold_pct: float) -> datetime:
    """When a bin forecast full at `full_at`, filling at `rate_pct_h`, passes its threshold."""
    return full_at - timedelta(hours=(100 - threshold_pct) / rate_pct_h)


def due_before_next_shift(
    recent: Sequence[FillPoint],
    day: Sequence[FillPoint],
    *,
    threshold_pct: float,
    now: datetime,
    next_start: datetime,
    next_end: datetime,
    evidence: Evidence,
) -> datetime | None:
    """When a bin without a request belongs on today's plan: when it passes its threshold,
    if that is before the next shift starts or it is full before the next shift ends (which
    may reach it too late); None when it can wait. Two estimates, the earlier wins: the line
    through its `recent` points (`rules.forecast`) and the last `day`'s gain of hourly means
    (`rules.daily_gain`), which a plan made at dawn needs since the line then sees the night."""
    estimates: list[tuple[datetime, datetime]] = []
    found = forecast(recent, evidence)
    if found is not None:
        passes = threshold_at(
            full_at=found.full_at, rate_pct_h=found.rate_pct_h, threshold_pct=threshold_pct
        )
        estimates.append((passes, found.full_at))
    gain = daily_gain(day, now)
    if gain is not None:
        fill = max(day).fill_pct
        passes_by_day = day_reaches(
            fill, gain, level_pct=threshold_pct, now=now, margin=evidence.day_margin
        )
        full_by_day = day_reaches(fill, gain, level_pct=100, now=now, margin=evidence.day_margin)
        if passes_by_day is not None and full_by_day is not None:
            estimates.append((passes_by_day, full_by_day))
    due = [passes for passes, full in estimates if passes < next_start or full < next_end]
    return min(due, default=None)


# --- while the crew is there: the other bins of a stop ---------------------------------------

ALONG_PRIORITY: Final = 5
"""Below a forecast bin's priority (10) and any request's: a bin that only comes along is the
first the solver leaves out when the day is short of room or time."""


@dataclass(frozen=True, slots=True)
class Spare:
    """A bin that nothing puts on the plan by itself (no request, not due before the next
    shift), as the job it would be, with its fill now and whether it is due before the shift
    after next (`due_soon`)."""

    job: Job
    fill_pct: float
    due_soon: bool = False


def spare(
    job: Job,
    recent: Sequence[FillPoint],
    day: Sequence[FillPoint],
    *,
    threshold_pct: float,
    now: datetime,
    next_shift: tuple[datetime, datetime],
    evidence: Evidence,
) -> Spare | None:
    """A bin not due before the next shift as `along` weighs it: its newest mean, and whether
    `due_before_next_shift` takes it a day later (shifts repeat daily), when a stop nearby
    today spares it a visit of its own tomorrow; None with no reading in the history."""
    newest = max((*recent, *day), default=None)
    if newest is None:
        return None
    after_next = due_before_next_shift(
        recent,
        day,
        threshold_pct=threshold_pct,
        now=now,
        next_start=next_shift[0] + DAY,
        next_end=next_shift[1] + DAY,
        evidence=evidence,
    )
    return Spare(job, newest.fill_pct, due_soon=after_next is not None)


# A degree of latitude is 111,195 m on the haversine's sphere (travel.EARTH_RADIUS_M); a little
# less here, so the band `along` measures in is never narrower than its reach.
METRES_PER_DEGREE_LAT: Final = 111_000.0


def along(
    chosen: Sequence[Job],
    spares: Sequence[Spare],
    *,
    level_pct: float,
    reach_m: float,
    distance_m: Callable[[Place, Place], float],
) -> list[Job]:
    """The `spares` a crew empties while it is there: at least `level_pct` full or due
    before the shift after next, of the stream of some `chosen` job that stops at their site or
    within `reach_m` of it (a stop of another stream is another load, so it brings none), at
    `ALONG_PRIORITY`.

    Why: the bins of one stream at one site fill out of step, and so do neighbouring sites, so
    a street whose bins are each emptied only when due is visited for that stream on many days,
    one bin at a time. Emptied together they stay in step, and the street needs one visit where
    it needed several. The bins of a site share its place, so a bin there costs its service
    time and its room in the load, no driving; a neighbour `reach_m` away a short detour.
    `distance_m` is never shorter than the great circle (travel.great_circle_m is)."""
    sites = {(job.site_id, job.stream) for job in chosen}
    # Each stream's stop places by latitude: only those within reach north-south are measured.
    stops: dict[Stream, list[Place]] = {}
    for place, stream in sorted({(job.place, job.stream) for job in chosen}, key=_by_lat):
        stops.setdefault(stream, []).append(place)
    lats = {stream: [place.lat for place in places] for stream, places in stops.items()}
    band = reach_m / METRES_PER_DEGREE_LAT

    def on_the_way(job: Job) -> bool:
        if (job.site_id, job.stream) in sites:
            return True
        if job.stream not in stops:
            return False
        first = bisect_left(lats[job.stream], job.place.lat - band)
        last = bisect_right(lats[job.stream], job.place.lat + band)
        return any(distance_m(p, job.place) <= reach_m for p in stops[job.stream][first:last])

    return [
        replace(
            bin_.job,
            priority=ALONG_PRIORITY,
            why=f"along: {bin_.fill_pct:.0f} % full, at or near a stop for {bin_.job.stream.value}",
        )
        for bin_ in spares
        if (bin_.fill_pct >= level_pct or bin_.due_soon) and on_the_way(bin_.job)
    ]


def _by_lat(item: tuple[Place, Stream]) -> float:
    return item[0].lat


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M")


def no_room(job: Job) -> Reason:
    """Why a job that some vehicle could take is left out: the day is full."""
    return Reason.of("route.no_room", stream=job.stream)


def why_unplannable(job: Job, vehicles: Sequence[VehicleDay], travel: Travel) -> Reason | None:
    """Why no vehicle could take `job` even with an empty day (None: some could). Checked
    before solving, so every job the solver leaves out has a reason a dispatcher can act on."""
    carriers = [v for v in vehicles if job.stream in v.streams]
    if not carriers:
        return Reason.of("route.no_carrier", stream=job.stream)
    fitting = [v for v in carriers if v.holds(job.load_l, job.load_kg)]
    if not fitting:
        return Reason.of(
            "route.over_capacity", litres=job.load_l, kg=job.load_kg, stream=job.stream
        )
    reachable = []
    for v in fitting:
        there = travel(v.depot, job.place)
        arrival = v.start + timedelta(seconds=there.seconds)
        back = arrival + job.service + timedelta(seconds=travel(job.place, v.depot).seconds)
        if back <= v.end and (job.due is None or arrival <= job.due):
            reachable.append(v)
    if reachable:
        return None
    if job.due is not None and all(
        v.start + timedelta(seconds=travel(v.depot, job.place).seconds) > job.due for v in fitting
    ):
        return Reason.of("route.deadline", clock=_clock(job.due), stream=job.stream)
    return Reason.of("route.too_far", stream=job.stream)


# --- re-planning: one urgent job into the remaining day -------------------------------------


def retimed(
    vehicle: VehicleDay, stops: Sequence[Stop], travel: Travel, unload: timedelta
) -> tuple[Stop, ...] | None:
    """The stops with their times, distances and loads worked out again from the first one
    (done stops keep theirs); None when a deadline, a capacity or the shift end is broken."""
    out: list[Stop] = []
    for stop in stops:
        if stop.done or not out:
            out.append(stop)
            continue
        prev = out[-1]
        leg = travel(prev.place, stop.place)
        arrival = prev.departure + timedelta(seconds=leg.seconds)
        distance = prev.distance_m + leg.metres
        load_l, load_kg, trip = prev.load_l, prev.load_kg, prev.trip
        if stop.kind == "job":
            assert stop.job is not None
            if stop.job.due is not None and arrival > stop.job.due:
                return None
            if prev.kind in ("unload", "start"):
                trip = prev.trip + 1 if prev.kind == "unload" else max(prev.trip, 1)
            load_l, load_kg = load_l + stop.job.load_l, load_kg + stop.job.load_kg
            if not vehicle.holds(load_l, load_kg):
                return None
            departure = arrival + stop.job.service
        elif stop.kind == "break":
            departure = arrival + (stop.departure - stop.arrival)
        elif stop.kind == "unload":
            load_l = load_kg = 0.0
            departure = arrival + unload
        else:
            departure = arrival
        out.append(
            replace(
                stop,
                arrival=arrival,
                departure=departure,
                distance_m=distance,
                load_l=load_l,
                load_kg=load_kg,
                trip=trip,
            )
        )
    if out and out[-1].departure > vehicle.end:
        return None
    return tuple(out)


def _trip_stream(stops: Sequence[Stop], index: int) -> Stream | None:
    """The stream of the load the vehicle carries when it leaves stop `index`."""
    for stop in reversed(stops[: index + 1]):
        if stop.kind in ("unload", "start"):
            break
        if stop.job is not None:
            return stop.job.stream
    for stop in stops[index + 1 :]:
        if stop.kind in ("unload", "end"):
            break
        if stop.job is not None:
            return stop.job.stream
    return None


def insert_job(
    job: Job,
    routes: Sequence[Route],
    vehicles: Sequence[VehicleDay],
    travel: Travel,
    *,
    now: datetime,
    unload: timedelta,
) -> Route | Unassigned:
    """`routes` with an urgent `job` where it adds the least time to a vehicle's remaining day:
    into a load of its stream, or as a load of its own before the vehicle goes home; a vehicle
    with no route yet (idle at its depot) starts one from there at `now` or its shift start.
    Stops done or reached by `now` stay where they are, and no other stop changes its order."""
    by_id = {v.id: v for v in vehicles}
    best: tuple[timedelta, Route] | None = None
    for route in [*routes, *_idle_routes(routes, vehicles, now)]:
        vehicle = by_id.get(route.vehicle_id)
        if vehicle is None or job.stream not in vehicle.streams:
            continue
        stops = list(route.stops)
        # The end is never fixed: a route that is over can still go out again with a new load.
        fixed = max((i for i, s in enumerate(stops[:-1]) if s.done or s.arrival <= now), default=0)
        for at in range(fixed, len(stops) - 1):
            candidate = _inserted(stops, at, job)
            timed = candidate and retimed(vehicle, candidate, travel, unload)
            if not timed:
                continue
            added = (timed[-1].departure - timed[0].arrival) - route.duration
            if best is None or added < best[0]:
                best = (added, Route(route.vehicle_id, timed))
    if best is not None:
        return best[1]
    return Unassigned(job, why_unplannable(job, vehicles, travel) or no_room(job))


def _idle_routes(
    routes: Sequence[Route], vehicles: Sequence[VehicleDay], now: datetime
) -> list[Route]:
    """An empty route (start, end at its depot) for each vehicle `routes` do not use."""
    used = {route.vehicle_id for route in routes}
    out = []
    for vehicle in vehicles:
        if vehicle.id in used:
            continue
        leaves = max(vehicle.start, now)
        start = Stop("start", vehicle.depot, leaves, leaves, 0.0, 0.0, 0.0, 0)
        out.append(Route(vehicle.id, (start, replace(start, kind="end"))))
    return out


def _inserted(stops: list[Stop], at: int, job: Job) -> list[Stop] | None:
    """The stops with `job` right after stop `at`: into the load leaving there when it is of
    the job's stream (or the trip is empty), or, just before the end, as a new load that is
    unloaded at the depot; None where the job cannot go (a load of another stream)."""
    here = stops[at]
    new = Stop("job", job.place, here.departure, here.departure, 0, 0, 0, here.trip, job)
    if stops[at + 1].kind == "end":
        depot = stops[-1].place
        unload = Stop("unload", depot, here.departure, here.departure, 0, 0, 0, here.trip)
        return [*stops[: at + 1], new, unload, *stops[at + 1 :]]
    if _trip_stream(stops, at) in (None, job.stream):
        return [*stops[: at + 1], new, *stops[at + 1 :]]
    return None
