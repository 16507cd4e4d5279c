"""The simulator's crews follow the plan on the real stack (Mosquitto, the API served by uvicorn,
the registry, VROOM): today's plan of one operator arrives on its routes topic as the collector
publishes it, and each vehicle's crew taps its stops done through the API with the vehicle's
crew key (as its phone would) in the planned order, at the planned pace in simulated time: the
taps complete the requests and mark a forecast stop (no request) done on the crew's screen; the
dispatches of those requests are left to the plan."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from collection import crew, plans, store
from collection.models import CollectionRequest, RouteStop
from core.settings import Settings
from core.sql import make_engine
from devices.contract import Topics
from devices.messages import Dispatch
from devices.models import Bin, Site, Vehicle
from devices.registry import BinTags
from security.keys import ApiRole, create_key
from simulator.crews import Crews
from tests.collection_helpers import open_manual
from tests.helpers import wait_for
from tests.mqtt_helpers import publish_all
from tests.test_collection import serving_api

pytestmark = [
    pytest.mark.servers,
    pytest.mark.registry_backends(
        "sqlite",
        reason="the crews only call the API and read MQTT; the plans' registry code runs on "
        "both backends in test_routes.py",
    ),
]

OPERATOR = "op-lvyuan"


def test_the_simulated_crews_drive_a_planned_route_stop_by_stop_in_order(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    zone = ZoneInfo(settings.timezone)
    today = datetime.now(zone).date()
    morning = datetime.combine(today, time(8), tzinfo=zone)  # planned as if at 08:00 today
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        bins = session.scalars(
            select(Bin.id)
            .join(Site, Bin.site_id == Site.id)
            .where(Site.operator_id == OPERATOR, Bin.stream == "residual")
            .order_by(Bin.id)
            .limit(4)
        ).all()
    requests = [open_manual(settings, bin_id) for bin_id in bins]
    with Session(engine) as session:
        for request_id in requests:  # due in the afternoon: a window, and never overdue
            session.get_one(CollectionRequest, request_id).due_at = morning + timedelta(hours=6)
        session.commit()
        plan = plans.plan_operator_day(
            session, OPERATOR, today, settings=settings, now=morning, actor="test"
        )
        # The last stop of the longest route is also dispatched: served one by one, it would be
        # completed at once, out of the route's order.
        longest = max(
            {s.vehicle_id for s in plan.stops},
            key=lambda v: sum(s.vehicle_id == v and s.kind == "job" for s in plan.stops),
        )
        last_stop = [s for s in plan.stops if s.vehicle_id == longest and s.kind == "job"][-1]
        # Another stop made a forecast one (a bin expected to fill, no request): its tap is
        # only noted, and the stop shows done on the crew's screen.
        forecast = next(s for s in plan.stops if s.kind == "job" and s is not last_stop)
        forecast_id, unplanned = forecast.id, forecast.request_id
        forecast.request_id = None
        requests.remove(unplanned or 0)
        session.commit()
        message = plans.routes_message(plan)
        dispatch = Dispatch.of(store.get_request(session, last_stop.request_id or 0))
        now = datetime.now(UTC)
        keys = {  # vehicle → (key id, token)
            vehicle: _crew_key(session, vehicle, now)
            for vehicle in session.scalars(
                select(Vehicle.id).where(Vehicle.operator_id == OPERATOR)
            )
        }
    routes = {
        route.vehicle_id: [s.request_id for s in route.stops if s.request_id is not None]
        for route in message.vehicles
    }
    assert sorted(r for stops in routes.values() for r in stops) == sorted(requests)
    topics = Topics(settings.topic_prefix)
    with serving_api(settings) as served:
        tokens = {vehicle: SecretStr(token) for vehicle, (_id, token) in keys.items()}
        crew_settings = served.model_copy(
            update={"api": served.api.model_copy(update={"crew_tokens": tokens})}
        )
        # 1 simulated hour a second: the route's stops land within a few seconds.
        crews = Crews(crew_settings, speed=3600, travel_s=0)
        crews.start()
        try:
            wait_for(crews.subscribed.is_set, timeout=10, what="crews to subscribe")
            sent = [
                (topics.routes(OPERATOR), message.model_dump_json().encode()),
                (topics.dispatch(OPERATOR), dispatch.model_dump_json().encode()),
            ]
            began = datetime.now(UTC)
            publish_all(settings, sent)
            wait_for(lambda: len(crews.tapped) == 4, timeout=30, what="the stops done")
        finally:
            crews.stop()
    took_s = (datetime.now(UTC) - began).total_seconds()
    for stops in routes.values():
        assert [r for r in crews.completed if r in stops] == stops  # in the planned order
    # The last stop's planned time since the start, in simulated seconds, over the speed.
    last = max(
        (s.departure_at - route.stops[0].departure_at).total_seconds()
        for route in message.vehicles
        for s in route.stops
        if s.kind == "job"
    )
    assert took_s >= last / 3600 - 0.5
    assert sorted(crews.completed) == sorted(requests)
    with Session(engine) as session:
        actors = {f"crew key {key_id} (crew {vehicle})" for vehicle, (key_id, _t) in keys.items()}
        for request_id in requests:
            trail = [(e.to_status, e.actor) for e in store.get_request(session, request_id).events]
            assert [to for to, _actor in trail[-2:]] == ["acknowledged", "completed"]
            assert {actor for _to, actor in trail[-2:]} <= actors, trail
        forecast_stop = session.get_one(RouteStop, forecast_id)
        screen = crew.day_stops(session, session.get_one(Vehicle, forecast_stop.vehicle_id), today)
        [shown] = [s for s in screen if s.stop.id == forecast_id]
        assert shown.request is None and shown.tap is not None and shown.tap.outcome == "noted"
        assert shown.stop.done_at is not None
    engine.dispose()


def _crew_key(session: Session, vehicle_id: str, now: datetime) -> tuple[str, str]:
    issued = create_key(
        session, name=f"crew {vehicle_id}", role=ApiRole.crew, now=now, vehicle_id=vehicle_id
    )
    return issued.key.id, issued.token
