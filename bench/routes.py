"""Three ways of emptying the same bins over the same simulated week, side by side.

The fill behaviour is the simulator's fleet model (simulator/model.py: deposits follow meal
times and office hours by stream and site type), a reading every `--interval` simulated
seconds, the same seed for every policy; the vehicles and depots are the fleet file's operator
side (devices/default_fleet.yaml), travel the straight line × circuity at the urban speed
(the default travel source). Each policy runs the day shift of every vehicle:

1. **fixed rounds**: every bin on every day's round, on a route VROOM optimises (a fair fixed
   round); what the day's shifts cannot take is left out of that day (the table's "left out": with
   the pilot's shifts, about a sixth of the bins a day, mostly hazardous ones), unless
   `--overtime-h` lengthens the shifts until the rounds take every bin;
2. **request by request** (binwatch before routes): a bin at its threshold raises a request; each
   vehicle of the operator that carries the stream takes the oldest waiting request when it is
   free, drives there from where it is, and unloads at its depot when the next bin would not fit;
3. **planned with the forecast**: at shift start, `collection.routing.plan_day` over the bins
   waiting (over their threshold), the bins the forecast rule says will pass it before the
   next shift (the same 15-minute means of the last 3 h and hourly means of the last day the
   collector reads), and the bins that come along at the stops these make
   (`collection.planning.along`, `BINWATCH_COLLECTION_TOP_UP_PCT`).

Printed per policy: kilometres driven, vehicle-hours (depot to depot), overflow-hours (bin-hours
at 100 %), requests served after their deadline (or never), extra depot trips, the jobs the plans
of the counted days left out (each plan's unassigned jobs: a job left out of two plans counts
twice), and the planner's solver time per day; then each vehicle's kilometres and trips with their mean real load.
The same seed does not give quite the same fixed and planned figures twice: for the same input
VROOM returns either of two routes of the same cost, one the other reversed (the straight-line
matrix is symmetric), even on one thread, and a reversed route empties its bins at other times
(docs/performance.md, "2026-12-03, evening: why the same seed does not give the same figures").
Request by request, which does not solve, repeats exactly.

Loads (`--load`): fixed and planned jobs are loaded as full bins, as the planner loads them
(`full`), or by the bin's expected fill at the visit (`expected`, `expected_fill_pct` plus
`--load-margin-pct` points). Either way the real-load check (`RealLoads`) puts each bin's real
litres and kilograms into its trip when it is emptied, and a bin that does not fit costs an extra
depot trip, there and back plus unloading, in kilometres and vehicle-hours. `--copies N` tiles the pilot N times into a synthetic city (each copy its own sites, depots
and vehicles, 433 bins each: 23 copies ≈ 10,000 bins; each copy's sites name their depot in
their own copy, as a fleet file of the city would).

Crews (`--late-share`, `--skip-share`, 0 by default) misbehave as the simulator's do, in every
policy alike and drawn by the same rule (`simulator.crews.Conduct`: by the bin's waiting
request, else by the bin and the day): a late crew empties the bin `LATE_BY_S` after reaching it and its
request counts late; a skipping one drives there and spends the service time but empties
nothing, and reports the request done: it counts as never served, and the bin, still full,
raises a new one at its next reading (the collector: once the completion is disputed, an hour
later), for a later plan, round or crew. Why not leave the request waiting: the same request
would draw the same skip at every visit, and its bin would never be emptied.

    .venv/bin/python bench/routes.py [--days 7] [--copies 1] [--policies fixed,requests,planned]
        [--load full|expected] [--load-margin-pct 10] [--late-share 0] [--skip-share 0]
        [--overtime-h 0]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path[0] = str(_HERE.parent)

import argparse  # noqa: E402
import itertools  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from collections import defaultdict, deque  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402
from itertools import pairwise  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

from bench.forecast import buckets  # noqa: E402
from collection import rules, series  # noqa: E402
from collection.planning import (  # noqa: E402
    Break,
    Job,
    Place,
    Route,
    VehicleDay,
    along,
    due_before_next_shift,
    spare,
)
from collection.plans import DUE_TODAY_PRIORITY, FORECAST_PRIORITY, OVERDUE_PRIORITY  # noqa: E402
from collection.routing import plan_day  # noqa: E402
from collection.travel import StraightLine, great_circle_m  # noqa: E402
from core.settings import CollectionSettings, Settings  # noqa: E402
from devices.contract import Stream  # noqa: E402
from devices.fleet import (  # noqa: E402
    Fleet,
    VehicleSpec,
    default_fleet_path,
    load_fleet,
    minutes_of,
)
from devices.registry import BinTags  # noqa: E402
from simulator.crews import LATE_BY_S, Conduct  # noqa: E402
from simulator.model import FleetModel  # noqa: E402

FULL = 100.0
DAY_BUCKET = timedelta(hours=int(series.DAY_BUCKET.removesuffix("h")))
# Copies of the pilot are laid side by side this far apart (degrees), like districts of a city.
COPY_STEP_DEG = 0.12


@dataclass(frozen=True, slots=True)
class City:
    bins: list[BinTags]
    places: dict[str, Place]  # bin → its site's place
    capacity: dict[str, float]
    threshold: dict[str, float]
    vehicles: list[tuple[str, VehicleSpec, Place]]  # operator, vehicle, depot place
    depots: dict[str, Place]  # bin → the place of its site's depot (its own copy's)


def city(copies: int) -> City:
    """The pilot fleet, tiled `copies` times (each copy its own ids, places and vehicles). Each
    copy's sites name their depot in that copy, as a fleet file of the whole city would (the
    site's own `depot`, else its operator's depot in the pilot when it has one): by nearest
    depot, a copy's sites near another copy's depot went to it (docs/performance.md, "where the
    city's kilometres go")."""
    fleet: Fleet = load_fleet(default_fleet_path())
    districts = {
        c.id: (d.id, s.id) for d in fleet.districts for s in d.streets for c in s.communities
    }
    depots = {d.id: d for d in fleet.depots}
    operators_depots: dict[str, list[str]] = defaultdict(list)
    for d in fleet.depots:
        operators_depots[d.operator].append(d.id)
    sole = {o: ids[0] for o, ids in operators_depots.items() if len(ids) == 1}
    side = math.ceil(math.sqrt(copies))
    bins: list[BinTags] = []
    places: dict[str, Place] = {}
    capacity: dict[str, float] = {}
    threshold: dict[str, float] = {}
    vehicles: list[tuple[str, VehicleSpec, Place]] = []
    site_depots: dict[str, Place] = {}
    for n in range(copies):
        dlat, dlon = (n // side) * COPY_STEP_DEG, (n % side) * COPY_STEP_DEG
        tag = "" if copies == 1 else f"c{n}-"
        for site in fleet.sites:
            district, street = districts[site.community]
            depot_id = site.depot or sole.get(site.operator)
            depot_at = depots[depot_id] if depot_id else None
            for planned in site.planned_bins():
                bin_id = tag + planned.id
                bins.append(
                    BinTags(bin_id, tag + site.id, site.type.value, planned.stream.value,
                            site.community, street, district, site.operator)
                )  # fmt: skip
                places[bin_id] = Place(site.lat + dlat, site.lon + dlon)
                if depot_at is not None:
                    site_depots[bin_id] = Place(depot_at.lat + dlat, depot_at.lon + dlon)
                capacity[bin_id] = float(planned.capacity_l)
                threshold[bin_id] = planned.threshold_pct
        for v in fleet.vehicles:
            depot = depots[v.depot]
            vehicles.append(
                (
                    v.operator,
                    v.model_copy(update={"id": tag + v.id}),
                    Place(depot.lat + dlat, depot.lon + dlon),
                )
            )
    return City(bins, places, capacity, threshold, vehicles, site_depots)


@dataclass(frozen=True, slots=True)
class Waiting:
    """A bin's open request: when the rule raised it, and when it is due (as the collector
    stores it: the stream's deadline, the kitchen round's own for its requests); `id` numbers
    the requests in the order they were raised, as the collector's table does, for `Conduct`."""

    created: datetime
    due: datetime
    id: int

    @classmethod
    def of(
        cls,
        policy: rules.Policy,
        now: datetime,
        bin_: BinTags,
        rule: rules.Rule,
        ids: Iterator[int],
    ) -> Waiting:
        return cls(now, policy.due_at(now, bin_.stream, rule), next(ids))


@dataclass
class Tally:
    km: float = 0.0
    vehicle_h: float = 0.0
    overflow_h: float = 0.0
    late: int = 0
    requests: int = 0
    extra_trips: int = 0
    left_out: int = 0  # jobs the plans left unassigned
    solver_s: list[float] = field(default_factory=list)
    # the real load of each planned trip at unloading (litres, kg) by (vehicle, route, trip)
    loads: dict[tuple[str, int, int], list[float]] = field(default_factory=dict)
    km_by_vehicle: dict[str, float] = field(default_factory=lambda: defaultdict(float))


@dataclass
class KitchenRound:
    """The collector's kitchen round (日产日清, `CollectionService.kitchen_daily`): once a local
    day at `BINWATCH_COLLECTION_KITCHEN_HOUR`, a request for every kitchen bin used since the
    round before and not emptied since, unless one is already waiting."""

    bins: list[BinTags]
    done: datetime | None = None
    last_deposit: dict[str, datetime] = field(default_factory=dict)
    last_emptied: dict[str, datetime] = field(default_factory=dict)

    def run(
        self,
        now: datetime,
        waiting: dict[str, Waiting],
        tally: Tally,
        settings: Settings,
        policy: rules.Policy,
        ids: Iterator[int],
    ) -> None:
        """The round due at `now`, if not done yet; called before `now`'s readings are seen,
        as the collector reads the deposits at the hour."""
        round_at = rules.last_local_hour(
            now, hour=settings.collection.kitchen_hour, timezone=settings.timezone
        )
        if self.done is not None and round_at != self.done:  # none before the simulation began
            for bin_ in self.bins:
                if bin_.bin not in waiting and rules.kitchen_needs_clearing(
                    last_deposit_at=self.last_deposit.get(bin_.bin),
                    last_emptied_at=self.last_emptied.get(bin_.bin),
                    round_at=round_at,
                ):
                    waiting[bin_.bin] = Waiting.of(policy, now, bin_, rules.Rule.kitchen_daily, ids)
                    tally.requests += 1
        self.done = round_at


MAX_OVERTIME_H = 12  # a shift from 07:00 then ends by 03:00, before the next one starts


def shifts(
    town: City, day: datetime, zone: ZoneInfo, overtime: timedelta = timedelta(0)
) -> dict[str, list[VehicleDay]]:
    """Each operator's vehicles on the local `day`, each shift ending `overtime` later."""
    out: dict[str, list[VehicleDay]] = defaultdict(list)
    for operator, v, depot in town.vehicles:

        def at(clock: str) -> datetime:
            return day.replace(tzinfo=zone) + timedelta(minutes=minutes_of(clock))

        breaks = tuple(
            Break(at(b.start), at(b.end), timedelta(minutes=b.minutes)) for b in v.breaks
        )
        out[operator].append(
            VehicleDay(v.id, depot, frozenset(v.streams), v.capacity_l, v.capacity_kg,
                       at(v.shift.start), at(v.shift.end) + overtime, breaks)
        )  # fmt: skip
    return out


def _leg(a: Place, b: Place, travel: StraightLine) -> tuple[float, float]:
    metres = great_circle_m(a, b) * travel.circuity
    return metres * 3.6 / travel.speed_kmh, metres


def simulate(policy: str, town: City, settings: Settings, args: argparse.Namespace) -> Tally:
    zone = ZoneInfo(settings.timezone)
    start = datetime.fromisoformat(args.start)
    warm_up = start - timedelta(days=args.warm_up_days)
    model = FleetModel(town.bins, seed=args.seed, start=warm_up, interval_s=args.interval)
    tags = {t.bin: t for t in town.bins}
    rules_policy = rules.Policy.of(settings.collection)
    travel = StraightLine(settings.route.circuity, settings.route.speed_kmh)
    tally = Tally()
    waiting: dict[str, Waiting] = {}  # a bin's open request
    ids = itertools.count(1)
    conduct = Conduct(args.seed, args.late_share, args.skip_share)
    taken: set[str] = set()
    emptyings: list[Emptying] = []
    history: dict[str, deque[tuple[datetime, float]]] = defaultdict(deque)
    keep = series.DAY_HISTORY + timedelta(hours=1)
    step_h = args.interval / 3600
    end = start + timedelta(days=args.days)
    planned_days: set[tuple[str, int]] = set()
    free_at: dict[str, datetime] = {}
    crews: dict[str, Crew] = {}
    service = timedelta(seconds=settings.route.service_s)
    unload = timedelta(minutes=settings.route.unload_min)
    evidence = rules.Evidence.of(settings.collection)
    overtime = timedelta(hours=args.overtime_h)
    kitchen = KitchenRound([t for t in town.bins if t.stream == Stream.kitchen.value])
    check = RealLoads(town, travel, unload)
    latest: dict[str, tuple[float, float]] = {}  # a bin's newest reading: litres, kg
    while model.next_ts < end:
        ts = model.next_ts
        emptyings.sort()
        while emptyings and emptyings[0].at <= ts:
            done = emptyings.pop(0)
            at, bin_id = done.at, done.bin_id
            taken.discard(bin_id)
            request = waiting.pop(bin_id, None)  # done, as the crew reports it
            if request is not None and (at > request.due or done.conduct in ("late", "skip")):
                tally.late += 1
            if done.conduct == "skip":
                continue
            if done.trip is not None:
                check.load(done, tally, *latest[bin_id])
            model.empty(bin_id)
            kitchen.last_emptied[bin_id] = at
        round_ = model.step()
        if warm_up < start <= round_.ts:  # the warm-up is over: count from here
            warm_up, tally = start, Tally(solver_s=tally.solver_s)
        kitchen.run(round_.ts, waiting, tally, settings, rules_policy, ids)
        for bin_id, reading in round_.readings:
            fill = reading.fill_pct
            if reading.deposits:
                kitchen.last_deposit[bin_id] = round_.ts
            latest[bin_id] = (fill / 100 * town.capacity[bin_id], reading.weight_kg or 0.0)
            if fill >= FULL:
                tally.overflow_h += step_h
            if fill >= town.threshold[bin_id] and bin_id not in waiting:
                waiting[bin_id] = Waiting.of(
                    rules_policy, round_.ts, tags[bin_id], rules.Rule.threshold, ids
                )
                tally.requests += 1
            if policy == "planned" or args.load != "full":
                h = history[bin_id]
                h.append((round_.ts, fill))
                while h and h[0][0] < round_.ts - keep:
                    h.popleft()
        local = round_.ts.astimezone(zone)
        day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        fleets = shifts(town, day, zone, overtime)
        first_start = min(v.start for vs in fleets.values() for v in vs)
        slot = _plan_slot(policy, round_.ts, first_start, args.replan_h)
        if slot is not None and (day.isoformat(), slot) not in planned_days:
            planned_days.add((day.isoformat(), slot))
            for operator, fleet in fleets.items():
                # a re-plan gives each vehicle what is left of its shift after its last route
                vehicles = [
                    replace(v, start=max(v.start, round_.ts, free_at.get(v.id, v.start)))
                    for v in fleet
                    if max(round_.ts, free_at.get(v.id, v.start)) < v.end
                ]
                jobs = _jobs(policy, operator, town, tags, waiting, history, round_.ts,
                             service, evidence, _next_shift(town, operator, day, zone, overtime),
                             settings.collection)  # fmt: skip
                if args.load == "expected":
                    until = max(v.end for v in fleet)
                    jobs = [_sized(j, history, round_.ts, until, args.load_margin_pct)
                            for j in jobs]  # fmt: skip
                jobs = [j for j in jobs if j.bin_id not in taken]
                if not vehicles or not jobs:
                    continue
                t0 = time.perf_counter()
                plan = plan_day(jobs, vehicles, travel, unload=unload,
                                threads=settings.route.solver_threads,
                                exploration=settings.route.solver_exploration)  # fmt: skip
                tally.solver_s.append(time.perf_counter() - t0)
                tally.left_out += len(plan.unassigned)
                if args.verbose:
                    print(
                        f"{round_.ts} {operator}: {len(jobs)} jobs, {len(plan.unassigned)} left, "
                        f"solved in {tally.solver_s[-1]:.1f} s",
                        flush=True,
                    )
                for route in plan.routes:
                    _drive(route, tally, emptyings, taken, check, waiting, conduct)
                    free_at[route.vehicle_id] = route.stops[-1].departure
        if policy == "requests":
            _serve_requests(fleets, crews, town, tags, waiting, taken, emptyings, tally, round_.ts,
                            travel, service, unload, conduct)  # fmt: skip
    final = model.next_ts
    tally.late += sum(1 for request in waiting.values() if final > request.due)
    return tally


def _next_shift(
    town: City, operator: str, day: datetime, zone: ZoneInfo, overtime: timedelta
) -> tuple[datetime, datetime]:
    """When the operator's first shift starts and its last one ends on the day after `day`."""
    fleet = shifts(town, day + timedelta(days=1), zone, overtime)[operator]
    return min(v.start for v in fleet), max(v.end for v in fleet)


def _plan_slot(policy: str, now: datetime, first_start: datetime, every_h: float) -> int | None:
    """Which planning of the day `now` falls in: fixed rounds plan once, at shift start; the
    planned policy again every `every_h` hours (the dispatcher's re-plan for new requests)."""
    if policy not in ("fixed", "planned") or now < first_start:
        return None
    if policy == "fixed":
        return 0
    return int((now - first_start).total_seconds() // (every_h * 3600))


def _drive(
    route: Route,
    tally: Tally,
    emptyings: list[Emptying],
    taken: set[str],
    check: RealLoads,
    waiting: dict[str, Waiting],
    conduct: Conduct,
) -> None:
    tally.km += route.distance_m / 1000
    tally.km_by_vehicle[route.vehicle_id] += route.distance_m / 1000
    tally.vehicle_h += route.duration.total_seconds() / 3600
    route_no = check.routes  # numbers the routes, so that each trip of each is its own load
    check.routes += 1
    for stop in route.stops:
        if stop.job is not None:
            trip = (route_no, stop.trip)
            emptyings.append(
                Emptying.by(conduct, waiting, stop.arrival, stop.job.bin_id, route.vehicle_id, trip)
            )
            taken.add(stop.job.bin_id)


@dataclass(order=True, frozen=True, slots=True)
class Emptying:
    """A bin emptied at `at`; on a planned route, by which vehicle on which of its trips;
    `conduct`: the crew's, "late", "skip" (nothing emptied) or "" (`Conduct`)."""

    at: datetime
    bin_id: str
    vehicle_id: str = ""
    trip: tuple[int, int] | None = None
    conduct: str = ""

    @classmethod
    def by(
        cls,
        conduct: Conduct,
        waiting: dict[str, Waiting],
        at: datetime,
        bin_id: str,
        vehicle_id: str = "",
        trip: tuple[int, int] | None = None,
    ) -> Emptying:
        """The crew reaching `bin_id` at `at`, drawn as the simulator's crews draw (by the bin's
        waiting request, else by the bin and the day: `Conduct.stop_key`). A late one empties
        it `LATE_BY_S` later."""
        request = waiting.get(bin_id)
        key = Conduct.stop_key(None if request is None else request.id, bin_id, at.date())
        how = conduct.of(key)
        late = timedelta(seconds=LATE_BY_S if how == "late" else 0)
        return cls(at + late, bin_id, vehicle_id, trip, how)


@dataclass
class RealLoads:
    """The real-load check of the planned routes: at each emptying the bin's real litres (its
    newest reading's fill × capacity) and kilograms (the simulator's weight) go into the
    vehicle's trip; a bin that does not fit counts an extra depot trip (from the bin to the
    depot and back, plus unloading) in kilometres and vehicle-hours, and the trip goes on from
    empty with that bin. The extra trip's time does not move the route's later stops."""

    town: City
    travel: StraightLine
    unload: timedelta
    routes: int = 0
    vehicles: dict[str, tuple[VehicleSpec, Place]] = field(init=False)

    def __post_init__(self) -> None:
        self.vehicles = {v.id: (v, depot) for _op, v, depot in self.town.vehicles}

    def load(self, emptying: Emptying, tally: Tally, litres: float, kg: float) -> None:
        assert emptying.trip is not None
        vehicle, depot = self.vehicles[emptying.vehicle_id]
        on_board = tally.loads.setdefault((emptying.vehicle_id, *emptying.trip), [0.0, 0.0])
        litres_on, kg_on = on_board[0] + litres, on_board[1] + kg
        if (vehicle.capacity_l is not None and litres_on > vehicle.capacity_l + 1e-9) or (
            vehicle.capacity_kg is not None and kg_on > vehicle.capacity_kg + 1e-9
        ):
            seconds, metres = _leg(self.town.places[emptying.bin_id], depot, self.travel)
            tally.extra_trips += 1
            tally.km += 2 * metres / 1000
            tally.km_by_vehicle[emptying.vehicle_id] += 2 * metres / 1000
            tally.vehicle_h += (2 * seconds + self.unload.total_seconds()) / 3600
            litres_on, kg_on = litres, kg
        on_board[:] = [litres_on, kg_on]


def _means(
    h: deque[tuple[datetime, float]], now: datetime
) -> tuple[list[rules.FillPoint], list[rules.FillPoint]]:
    """A bin's 15-minute means of the last hours and hourly means of the last day at `now`, as
    the collector reads them (series.recent_fill)."""
    times, fills = [a for a, _f in h], [f for _a, f in h]
    return (
        buckets(times, fills, now, series.FORECAST_HISTORY),
        buckets(times, fills, now, series.DAY_HISTORY, DAY_BUCKET),
    )


def expected_fill_pct(
    recent: Sequence[rules.FillPoint],
    day: Sequence[rules.FillPoint],
    *,
    now: datetime,
    until: datetime,
    margin_pct: float,
) -> float:
    """What a bin will hold (% of its capacity) at a visit between `now` and `until` (the end
    of the shift): its newest mean, plus what it gained over the same hours the day before (the
    rises of the last `day`'s hourly means from `now` − 1 day to `until` − 1 day, added up as
    `rules.daily_gain` adds them), plus `margin_pct` points, at most 100; 100 (planned full)
    when its history does not cover the day `daily_gain` needs.

    Why the same hours the day before and not the day's gain spread evenly: bins fill at meals
    and office hours, so a day shift's hours gain far more than their share of the day. Why
    the end of the shift: the visit's time is what the plan decides, and a load sized for the
    latest visit is never short of room for an earlier one. Why a margin: days vary; a bin
    that holds more than planned costs the crew a trip to the depot (`RealLoads` counts them).
    Measured and not kept in the product (docs/performance.md, "loads sized by the expected
    fill, measured again"): the planner loads every bin full."""
    newest = max((*recent, *day), default=None)
    if newest is None or rules.daily_gain(day, now) is None:
        return 100.0
    since, to = now - rules.DAY, min(until, now + rules.DAY) - rules.DAY
    window = sorted(p for p in day if since <= p.at <= to)
    gain = sum(max(0.0, b.fill_pct - a.fill_pct) for a, b in pairwise(window))
    return max(0.0, min(100.0, newest.fill_pct + gain + margin_pct))


def _sized(
    job: Job,
    history: dict[str, deque[tuple[datetime, float]]],
    now: datetime,
    until: datetime,
    margin_pct: float,
) -> Job:
    """`job` loaded by its bin's expected fill at the visit (`expected_fill_pct` over the
    same means the collector reads), not full."""
    recent, day = _means(history.get(job.bin_id) or deque(), now)
    pct = expected_fill_pct(recent, day, now=now, until=until, margin_pct=margin_pct)
    return replace(job, load_l=job.load_l * pct / 100)


def _jobs(
    policy: str,
    operator: str,
    town: City,
    tags: dict[str, BinTags],
    waiting: dict[str, Waiting],
    history: dict[str, deque[tuple[datetime, float]]],
    now: datetime,
    service: timedelta,
    evidence: rules.Evidence,
    next_shift: tuple[datetime, datetime],
    settings: CollectionSettings,
) -> list[Job]:
    """Fixed rounds: every bin of the operator. Planned: the bins waiting, the bins due before
    the next shift, and the bins that come along at their stops (`collection.planning.along`),
    as the collector's plans take them (collection/plans.py)."""
    jobs, spares = [], []
    for bin_id, t in tags.items():
        if t.operator != operator:
            continue
        job = Job(bin_id, bin_id, t.site, Stream(t.stream), town.places[bin_id],
                  town.capacity[bin_id], service, depot=town.depots.get(bin_id))  # fmt: skip
        if policy == "planned":
            if bin_id in waiting:
                due = waiting[bin_id].due
                job = (
                    replace(job, due=due, priority=DUE_TODAY_PRIORITY)
                    if due > now
                    else replace(job, priority=OVERDUE_PRIORITY)
                )
            else:
                h = history.get(bin_id)
                if not h:
                    continue
                recent, day = _means(h, now)
                passes = due_before_next_shift(
                    recent,
                    day,
                    threshold_pct=town.threshold[bin_id],
                    now=now,
                    next_start=next_shift[0],
                    next_end=next_shift[1],
                    evidence=evidence,
                )
                if passes is None:
                    bin_ = spare(job, recent, day, threshold_pct=town.threshold[bin_id], now=now,
                                 next_shift=next_shift, evidence=evidence)  # fmt: skip
                    if bin_ is not None:
                        spares.append(bin_)
                    continue
                job = replace(job, priority=FORECAST_PRIORITY)
        jobs.append(job)
    return jobs + along(
        jobs,
        spares,
        level_pct=settings.top_up_pct,
        reach_m=settings.top_up_reach_m,
        distance_m=great_circle_m,
    )


@dataclass
class Crew:
    """A vehicle's day under the request-by-request policy."""

    at: Place
    free: datetime
    load_l: float = 0.0
    load_kg: float = 0.0
    used: bool = False
    home: bool = False


def _serve_requests(
    fleets: dict[str, list[VehicleDay]],
    crews: dict[str, Crew],
    town: City,
    tags: dict[str, BinTags],
    waiting: dict[str, Waiting],
    taken: set[str],
    emptyings: list[Emptying],
    tally: Tally,
    now: datetime,
    travel: StraightLine,
    service: timedelta,
    unload: timedelta,
    conduct: Conduct,
) -> None:
    """Each free vehicle takes the oldest waiting request it may carry, from where it is."""
    queue = sorted((w.created, b) for b, w in waiting.items() if b not in taken)
    for operator, vehicles in fleets.items():
        for v in vehicles:
            crew = crews.setdefault(f"{v.id}@{v.start.date()}", Crew(v.depot, v.start))
            while v.start <= now < v.end and crew.free <= now:
                pick = next((b for _c, b in queue if tags[b].operator == operator
                             and Stream(tags[b].stream) in v.streams and b not in taken), None)  # fmt: skip
                if pick is None:
                    break
                job = Job(pick, pick, tags[pick].site, Stream(tags[pick].stream), town.places[pick],
                          town.capacity[pick], service)  # fmt: skip
                here, moved_s, moved_m = crew.at, 0.0, 0.0
                if not v.holds(crew.load_l + job.load_l, crew.load_kg + job.load_kg):
                    moved_s, moved_m = _leg(here, v.depot, travel)
                    moved_s += unload.total_seconds()
                    here, crew.load_l, crew.load_kg = v.depot, 0.0, 0.0
                go_s, go_m = _leg(here, job.place, travel)
                back_s, _back_m = _leg(job.place, v.depot, travel)
                arrival = max(crew.free, now) + timedelta(seconds=moved_s + go_s)
                if arrival + service + timedelta(seconds=back_s) + unload > v.end:
                    break
                tally.km += (moved_m + go_m) / 1000
                emptyings.append(Emptying.by(conduct, waiting, arrival, pick))
                taken.add(pick)
                crew.at, crew.free, crew.used = job.place, arrival + service, True
                crew.load_l += job.load_l
                crew.load_kg += job.load_kg
            if now >= v.end - timedelta(minutes=15) and crew.used and not crew.home:
                back_s, back_m = _leg(crew.at, v.depot, travel)
                tally.km += back_m / 1000
                home = max(crew.free, now) + timedelta(seconds=back_s)
                tally.vehicle_h += (home - v.start).total_seconds() / 3600
                crew.home = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=7.0, help="simulated days")
    parser.add_argument(
        "--copies", type=int, default=1, help="copies of the pilot (23 ≈ 10,000 bins)"
    )
    parser.add_argument("--seed", type=int, default=1, help="the fleet model's seed")
    parser.add_argument("--interval", type=float, default=300.0, help="reporting interval, s")
    parser.add_argument("--start", default="2026-11-23T00:00:00+08:00", help="a Monday")
    parser.add_argument(
        "--warm-up-days",
        type=float,
        default=2.0,
        help="simulated days run before --start and not counted (the forecast needs a day)",
    )
    parser.add_argument("--policies", default="fixed,requests,planned")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--load",
        choices=("full", "expected"),
        default="full",
        help="fixed and planned: a job's load is its bin's capacity (full), or its expected fill "
        "at the visit (expected_fill_pct in this file) plus --load-margin-pct",
    )
    parser.add_argument(
        "--load-margin-pct", type=float, default=10.0, help="--load expected: points added"
    )
    parser.add_argument(
        "--late-share", type=float, default=0.0, help="jobs a crew does LATE_BY_S late"
    )
    parser.add_argument(
        "--skip-share", type=float, default=0.0, help="jobs a crew reports without emptying"
    )
    parser.add_argument(
        "--replan-h",
        type=float,
        default=24.0,
        help="planned: re-plan the rest of the day every N h",
    )
    parser.add_argument(
        "--overtime-h",
        type=float,
        default=0.0,
        help="every policy: each vehicle's shift ends N h later (fixed rounds that take every bin)",
    )
    args = parser.parse_args()
    try:  # refused before the week is simulated, in the simulator's words
        Conduct(args.seed, args.late_share, args.skip_share)
    except ValueError as exc:
        parser.error(str(exc))
    if not 0 <= args.overtime_h <= MAX_OVERTIME_H:
        parser.error(f"--overtime-h is 0 to {MAX_OVERTIME_H} hours, not {args.overtime_h:g}")
    settings = Settings()
    town = city(args.copies)
    print(
        f"{len(town.bins)} bins, {len(town.vehicles)} vehicles, {args.days:g} days from "
        f"{args.start} after {args.warm_up_days:g} not counted, a reading every {args.interval:g} s, seed {args.seed}; straight line × "
        f"{settings.route.circuity} at {settings.route.speed_kmh:g} km/h; VROOM exploration "
        f"{settings.route.solver_exploration} on {settings.route.solver_threads} threads"
    )
    print(
        f"loads: {args.load}"
        + (f", margin {args.load_margin_pct:g} points" if args.load == "expected" else "")
        + f"; crews: {args.late_share:g} late, {args.skip_share:g} skipped"
        + (f"; shifts {args.overtime_h:g} h longer" if args.overtime_h else "")
    )
    print(
        "| policy | km | vehicle-h | overflow bin-h | requests | late or never | extra depot trips | left out | solver s per plan, mean (max) | run s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    loads: list[tuple[str, Tally]] = []
    for policy in args.policies.split(","):
        began = time.perf_counter()
        t = simulate(policy, town, settings, args)
        solver = (
            f"{sum(t.solver_s) / max(1, len(t.solver_s)):.2f} ({max(t.solver_s, default=0):.2f})"
            if t.solver_s
            else "–"
        )
        loads.append((policy, t))
        print(
            f"| {policy} | {t.km:,.0f} | {t.vehicle_h:,.1f} | {t.overflow_h:,.1f} | {t.requests:,} | "
            f"{t.late:,} | {t.extra_trips:,} | {t.left_out if t.solver_s else '–'} | {solver} | {time.perf_counter() - began:,.0f} |",
            flush=True,
        )
    for policy, t in loads:
        print(_loads(policy, t, town))


def _loads(policy: str, tally: Tally, town: City) -> str:
    """Each vehicle's planned trips and their mean real load at unloading (the fuller of litres
    and kilograms, % of capacity)."""
    specs = {v.id: v for _op, v, _depot in town.vehicles}
    by_vehicle: dict[str, list[float]] = defaultdict(list)
    for (vehicle_id, _route, _trip), (litres, kg) in sorted(tally.loads.items()):
        v = specs[vehicle_id]
        by_vehicle[vehicle_id].append(
            max(litres / (v.capacity_l or math.inf), kg / (v.capacity_kg or math.inf))
        )
    return f"{policy}, per vehicle: km, trips (mean real load at unloading): " + ", ".join(
        f"{vid} {tally.km_by_vehicle[vid]:,.0f} km, {len(f)} ({100 * sum(f) / len(f):.0f} %)"
        for vid, f in sorted(by_vehicle.items())
    )


if __name__ == "__main__":
    main()
