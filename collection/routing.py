"""The one module that calls the vehicle-routing solver: VROOM, through `pyvroom`.

Why VROOM: it installs from wheels on every machine here, it models what a collection day has
out of the box (skills, capacities in several units, time windows, breaks, service times,
priorities, a travel-time matrix we supply) and it solves a few hundred jobs in well under a
second. OR-Tools can model the same but each constraint is code of our own around its
constraint solver; VROOM's model is the problem's.

What VROOM does not model is a vehicle going back to unload and out again with another
stream: one VROOM route is one load. So the day is planned in rounds. In each round every
vehicle with shift time left is offered once per stream it carries, from the moment it is
free at its depot; VROOM assigns the waiting jobs; each vehicle keeps the load that serves the
most (priority first), unloads, and the jobs of the loads it did not keep wait for the next
round. So a load never mixes streams, and capacity holds per load.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from collection.planning import (
    Job,
    Place,
    Plan,
    Route,
    Stop,
    Unassigned,
    VehicleDay,
    no_room,
    why_unplannable,
)
from collection.travel import Matrix, TravelSource, great_circle_m
from devices.contract import Stream

# VROOM's amounts are integers: an unlimited dimension is this many litres or kilograms.
UNLIMITED: Final = 10**9
_SKILL: Final = {stream: n for n, stream in enumerate(Stream, start=1)}


@dataclass
class _Day:
    """One vehicle's day as the rounds build it."""

    vehicle: VehicleDay
    free_at: datetime
    stops: list[Stop]
    breaks: list[int] = field(default_factory=list)  # indexes into vehicle.breaks not yet taken

    @property
    def distance_m(self) -> float:
        return self.stops[-1].distance_m


def plan_day(
    jobs: Sequence[Job],
    vehicles: Sequence[VehicleDay],
    source: TravelSource,
    *,
    unload: timedelta,
    threads: int = 2,
    exploration: int = 3,
) -> Plan:
    """Routes for `vehicles` over `jobs`; every job not in a route is in `unassigned` with why.

    A job's priority says which jobs are left out when the day cannot take them all, not which
    go first. The rounds make one load per vehicle at a time, and a load made by priority (as
    VROOM weighs it: the sum of the priorities served first) takes the day's most urgent bins
    wherever they are, then the next most urgent, so the loads criss-cross the district where
    loads made by place would each sweep one part of it. So the day is planned first with every
    job alike; only when that leaves a job out for want of room or time is it planned again
    by priority, and the plan that serves more (`_served`: the sum of the priorities, then the
    jobs) is kept; on a tie the first (fewer kilometres as a rule)."""
    started = time.perf_counter()
    plan = _plan(jobs, vehicles, source, unload, threads, exploration, ranked=False)
    if any(_for_want_of_room(u) for u in plan.unassigned):
        ranked = _plan(jobs, vehicles, source, unload, threads, exploration, ranked=True)
        if _served(ranked) > _served(plan):
            plan = ranked
    return replace(plan, solver_s=time.perf_counter() - started)


def _for_want_of_room(unassigned: Unassigned) -> bool:
    return not isinstance(unassigned.why, str) and unassigned.why.id == "route.no_room"


def _served(plan: Plan) -> tuple[int, int]:
    """What a plan serves as VROOM weighs it: the sum of the priorities, then how many jobs."""
    served = [job.priority for route in plan.routes for job in route.jobs]
    return sum(served), len(served)


def _plan(
    jobs: Sequence[Job],
    vehicles: Sequence[VehicleDay],
    source: TravelSource,
    unload: timedelta,
    threads: int,
    exploration: int,
    *,
    ranked: bool,
) -> Plan:
    """One plan of the day, the loads made by priority (`ranked`) or with every job alike.

    A city's day is many districts, each with its depot. One problem of all of them costs the
    rounds far more than the sum of its parts (every vehicle is offered every waiting job, and
    the travel matrix grows with the square of the places: a 10,000-bin day took minutes), so
    each depot's vehicles are first planned over the jobs of its district (`_by_depot`: those
    whose site names it, else those nearest to it, of the jobs a vehicle there may carry), then
    every vehicle with time left is offered the jobs left over anywhere. With one depot (the
    pilot's operators) that is one problem, as before."""
    started = time.perf_counter()
    days = {
        v.id: _Day(v, v.start, [Stop("start", v.depot, v.start, v.start, 0.0, 0.0, 0.0, 0)])
        for v in vehicles
    }
    for day in days.values():
        day.breaks = list(range(len(day.vehicle.breaks)))
    parts, left = _by_depot(jobs, vehicles)
    for part_vehicles, part_jobs in parts:
        pending, unplannable = _solve(
            part_jobs,
            [days[v.id] for v in part_vehicles],
            source,
            unload,
            threads,
            exploration,
            ranked=ranked,
        )
        left += [*pending.values(), *(missed.job for missed in unplannable)]
    # The jobs left over, against the whole fleet: why none could take them, and (with more
    # than one depot) another chance with the vehicles that still have time.
    spare = [day for day in days.values() if day.free_at < day.vehicle.end]
    pending, unplannable = _solve(
        left,
        spare if len(parts) > 1 else [],
        source,
        unload,
        threads,
        exploration,
        judged_by=vehicles,
        ranked=ranked,
    )
    unassigned = [*unplannable, *(Unassigned(job, no_room(job)) for job in pending.values())]
    routes = []
    for day in days.values():
        if len(day.stops) > 1:
            last = day.stops[-1]
            end = Stop(
                "end",
                day.vehicle.depot,
                last.departure,
                last.departure,
                last.distance_m,
                0,
                0,
                last.trip,
            )
            routes.append(Route(day.vehicle.id, (*day.stops, end)))
    return Plan(tuple(routes), tuple(unassigned), time.perf_counter() - started)


def _by_depot(
    jobs: Sequence[Job], vehicles: Sequence[VehicleDay]
) -> tuple[list[tuple[list[VehicleDay], list[Job]]], list[Job]]:
    """The vehicles of each depot with the jobs of its district: a job goes to the depot its
    site names (`Job.depot`, the operator's own districts), or, when it names none or no vehicle
    there may carry it, to the nearest (in a straight line) of the depots with a vehicle that
    carries the job's stream and holds its load; and the jobs no vehicle may carry, in no part.

    Why the named depot first: the nearest depot is not the operator's district. In the 10,000-bin
    city (bench/routes.py, 23 tiled pilots) a depot amid other copies drew up to 200 jobs where
    its own copy has 154, and the round over the jobs left sent vehicles across the city; given
    its own copy's sites, op-jiejing's Monday drove 24 % fewer km (docs/performance.md, "where
    the city's kilometres go")."""
    at: dict[Place, list[VehicleDay]] = {}
    for vehicle in vehicles:
        at.setdefault(vehicle.depot, []).append(vehicle)
    near: dict[Place, list[Job]] = {depot: [] for depot in at}
    nowhere: list[Job] = []
    for job in jobs:
        depots = [
            depot
            for depot, there in at.items()
            if any(job.stream in v.streams and v.holds(job.load_l, job.load_kg) for v in there)
        ]
        if job.depot is not None and job.depot in depots:
            near[job.depot].append(job)
        elif depots:
            near[min(depots, key=lambda d: great_circle_m(d, job.place))].append(job)
        else:
            nowhere.append(job)
    return [(at[depot], near[depot]) for depot in at if near[depot]], nowhere


def _solve(
    jobs: Sequence[Job],
    days: Sequence[_Day],
    source: TravelSource,
    unload: timedelta,
    threads: int,
    exploration: int,
    *,
    judged_by: Sequence[VehicleDay] | None = None,
    ranked: bool = True,
) -> tuple[dict[str, Job], list[Unassigned]]:
    """Rounds of `days` over `jobs`: the jobs still waiting after them, and those no vehicle of
    `judged_by` (by default the days' own) could take even with an empty day, with why."""
    judges = list(judged_by if judged_by is not None else [day.vehicle for day in days])
    depots = [v.depot for v in judges] + [day.vehicle.depot for day in days]
    matrix = source.matrix(list(dict.fromkeys(depots + [job.place for job in jobs])))
    unplannable: list[Unassigned] = []
    pending: dict[str, Job] = {}
    for job in jobs:
        reason = why_unplannable(job, judges, matrix.leg)
        if reason is None:
            pending[job.id] = job
        else:
            unplannable.append(Unassigned(job, reason))
    origin = min((day.vehicle.start for day in days), default=datetime.now().astimezone())
    rounds = list(days)
    while (
        pending
        and rounds
        and _round(rounds, pending, matrix, origin, unload, threads, exploration, ranked)
    ):
        pass
    return pending, unplannable


def _round(
    days: list[_Day],
    pending: dict[str, Job],
    matrix: Matrix,
    origin: datetime,
    unload: timedelta,
    threads: int,
    exploration: int,
    ranked: bool,
) -> bool:
    """One load per vehicle (by priority when `ranked`, else every job alike); False when no
    vehicle could take any waiting job."""
    # Imported when a plan is solved, not with the module: pyvroom brings numpy and pandas
    # (most of a second of CPU), and every API and CLI process imports this module while only
    # the collector and a plan request solve.
    import vroom

    problem = vroom.Input()
    problem.set_durations_matrix("car", [[round(s) for s in row] for row in matrix.seconds])
    problem.set_distances_matrix("car", [[round(m) for m in row] for row in matrix.metres])
    streams_waiting = {job.stream for job in pending.values()}
    offers: dict[int, tuple[_Day, Stream]] = {}
    break_ids: dict[int, tuple[_Day, int]] = {}
    for day in days:
        v = day.vehicle
        if day.free_at >= v.end:
            continue
        for stream in sorted(v.streams & streams_waiting):
            offer = len(offers) + 1
            offers[offer] = (day, stream)
            breaks = []
            for b in day.breaks:
                pause = v.breaks[b]
                if pause.latest - pause.length < day.free_at:
                    continue
                break_id = len(break_ids) + 1
                break_ids[break_id] = (day, b)
                window = vroom.TimeWindow(
                    _s(max(pause.earliest, day.free_at), origin),
                    _s(pause.latest - pause.length, origin),
                )
                breaks.append(
                    vroom.Break(break_id, time_windows=[window], service=_s(pause.length))
                )
            problem.add_vehicle(
                vroom.Vehicle(
                    offer,
                    start=matrix.index[v.depot],
                    end=matrix.index[v.depot],
                    capacity=[_cap(v.capacity_l), _cap(v.capacity_kg)],
                    skills={_SKILL[stream]},
                    time_window=vroom.TimeWindow(_s(day.free_at, origin), _s(v.end, origin)),
                    breaks=breaks,
                )
            )
    if not offers:
        return False
    by_number = dict(enumerate(pending.values(), start=1))
    for number, job in by_number.items():
        windows = [vroom.TimeWindow(0, _s(job.due, origin))] if job.due is not None else []
        problem.add_job(
            vroom.Job(
                number,
                location=matrix.index[job.place],
                default_service=_s(job.service),
                pickup=[int(job.load_l + 0.999), int(job.load_kg + 0.999)],
                skills={_SKILL[job.stream]},
                priority=job.priority if ranked else 0,
                time_windows=windows,
            )
        )
    solution: dict[str, Any] = problem.solve(
        exploration_level=exploration, nb_threads=threads
    ).to_dict()
    best: dict[int, dict[str, Any]] = {}
    for route in solution["routes"]:
        day, _stream = offers[route["vehicle"]]
        rank = (
            route["priority"],
            sum(1 for s in route["steps"] if s["type"] == "job"),
            -route["duration"],
        )
        current = best.get(id(day))
        if current is None or rank > current["_rank"]:
            best[id(day)] = {**route, "_rank": rank}
    for route in best.values():
        day, _stream = offers[route["vehicle"]]
        _keep(day, route, by_number, pending, origin, unload, break_ids)
    return bool(best)


def _keep(
    day: _Day,
    route: dict[str, Any],
    by_number: dict[int, Job],
    pending: dict[str, Job],
    origin: datetime,
    unload: timedelta,
    break_ids: dict[int, tuple[_Day, int]],
) -> None:
    """Append one solved load to the vehicle's day: its jobs and breaks, then unloading; the
    day's first load also sets when the vehicle leaves its depot (the solver's start)."""
    base = day.distance_m
    trip = day.stops[-1].trip + 1
    load_l = load_kg = 0.0
    for step in route["steps"]:
        arrival = origin + timedelta(seconds=step["arrival"])
        begins = arrival + timedelta(seconds=step["waiting_time"])
        departs = begins + timedelta(seconds=step["service"] + step["setup"])
        distance = base + step["distance"]
        if step["type"] == "start" and len(day.stops) == 1:
            # The day's first load: the vehicle leaves when the solver says, which may be
            # later than its shift start (nothing to do sooner), not at the shift start.
            day.stops[0] = replace(day.stops[0], arrival=arrival, departure=arrival)
        elif step["type"] == "job":
            job = by_number[step["id"]]
            del pending[job.id]
            load_l, load_kg = load_l + job.load_l, load_kg + job.load_kg
            day.stops.append(
                Stop("job", job.place, arrival, departs, distance, load_l, load_kg, trip, job)
            )
        elif step["type"] == "break":
            _day, index = break_ids[step["id"]]
            day.breaks.remove(index)
            place = day.stops[-1].place
            day.stops.append(Stop("break", place, begins, departs, distance, load_l, load_kg, trip))
        elif step["type"] == "end":
            done = arrival + unload
            day.stops.append(
                Stop("unload", day.vehicle.depot, arrival, done, distance, 0.0, 0.0, trip)
            )
            day.free_at = done


def _s(value: datetime | timedelta, origin: datetime | None = None) -> int:
    """Whole seconds (since `origin` for a moment), as VROOM counts time."""
    if isinstance(value, datetime):
        assert origin is not None
        value = value - origin
    return max(0, int(value.total_seconds()))


def _cap(capacity: float | None) -> int:
    return UNLIMITED if capacity is None else int(capacity)
