"""The simulated crews follow a re-plan, without a server: each version of the day's plan is
handed to them as if it had arrived over MQTT, on a clock of the test's own, and their stops
are forecast stops of vehicles without a crew key, which only empty the bin (nothing is sent to
the API). The whole flow on the real stack: test_crews_plan.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from core.settings import Settings
from devices.messages import PlannedStop, RoutesPlanned, VehicleRoute
from simulator.crews import Crews

SETTINGS = Settings()
ZONE = ZoneInfo(SETTINGS.timezone)
SPEED = 60  # a planned minute is a second on the clock


def _route(vehicle: str, bins: list[str], first_id: int, start: datetime) -> VehicleRoute:
    """A vehicle's route: its start, then a bin every 10 minutes."""

    def stop(n: int, kind: str, bin_id: str | None) -> PlannedStop:
        at = start + timedelta(minutes=10 * n)
        return PlannedStop(
            stop_id=first_id + n, position=n, trip=1, kind=kind, request_id=None, bin_id=bin_id,
            site_id=None, stream=None, lat=30.0, lon=104.0, arrival_at=at, departure_at=at,
            due_at=None, distance_m=0, load_l=0.0, load_kg=0.0,
        )  # fmt: skip

    stops = [stop(0, "start", None), *(stop(n, "job", b) for n, b in enumerate(bins, 1))]
    return VehicleRoute(vehicle_id=vehicle, distance_m=0, duration_s=0, jobs=len(bins), stops=stops)


def _plan(version: int, now: datetime, *vehicles: VehicleRoute) -> RoutesPlanned:
    return RoutesPlanned(
        operator_id="op-lvyuan", day=now.date().isoformat(), version=version, created_at=now,
        note="", solver_ms=0, vehicles=list(vehicles), unassigned=[],
    )  # fmt: skip


def test_a_replan_moves_the_stops_not_reached_yet_and_keeps_those_reached() -> None:
    now = datetime.now(ZONE)
    clock = [0.0]
    with httpx.Client() as http:
        crews = Crews(SETTINGS, speed=SPEED, clock=lambda: clock[0], http=http)
        crews.receive(_plan(1, now, _route("truck-a", ["b1", "b2", "b3"], 100, now)))
        crews.work_once()
        assert crews.upcoming() == [("b1", "truck-a", 101), ("b2", "truck-a", 102),
                                    ("b3", "truck-a", 103)]  # fmt: skip
        clock[0] = 10.0  # truck-a reaches b1 (10 planned minutes after its start)
        assert crews.work_once()
        assert crews.upcoming() == [("b2", "truck-a", 102), ("b3", "truck-a", 103)]
        # The re-plan: b2 later on truck-a, b3 on truck-b; b1 again (it was reached: done)
        crews.receive(
            _plan(2, now, _route("truck-a", ["b2"], 200, now + timedelta(minutes=30)),
                  _route("truck-b", ["b1", "b3"], 300, now))
        )  # fmt: skip
        crews.work_once()
        assert crews.upcoming() == [("b3", "truck-b", 302), ("b2", "truck-a", 201)]
        # an older version arriving late changes nothing
        crews.receive(_plan(1, now, _route("truck-a", ["b1", "b2", "b3"], 100, now)))
        crews.work_once()
        assert crews.upcoming() == [("b3", "truck-b", 302), ("b2", "truck-a", 201)]


def test_a_bin_planned_again_the_next_day_is_driven_again() -> None:
    """A forecast stop is known by its bin; the stops taken were kept for the whole run, so a
    bin emptied by yesterday's plan was never driven by today's (a demo left over midnight)."""
    now = datetime.now(ZONE)
    day = [now.date()]
    clock = [0.0]
    with httpx.Client() as http:
        crews = Crews(SETTINGS, speed=SPEED, clock=lambda: clock[0], http=http,
                      today=lambda: day[0])  # fmt: skip
        crews.receive(_plan(1, now, _route("truck-a", ["b1", "b2"], 100, now)))
        crews.work_once()
        clock[0] = 30.0  # both reached
        while crews.work_once():
            pass
        assert crews.upcoming() == []
        tomorrow = now + timedelta(days=1)
        day[0] = tomorrow.date()
        crews.receive(_plan(1, tomorrow, _route("truck-a", ["b2", "b3"], 500, tomorrow)))
        crews.work_once()
        assert crews.upcoming() == [("b2", "truck-a", 501), ("b3", "truck-a", 502)]
