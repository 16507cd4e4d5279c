"""The simulator's crews follow the plan on the real stack (Mosquitto, the API served by uvicorn,
the registry, VROOM): today's plan of one operator arrives on its routes topic as the collector
publishes it, and each vehicle's crew reports its stops done through the API in the planned
order, at the planned pace in simulated time; the dispatches of those requests are left to the
plan."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from collection import plans, store
from collection.models import CollectionRequest
from core.settings import Settings
from core.sql import make_engine
from devices.contract import Topics
from devices.messages import Dispatch
from devices.models import Bin, Site
from devices.registry import BinTags
from simulator.crews import Crews
from tests.collection_helpers import open_manual
from tests.helpers import ADMIN_ACTOR, wait_for
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
            .limit(3)
        ).all()
    requests = [open_manual(settings, bin_id) for bin_id in bins]
    with Session(engine) as session:
        for request_id in requests:  # due in the afternoon: a window, and never overdue
            session.get_one(CollectionRequest, request_id).due_at = morning + timedelta(hours=6)
        session.commit()
        plan = plans.plan_operator_day(
            session, OPERATOR, today, settings=settings, now=morning, actor="test"
        )
        message = plans.routes_message(plan)
    routes = {
        route.vehicle_id: [s.request_id for s in route.stops if s.request_id is not None]
        for route in message.vehicles
    }
    assert sorted(r for stops in routes.values() for r in stops) == sorted(requests)
    topics = Topics(settings.topic_prefix)
    # The last stop of the longest route is also dispatched: served one by one, it would be
    # completed at once, out of the route's order.
    last_stop = max(routes.values(), key=len)[-1]
    with Session(engine) as session:
        dispatch = Dispatch.of(store.get_request(session, last_stop))
    with serving_api(settings) as served:
        # 1 simulated hour a second: the route's stops land within a few seconds.
        crews = Crews(served, speed=3600, travel_s=0)
        crews.start()
        try:
            wait_for(crews.subscribed.is_set, timeout=10, what="crews to subscribe")
            sent = [
                (topics.routes(OPERATOR), message.model_dump_json().encode()),
                (topics.dispatch(OPERATOR), dispatch.model_dump_json().encode()),
            ]
            began = datetime.now(UTC)
            publish_all(settings, sent)
            wait_for(lambda: len(crews.completed) == 3, timeout=30, what="the stops done")
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
    with Session(engine) as session:
        for request_id in requests:
            trail = [(e.to_status, e.actor) for e in store.get_request(session, request_id).events]
            assert trail[-2:] == [("acknowledged", ADMIN_ACTOR), ("completed", ADMIN_ACTOR)]
    engine.dispose()
