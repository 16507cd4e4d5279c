"""Planning routes without any server: hand-checkable cases on a straight street running north
from the depot, a bin every kilometre, driven at 36 km/h with no detour (1 km = 100 s)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from collection.planning import (
    ALONG_PRIORITY,
    Break,
    Job,
    Place,
    Route,
    Spare,
    Stop,
    Unassigned,
    VehicleDay,
    along,
    due_before_next_shift,
    insert_job,
    retimed,
    spare,
    threshold_at,
)
from collection.routing import plan_day
from collection.rules import Evidence, FillPoint, daily_gain
from collection.travel import StraightLine, great_circle_m
from core.reasons import Reason
from core.settings import Settings
from devices.contract import Stream

MORNING = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)  # 08:00 in the city
KM_NORTH = 1000 / 111_195  # degrees of latitude per kilometre on the haversine's sphere
DEPOT = Place(30.0, 104.0)
STREET = StraightLine(circuity=1.0, speed_kmh=36)  # 10 m/s: 1 km takes 100 s
UNLOAD = timedelta(minutes=10)
SERVICE = timedelta(seconds=60)


def at_km(km: float) -> Place:
    return Place(DEPOT.lat + km * KM_NORTH, DEPOT.lon)


def job(
    name: str,
    km: float,
    stream: Stream = Stream.residual,
    *,
    litres: float = 240,
    due: datetime | None = None,
) -> Job:
    return Job(name, f"bin-{name}", f"site-{name}", stream, at_km(km), litres, SERVICE, due)


def vehicle(
    name: str = "v1",
    streams: tuple[Stream, ...] = (Stream.residual,),
    *,
    litres: float | None = 10_000,
    kg: float | None = None,
    hours: float = 8,
) -> VehicleDay:
    return VehicleDay(
        name, DEPOT, frozenset(streams), litres, kg, MORNING, MORNING + timedelta(hours=hours)
    )


def loads(route: Route) -> list[list[Job]]:
    """The jobs of each load (between unloadings), in order."""
    out: list[list[Job]] = [[]]
    for stop in route.stops:
        if stop.kind == "unload":
            out.append([])
        elif stop.job is not None:
            out[-1].append(stop.job)
    return [load for load in out if load]


def test_the_straight_line_is_the_great_circle_times_the_circuity_at_the_speed() -> None:
    matrix = StraightLine(circuity=1.4, speed_kmh=20).matrix([DEPOT, at_km(1)])
    assert great_circle_m(DEPOT, at_km(1)) == pytest.approx(1000, abs=0.5)
    assert matrix.metres[0][1] == pytest.approx(1400, abs=1)
    assert matrix.seconds[0][1] == pytest.approx(1400 / (20 / 3.6), abs=0.5)  # 252 s
    assert matrix.metres[0][0] == 0


def test_one_vehicle_takes_the_street_and_comes_back() -> None:
    plan = plan_day([job("b", 2), job("a", 1), job("c", 3)], [vehicle()], STREET, unload=UNLOAD)
    assert plan.unassigned == ()
    (route,) = plan.routes
    assert sorted(j.id for j in route.jobs) == ["a", "b", "c"]
    assert route.distance_m == pytest.approx(
        6000, abs=2
    )  # no order is shorter than 3 km out and back
    assert [s.kind for s in route.stops] == ["start", "job", "job", "job", "unload", "end"]
    # 600 s driving, 3 minutes at the bins, 10 minutes unloading
    assert route.stops[-1].departure == MORNING + timedelta(seconds=600 + 180 + 600)


def test_streams_are_never_mixed_in_one_load() -> None:
    jobs = [
        job("k1", 1, Stream.kitchen),
        job("r1", 1.5, Stream.recyclable),
        job("k2", 2, Stream.kitchen),
        job("r2", 2.5, Stream.recyclable),
    ]
    both = vehicle(streams=(Stream.kitchen, Stream.recyclable))
    plan = plan_day(jobs, [both], STREET, unload=UNLOAD)
    assert plan.unassigned == ()
    (route,) = plan.routes
    trips = loads(route)
    assert len(trips) == 2
    assert all(len({j.stream for j in load}) == 1 for load in trips)
    assert sorted(j.id for load in trips for j in load) == ["k1", "k2", "r1", "r2"]


def test_capacity_is_honoured_in_litres_and_kilograms_by_going_back_to_unload() -> None:
    small = vehicle(litres=500)  # two 240 L bins per load
    plan = plan_day(
        [job(n, km) for n, km in [("a", 1), ("b", 2), ("c", 3)]], [small], STREET, unload=UNLOAD
    )
    assert plan.unassigned == ()
    (route,) = plan.routes
    assert sorted(len(load) for load in loads(route)) == [1, 2]
    assert max(stop.load_l for stop in route.stops) <= 500
    # kitchen waste weighs 0.6 kg/L: 240 L is 144 kg, so 300 kg takes two bins a load
    heavy = vehicle(streams=(Stream.kitchen,), litres=None, kg=300)
    kitchen = [job(n, km, Stream.kitchen) for n, km in [("a", 1), ("b", 2), ("c", 3)]]
    (route,) = plan_day(kitchen, [heavy], STREET, unload=UNLOAD).routes
    assert sorted(len(load) for load in loads(route)) == [1, 2]
    assert max(stop.load_kg for stop in route.stops) == pytest.approx(288)


def test_a_deadline_is_met_or_the_job_is_unassigned_with_its_reason() -> None:
    soon = MORNING + timedelta(seconds=350)  # 3 km away is 300 s: reachable first, not after others
    late = MORNING + timedelta(seconds=150)  # 2 km away is 200 s: never
    plan = plan_day(
        [job("a", 1), job("far", 3, due=soon), job("never", 2, due=late)],
        [vehicle()],
        STREET,
        unload=UNLOAD,
    )
    (route,) = plan.routes
    far = next(s for s in route.stops if s.job and s.job.id == "far")
    assert far.arrival <= soon
    assert [(u.job.id, u.reason) for u in plan.unassigned] == [
        ("never", "its deadline 00:02 comes before any residual vehicle can reach it")
    ]


def test_priorities_leave_out_the_least_urgent_and_do_not_order_a_day_that_fits() -> None:
    """Two overdue bins 5 km north and south of the depot, and a bin that can wait beside each;
    two bins a load. Loads made by priority would take the overdue pair first, 20 km, and the
    other pair after, 20 km more; the day takes all four, so each load is one side, 10 km."""
    jobs = [
        dataclasses.replace(job(name, km), priority=100 if name.endswith("1") else 10)
        for name, km in [("n1", 5), ("n2", 5), ("s1", -5), ("s2", -5)]
    ]
    plan = plan_day(jobs, [vehicle(litres=480)], STREET, unload=UNLOAD)
    assert plan.unassigned == ()
    (route,) = plan.routes
    assert sorted(sorted(j.id for j in load) for load in loads(route)) == [
        ["n1", "n2"],
        ["s1", "s2"],
    ]
    assert route.distance_m == pytest.approx(20_000, abs=4)
    # A day with room for one load only (back at the depot by its end: the overdue pair is
    # 2,000 s driving and 2 min at the bins; a side's pair 1,120 s, 10 min unloading, and one
    # bin more 1,060 s): the overdue pair goes, whatever it costs, and the others are left.
    short = vehicle(litres=480, hours=2750 / 3600)
    plan = plan_day(jobs, [short], STREET, unload=UNLOAD)
    assert sorted(j.id for r in plan.routes for j in r.jobs) == ["n1", "s1"]
    assert sorted(u.job.id for u in plan.unassigned) == ["n2", "s2"]


@pytest.mark.parametrize(
    ("unfit", "reason"),
    [
        (job("glass", 1, Stream.hazardous), "no vehicle carries hazardous"),
        (
            job("huge", 1, litres=20_000),
            "its load (20000 L, 4000 kg) exceeds every residual vehicle's capacity",
        ),
        (
            job("remote", 200),
            "no residual vehicle's shift is long enough to reach it and come back",
        ),
    ],
)
def test_jobs_no_vehicle_can_take_are_reported_with_why(unfit: Job, reason: str) -> None:
    plan = plan_day([unfit, job("a", 1)], [vehicle(hours=2)], STREET, unload=UNLOAD)
    assert [(u.job, u.reason) for u in plan.unassigned] == [(unfit, reason)]
    assert [j.id for r in plan.routes for j in r.jobs] == ["a"]


def test_jobs_beyond_the_days_room_are_unassigned_with_why() -> None:
    short = vehicle(hours=0.5, litres=240)  # 30 min: two 2-km loads at most (400 s + 60 + 600 each)
    plan = plan_day([job(n, 1) for n in "abc"], [short], STREET, unload=UNLOAD)
    assert len(plan.routes[0].jobs) == 2
    assert [u.reason for u in plan.unassigned] == [
        "no residual vehicle has room or time left today"
    ]


def test_each_depot_serves_its_own_district_and_lends_spare_time_to_the_others() -> None:
    """Two depots 50 km apart, a vehicle each. The north one has more bins than its short
    shift holds; the south one has one bin and a long day, so it takes the north's leftovers
    after its own; a kitchen bin near the north depot goes south, the only kitchen carrier."""
    south = vehicle("south", (Stream.residual, Stream.kitchen), hours=8)
    north_depot = at_km(50)
    north = dataclasses.replace(
        vehicle("north", hours=0.5, litres=240), depot=north_depot
    )  # 30 min: two 1-km loads (200 s + 60 + 600 each), as above
    near_north = [job(n, 51) for n in "abc"]
    plan = plan_day(
        [*near_north, job("s", 1), job("k", 51, Stream.kitchen)],
        [south, north],
        STREET,
        unload=UNLOAD,
    )
    served = {route.vehicle_id: [j.id for j in route.jobs] for route in plan.routes}
    assert len(served["north"]) == 2  # its own district's, as many as its shift holds
    assert served["south"][0] == "s"  # its own district first, then the leftovers
    assert sorted(served["north"] + served["south"][1:]) == ["a", "b", "c", "k"]
    assert plan.unassigned == ()


def test_a_job_goes_to_the_depot_its_site_names_though_another_is_nearer() -> None:
    """Depots at km 0 (west's) and km 10 (east's), a vehicle each with all day. The bin at
    km 6 is nearer east but its site names west's depot: west's vehicle drives 6 km out and
    back for it; the bin at km 9 names none and goes to the nearest, east. A kitchen bin
    naming west, where no vehicle carries kitchen, goes to the nearest that does: east."""
    west = vehicle("west")
    east = dataclasses.replace(vehicle("east", (Stream.residual, Stream.kitchen)), depot=at_km(10))
    named = dataclasses.replace(job("named", 6), depot=DEPOT)
    kitchen = dataclasses.replace(job("k", 4, Stream.kitchen), depot=DEPOT)
    plan = plan_day([named, job("free", 9), kitchen], [west, east], STREET, unload=UNLOAD)
    assert plan.unassigned == ()
    served = {route.vehicle_id: route for route in plan.routes}
    assert [j.id for j in served["west"].jobs] == ["named"]
    assert served["west"].distance_m == pytest.approx(12_000, abs=2)
    assert sorted(j.id for j in served["east"].jobs) == ["free", "k"]


def _route(vehicle_id: str, kms: list[float], *, done: int) -> Route:
    """A route over the street at the given kilometres, its first `done` jobs done."""
    stops = [Stop("start", DEPOT, MORNING, MORNING, 0, 0, 0, 0, done=True)]
    for n, km in enumerate(kms):
        stops.append(
            Stop("job", at_km(km), MORNING, MORNING, 0, 0, 0, 1, job(f"j{n}", km), done=n < done)
        )
    stops += [
        Stop("unload", DEPOT, MORNING, MORNING, 0, 0, 0, 1),
        Stop("end", DEPOT, MORNING, MORNING, 0, 0, 0, 1),
    ]
    return Route(vehicle_id, tuple(stops))


def _retimed(route: Route, vehicle_day: VehicleDay) -> Route:
    travel = StraightLine(1.0, 36).matrix(
        [DEPOT, *[at_km(k) for k in range(0, 11)], at_km(2.5), at_km(4.5)]
    )
    stops = retimed(vehicle_day, route.stops, travel.leg, UNLOAD)
    assert stops is not None
    return Route(route.vehicle_id, stops)


def test_an_urgent_job_goes_into_the_best_vehicles_remaining_route_keeping_done_stops() -> None:
    near, far = vehicle("near"), vehicle("far")
    a = _retimed(_route("near", [1, 2, 3, 4], done=2), near)  # done: km 1, 2; next km 3, 4
    b = _retimed(_route("far", [8, 9, 10], done=0), far)
    now = a.stops[2].departure  # the 'near' vehicle has left km 2
    travel = StraightLine(1.0, 36).matrix(
        [DEPOT, *[at_km(k) for k in range(0, 11)], at_km(2.5), at_km(4.5)]
    )
    urgent = job("urgent", 2.5)
    placed = insert_job(urgent, [a, b], [near, far], travel.leg, now=now, unload=UNLOAD)
    assert isinstance(placed, Route)
    assert placed.vehicle_id == "near"
    assert [s.job.id if s.job else s.kind for s in placed.stops] == [
        "start",
        "j0",
        "j1",
        "urgent",
        "j2",
        "j3",
        "unload",
        "end",
    ]
    assert placed.stops[:3] == a.stops[:3]  # the done stops, times and all, untouched
    assert placed.distance_m == pytest.approx(a.distance_m, abs=2)  # km 2.5 is on the way


def test_an_urgent_job_of_another_stream_is_a_load_of_its_own_or_unassigned() -> None:
    both = vehicle("both", (Stream.residual, Stream.kitchen))
    route = _retimed(_route("both", [1, 2], done=1), both)
    travel = StraightLine(1.0, 36).matrix(
        [DEPOT, *[at_km(k) for k in range(0, 11)], at_km(2.5), at_km(4.5)]
    )
    kitchen = job("k", 4.5, Stream.kitchen)
    placed = insert_job(
        kitchen, [route], [both], travel.leg, now=route.stops[1].departure, unload=UNLOAD
    )
    assert isinstance(placed, Route)
    assert [s.job.id if s.job else s.kind for s in placed.stops] == [
        "start",
        "j0",
        "j1",
        "unload",
        "k",
        "unload",
        "end",
    ]
    assert [len({j.stream for j in load}) for load in loads(placed)] == [1, 1]
    only_residual = vehicle("both")
    refused = insert_job(kitchen, [route], [only_residual], travel.leg, now=MORNING, unload=UNLOAD)
    assert refused == Unassigned(kitchen, Reason.of("route.no_carrier", stream="kitchen"))
    assert refused.reason == "no vehicle carries kitchen"


def test_an_urgent_job_starts_a_route_for_an_idle_vehicle_from_its_depot() -> None:
    busy = vehicle("busy", (Stream.kitchen,))
    idle = vehicle("idle")  # residual, and no route in the plan
    route = _retimed(_route("busy", [1, 2], done=1), busy)
    travel = StraightLine(1.0, 36).matrix([DEPOT, at_km(1), at_km(2), at_km(3)])
    now = MORNING + timedelta(minutes=10)
    placed = insert_job(job("u", 3), [route], [busy, idle], travel.leg, now=now, unload=UNLOAD)
    assert isinstance(placed, Route)
    assert placed.vehicle_id == "idle"
    assert [s.kind for s in placed.stops] == ["start", "job", "unload", "end"]
    # leaves at `now`; 300 s to km 3, 60 s there, 300 s back, 10 minutes unloading
    offsets = [(s.arrival - now).total_seconds() for s in placed.stops]
    assert offsets == pytest.approx([0, 300, 660, 1260], abs=0.01)
    assert placed.distance_m == pytest.approx(6000, abs=2)


def test_the_route_leaves_the_depot_when_the_solver_starts_it_not_at_the_shift_start() -> None:
    lunch = Break(
        MORNING + timedelta(hours=3),
        MORNING + timedelta(hours=3, minutes=30),
        timedelta(minutes=30),
    )
    with_lunch = dataclasses.replace(vehicle(), breaks=(lunch,))
    plan = plan_day([job("a", 1)], [with_lunch], STREET, unload=UNLOAD)
    (route,) = plan.routes
    assert [s.kind for s in route.stops] == ["start", "job", "break", "unload", "end"]
    # Nothing to do before lunch but one bin: 100 s out, 60 s there and 100 s on end at the
    # break's opening, so the solver starts at 3 h - 260 s, and so does the route.
    start = MORNING + timedelta(hours=3, seconds=-260)
    assert (route.stops[0].arrival, route.stops[0].departure) == (start, start)
    assert route.stops[1].arrival == start + timedelta(seconds=100)
    assert route.duration == route.stops[-1].departure - start  # no idle morning counted


def test_a_bin_passes_its_threshold_before_it_is_full_by_the_rate() -> None:
    full = MORNING + timedelta(hours=3)
    # 15 %/h, threshold 85 %: the last 15 points take an hour
    assert threshold_at(full_at=full, rate_pct_h=15, threshold_pct=85) == full - timedelta(hours=1)


# --- which bins without a request a plan takes: due_before_next_shift --------------------------

DAWN = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)  # 06:00 in the city, when the day is planned
NEXT_START = DAWN + timedelta(days=1, hours=1)  # tomorrow 07:00
NEXT_END = DAWN + timedelta(days=1, hours=10)  # tomorrow 16:00
HOUR = timedelta(hours=1)
EVIDENCE = Evidence.of(Settings().collection)  # day_margin 1.2
QUARTER = timedelta(minutes=15)


def hourly(fills: Sequence[float], *, until: datetime = DAWN) -> list[FillPoint]:
    """Hourly means ending an hour before `until`, oldest first."""
    return [FillPoint(until - (len(fills) - i) * HOUR, f, 60) for i, f in enumerate(fills)]


def test_a_days_gain_adds_the_rises_and_an_emptying_takes_nothing_away() -> None:
    # 10 → 70 (+60), emptied to 2, then 2 → 22 (+20): the day added 80 %, not 12
    fills = [10 + 5 * i for i in range(13)] + [2] + [2 + 2 * i for i in range(1, 11)]
    assert len(fills) == 24
    assert daily_gain(hourly(fills), DAWN) == pytest.approx(80)
    # points older than a day do not count; less than 20 h of the day is no estimate
    assert daily_gain(hourly([0.0, *fills]), DAWN) == pytest.approx(80)
    assert daily_gain(hourly(fills[-20:]), DAWN) is None


def test_a_bin_the_night_hides_is_planned_on_its_last_days_gain() -> None:
    # Rose 60 % during yesterday's day hours, quiet for the last 8 h at 30 %: the 3-hour line
    # sees no rise, but 30 + 60 × 1.2 = 102 % by tomorrow's shift, past an 80 % threshold at
    # 50 / 72 % a day: 16 h 40 min from now.
    day = hourly([0] * 2 + [5 * i for i in range(1, 13)] + [60] + [30] * 9)
    recent = [FillPoint(DAWN - QUARTER * (12 - i), 30.0, 15) for i in range(12)]
    due = due_before_next_shift(
        recent, day, threshold_pct=80, now=DAWN, next_start=NEXT_START, next_end=NEXT_END,
        evidence=EVIDENCE,
    )  # fmt: skip
    assert due == DAWN + timedelta(hours=50 / 3)
    # a bin that gained 30 % can wait: 30 + 36 = 66 % by tomorrow 07:00, and far from full
    slow = hourly([0] * 2 + [30 / 12 * i for i in range(1, 13)] + [30] * 10)
    assert due_before_next_shift(
        recent, slow, threshold_pct=80, now=DAWN, next_start=NEXT_START, next_end=NEXT_END,
        evidence=EVIDENCE,
    ) is None  # fmt: skip


def test_a_bin_full_before_the_next_shift_ends_is_planned_though_under_threshold_at_its_start() -> (
    None
):
    # 10 % now, 60 % a day × 1.2 = 3 %/h: threshold 90 % at +26.7 h (after tomorrow's 07:00
    # start, +25 h), but full at +30 h, before tomorrow's shift ends (+34 h)
    day = hourly([0] * 2 + [5 * i for i in range(1, 13)] + [60] + [10] * 9)
    due = due_before_next_shift(
        [], day, threshold_pct=90, now=DAWN, next_start=NEXT_START, next_end=NEXT_END,
        evidence=EVIDENCE,
    )  # fmt: skip
    assert due == DAWN + timedelta(hours=80 / 3)
    assert due_before_next_shift(
        [], day, threshold_pct=90, now=DAWN, next_start=NEXT_START,
        next_end=DAWN + timedelta(hours=29), evidence=EVIDENCE,
    ) is None  # fmt: skip


def test_without_a_days_history_the_line_through_the_last_hours_decides_alone() -> None:
    # 15 %/h over the last 2 h from 40 %: past 80 % within the hour, on no day's history
    recent = [FillPoint(DAWN - QUARTER * (8 - i), 40 + 3.75 * i, 15) for i in range(9)]
    due = due_before_next_shift(
        recent, [], threshold_pct=80, now=DAWN, next_start=NEXT_START, next_end=NEXT_END,
        evidence=EVIDENCE,
    )  # fmt: skip
    assert due is not None and DAWN <= due < DAWN + HOUR


# --- while the crew is there: collection.planning.along ---------------------------------------


def at_site(name: str, site: str, stream: Stream = Stream.recyclable, *, km: float = 1) -> Job:
    """A bin of `site`: the bins of a site share its place."""
    return Job(name, f"bin-{name}", site, stream, at_km(km), 240, SERVICE, priority=10)


def came_along(
    chosen: Sequence[Job], spare: Sequence[Spare], *, level: float = 50, reach_m: float = 0
) -> list[str]:
    jobs = along(chosen, spare, level_pct=level, reach_m=reach_m, distance_m=great_circle_m)
    assert {j.priority for j in jobs} <= {ALONG_PRIORITY}
    return [j.id for j in jobs]


def test_the_bins_of_a_stop_at_the_level_come_along_and_the_lower_ones_do_not() -> None:
    # A school's three paper bins: p1 is due; p2 at 60 % and p3 at exactly 50 % come along at
    # a level of 50 %, p4 at 49 % waits for its own day.
    due = at_site("p1", "school")
    spare = [
        Spare(at_site("p2", "school"), 60.0),
        Spare(at_site("p3", "school"), 50.0),
        Spare(at_site("p4", "school"), 49.0),
    ]
    assert came_along([due], spare) == ["p2", "p3"]
    (p2, _p3) = along([due], spare, level_pct=50, reach_m=0, distance_m=great_circle_m)
    assert p2 == dataclasses.replace(
        spare[0].job,
        priority=ALONG_PRIORITY,
        why="along: 60 % full, at or near a stop for recyclable",
    )
    assert ALONG_PRIORITY < 10  # below a forecast bin's: the first the solver leaves out
    # nothing comes along where nothing stops
    assert came_along([], spare) == []


def test_another_stream_at_the_stop_or_the_same_stream_elsewhere_never_comes_along() -> None:
    due = at_site("p1", "school")
    residual = Spare(at_site("r1", "school", Stream.residual), 95.0)  # another load
    elsewhere = Spare(at_site("p9", "agency", km=1.2), 95.0)  # another stop, 200 m on
    assert came_along([due], [residual, elsewhere]) == []
    # a stop for residual there brings the residual bin, still not the other site's paper
    residual_stop = at_site("r0", "school", Stream.residual)
    assert came_along([due, residual_stop], [residual, elsewhere]) == ["r1"]


def test_a_neighbour_within_reach_comes_along_like_the_stops_own_bins() -> None:
    due = at_site("p1", "school")  # 1 km up the street
    spare = [
        Spare(at_site("p8", "agency", km=1.2), 60.0),  # 200 m on
        Spare(at_site("p9", "compound", km=0.7), 60.0),  # 300 m back: just within
        Spare(at_site("p7", "office", km=1.5), 90.0),  # 500 m on
        Spare(at_site("p6", "hall", km=1.1), 40.0),  # 100 m on, under the level
        Spare(at_site("r8", "agency", Stream.residual, km=1.2), 90.0),  # another stream
    ]
    assert came_along([due], spare, reach_m=300.5) == ["p8", "p9"]
    assert came_along([due], spare, reach_m=150) == []
    assert came_along([due], spare, reach_m=0) == []


def test_a_plan_short_of_room_leaves_out_the_bins_that_only_came_along() -> None:
    # One load of two 240 L bins fits the day (15 min: 200 s out and back and 2 min at the
    # bins, then 10 min unloading, past the shift's end): the request and the forecast bin go,
    # the companion waits.
    request = dataclasses.replace(at_site("a", "compound", Stream.residual), priority=50)
    forecast = at_site("b", "agency", Stream.residual)
    (companion,) = along(
        [request, forecast],
        [Spare(at_site("c", "compound", Stream.residual), 70.0)],
        level_pct=50,
        reach_m=0,
        distance_m=great_circle_m,
    )
    small = vehicle(litres=480, hours=15 / 60)
    plan = plan_day([companion, request, forecast], [small], STREET, unload=UNLOAD)
    assert sorted(j.id for r in plan.routes for j in r.jobs) == ["a", "b"]
    assert [(u.job.id, u.reason) for u in plan.unassigned] == [
        ("c", "no residual vehicle has room or time left today")
    ]


def test_a_spare_bin_has_its_newest_mean_and_whether_it_is_due_a_day_later() -> None:
    # 10 % now, gained 30 % yesterday: × 1.2 = 1.5 %/h, 80 % at +46.7 h, before the shift
    # after next starts (+49 h) though not before the next one (+25 h)
    day = hourly([0] * 2 + [2.5 * i for i in range(1, 13)] + [30] + [10] * 9)
    recent = [FillPoint(DAWN - QUARTER * 2, 9.0, 15), FillPoint(DAWN - QUARTER, 10.0, 15)]
    assert due_before_next_shift(
        recent, day, threshold_pct=80, now=DAWN, next_start=NEXT_START, next_end=NEXT_END,
        evidence=EVIDENCE,
    ) is None  # fmt: skip
    bin_ = at_site("p1", "school")

    def as_spare(recent: Sequence[FillPoint], day: Sequence[FillPoint]) -> Spare | None:
        return spare(bin_, recent, day, threshold_pct=80, now=DAWN,
                     next_shift=(NEXT_START, NEXT_END), evidence=EVIDENCE)  # fmt: skip

    assert as_spare(recent, day) == Spare(bin_, 10.0, due_soon=True)
    # gained 10 %: 80 % only in 5 days; its newest mean is the last hourly one without `recent`
    slow = hourly([0] * 2 + [10 / 12 * i for i in range(1, 13)] + [10] * 10)
    assert as_spare([], slow) == Spare(bin_, 10.0, due_soon=False)
    assert as_spare([], []) is None  # no reading: no fill


def test_a_bin_due_before_the_shift_after_next_comes_along_under_the_level() -> None:
    due = at_site("p1", "school")
    soon = Spare(at_site("p2", "school"), 20.0, due_soon=True)
    assert came_along([due], [soon]) == ["p2"]
    assert came_along([at_site("x", "agency", km=3)], [soon]) == []  # no stop there: it waits
