"""A crew's day over the pilot registry, for the crew's screen tests: two crews (a vehicle of
each operator), waiting requests for bins each vehicle can carry, and today's plans that put
them on the vehicles' routes (written as the planner stores them, so the tests do not depend on
the solver or the time of day)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from collection.models import RoutePlan, RouteStop
from core.settings import Settings
from core.sql import make_engine
from devices.models import Bin, Site
from security.users import UserRole, create_user
from tests.collection_helpers import open_manual

PASSWORD = "green bins 2026"
CREW = "wang.crew"  # drives MINE
OTHER_CREW = "zhao.crew"  # drives THEIRS, of the other operator
MINE, SIBLING, THEIRS = "lvyuan-dry-1", "lvyuan-kitchen-1", "jiejing-kitchen-1"
LEG = timedelta(minutes=12)


@dataclass(frozen=True)
class CrewWorld:
    mine: list[int]  # stop ids of MINE's route, in order
    sibling: int  # a stop of the same operator's other vehicle
    theirs: int  # a stop of the other operator's vehicle
    requests: dict[int, int]  # stop id → its request


def _bins(session: Session, operator_id: str, streams: tuple[str, ...], count: int) -> list[str]:
    return list(
        session.scalars(
            select(Bin.id)
            .join(Site, Site.id == Bin.site_id)
            .where(Site.operator_id == operator_id, Bin.stream.in_(streams))
            .order_by(Bin.id)
            .limit(count)
        )
    )


def _plan(
    session: Session,
    operator_id: str,
    day: str,
    now: datetime,
    routes: dict[str, list[str]],
    requests: dict[str, int],
) -> dict[str, list[RouteStop]]:
    plan = RoutePlan(
        operator_id=operator_id,
        day=day,
        version=1,
        created_at=now,
        actor="test",
        note="test plan",
        solver_ms=0,
        unassigned=[],
        webhook_attempts=0,
    )
    session.add(plan)
    made: dict[str, list[RouteStop]] = {}
    for vehicle_id, bins in routes.items():
        for position, bin_id in enumerate(bins):
            bin_ = session.get_one(Bin, bin_id)
            arrival = now + LEG * (position + 1)
            stop = RouteStop(
                vehicle_id=vehicle_id,
                position=position,
                trip=1,
                kind="job",
                request_id=requests[bin_id],
                bin_id=bin_id,
                site_id=bin_.site_id,
                stream=bin_.stream,
                latitude=0.0,
                longitude=0.0,
                arrival_at=arrival,
                departure_at=arrival + timedelta(minutes=2),
                distance_m=1000.0 * (position + 1),
                load_l=0.0,
                load_kg=0.0,
            )
            plan.stops.append(stop)
            made.setdefault(vehicle_id, []).append(stop)
    session.commit()
    return made


def build(settings: Settings) -> CrewWorld:
    """The crews, requests and today's plans over the pilot registry of `settings`."""
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC).replace(microsecond=0)
    day = now.astimezone(ZoneInfo(settings.timezone)).date().isoformat()
    with Session(engine) as session:
        bins = {
            MINE: _bins(session, "op-lvyuan", ("residual", "recyclable"), 4),
            SIBLING: _bins(session, "op-lvyuan", ("kitchen",), 1),
            THEIRS: _bins(session, "op-jiejing", ("kitchen",), 1),
        }
    requests = {b: open_manual(settings, b, now) for vehicle in bins.values() for b in vehicle}
    with Session(engine) as session:
        for username, vehicle in ((CREW, MINE), (OTHER_CREW, THEIRS)):
            create_user(
                session,
                username=username,
                display_name="",
                password=PASSWORD,
                role=UserRole.crew,
                now=now,
                vehicle_id=vehicle,
            )
        ours = _plan(
            session, "op-lvyuan", day, now, {MINE: bins[MINE], SIBLING: bins[SIBLING]}, requests
        )
        other = _plan(session, "op-jiejing", day, now, {THEIRS: bins[THEIRS]}, requests)
        world = CrewWorld(
            [s.id for s in ours[MINE]],
            ours[SIBLING][0].id,
            other[THEIRS][0].id,
            {
                s.id: s.request_id
                for s in [*ours[MINE], *ours[SIBLING], *other[THEIRS]]
                if s.request_id
            },
        )
    engine.dispose()
    return world
