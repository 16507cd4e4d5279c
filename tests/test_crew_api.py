"""A crew's taps over the API (issue 16), on the real stack: a crew key taps only its own
vehicle's stops (another vehicle's or company's answer as a missing one), the operator's key
and an admin tap for any of the company's vehicles, a tap sent twice is one action, a tap the
request's state refuses is a 409 that says why (again on a repeat), and a bad tap is a 422
that says what is wrong."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.main import create_app
from collection.models import CollectionEvent, RouteStop
from core.settings import Settings
from core.sql import make_engine
from security.keys import ApiRole, create_key
from tests.crew_world import MINE, SIBLING, THEIRS, CrewWorld, build
from tests.helpers import ADMIN_HEADERS

pytestmark = [
    pytest.mark.servers,
    pytest.mark.registry_backends(
        "sqlite",
        reason="the route calls collection/crew.py, whose taps run on both backends in "
        "test_crew.py; here only the API's scope and answers",
    ),
]

OURS, OTHERS = "op-lvyuan", "op-jiejing"


@dataclass
class World:
    settings: Settings
    day: CrewWorld
    client: TestClient
    crew: dict[str, str]  # headers of MINE's crew key
    operator: dict[str, str]  # headers of op-lvyuan's key

    def tap(
        self, headers: dict[str, str], stop: int, *, vehicle: str = MINE, operator: str = OURS,
        **body: str,
    ) -> tuple[int, dict[str, object]]:  # fmt: skip
        answer = self.client.post(
            f"/api/v1/operators/{operator}/routes/{vehicle}/stops/{stop}/taps",
            json={"tap_id": str(uuid.uuid4()), "action": "emptied"} | body,
            headers=headers,
        )
        return answer.status_code, answer.json()

    def events(self, request_id: int) -> list[tuple[str, str, str]]:
        engine = make_engine(self.settings.database_url)
        with Session(engine) as session:
            events = [
                (e.kind, e.to_status, e.actor)
                for e in session.scalars(
                    select(CollectionEvent)
                    .where(CollectionEvent.request_id == request_id)
                    .order_by(CollectionEvent.id)
                )
            ]
        engine.dispose()
        return events


@pytest.fixture(scope="module")
def world(module_settings: Settings) -> Iterator[World]:
    """One day of two crews for the module: each test taps its own stops."""
    day = build(module_settings)
    engine = make_engine(module_settings.database_url)
    now = datetime.now(UTC)
    with Session(engine) as session:
        crew = create_key(session, name="truck", role=ApiRole.crew, now=now, vehicle_id=MINE)
        operator = create_key(
            session, name="lvyuan", role=ApiRole.operator, now=now, operator_id=OURS
        )
    engine.dispose()
    with TestClient(create_app(module_settings)) as client:
        yield World(
            module_settings,
            day,
            client,
            {"Authorization": f"Bearer {crew.token}"},
            {"Authorization": f"Bearer {operator.token}"},
        )


def test_a_crew_key_taps_its_own_stop_once_however_often_it_is_sent(world: World) -> None:
    stop = world.day.mine[0]
    request_id = world.day.requests[stop]
    body = {"tap_id": str(uuid.uuid4()), "action": "emptied"}
    first, again = (
        world.client.post(
            f"/api/v1/operators/{OURS}/routes/{MINE}/stops/{stop}/taps",
            json=body,
            headers=world.crew,
        )
        for _copy in range(2)
    )
    assert first.status_code == again.status_code == 200, first.text
    assert first.json() == {
        "tap_id": body["tap_id"], "stop_id": stop, "outcome": "completed", "repeated": False,
    }  # fmt: skip
    assert again.json() == first.json() | {"repeated": True}
    events = world.events(request_id)
    assert [(kind, to) for kind, to, _actor in events] == [
        ("transition", "open"), ("transition", "acknowledged"), ("transition", "completed"),
    ]  # fmt: skip
    assert all(actor.startswith("crew key ") for _k, _t, actor in events[1:]), events
    route = world.client.get(f"/api/v1/operators/{OURS}/routes/{MINE}", headers=world.crew)
    assert [s["stop_id"] for s in route.json()["vehicles"][0]["stops"]] == world.day.mine


def test_a_crew_key_taps_only_its_own_vehicle_and_the_operator_any_of_its_own(
    world: World,
) -> None:
    """Another vehicle's stop, another company's, one of another vehicle named as its own: the
    same 404 as a stop that does not exist; the operator's key and an admin act for the
    vehicle."""
    missing = {"detail": "no stop with id 987654 on this vehicle's route today"}
    elsewhere = [
        (world.crew, world.day.sibling, SIBLING, OURS, f"no operator with id {OURS!r}"),
        (world.crew, world.day.theirs, THEIRS, OTHERS, f"no operator with id {OTHERS!r}"),
        (world.operator, world.day.theirs, THEIRS, OTHERS, f"no operator with id {OTHERS!r}"),
        (world.operator, world.day.theirs, MINE, OURS, missing["detail"].replace(
            "987654", str(world.day.theirs))),
        (world.crew, world.day.sibling, MINE, OURS, missing["detail"].replace(
            "987654", str(world.day.sibling))),
        (world.crew, 987654, MINE, OURS, missing["detail"]),
    ]  # fmt: skip
    for headers, stop, vehicle, operator, detail in elsewhere:
        answer = world.tap(headers, stop, vehicle=vehicle, operator=operator)
        assert answer == (404, {"detail": detail}), (stop, vehicle, operator)
    assert world.tap(world.operator, world.day.mine[1], action="could_not_empty",
                     reason="blocked")[1]["outcome"] == "reported"  # fmt: skip
    assert world.tap(ADMIN_HEADERS, world.day.sibling, vehicle=SIBLING)[1]["outcome"] == (
        "completed"
    )
    assert world.events(world.day.requests[world.day.mine[1]])[-1][:2] == ("report", "open")


def test_a_refused_tap_is_409_and_a_bad_one_422_saying_why(world: World) -> None:
    stop = world.day.mine[2]
    request_id = world.day.requests[stop]
    cancelled = world.client.post(  # the request was called off before the crew came
        f"/api/v1/collections/{request_id}/cancel", json={"note": "x"}, headers=ADMIN_HEADERS
    )
    assert cancelled.status_code == 200, cancelled.text
    tap_id = str(uuid.uuid4())
    first, again = (world.tap(world.crew, stop, tap_id=tap_id) for _copy in range(2))
    assert first == again == (
        409, {"detail": f"tap {tap_id} refused: request {request_id} is cancelled: only a "
              "request that is acknowledged can be marked completed"},
    ), first  # fmt: skip
    bad = {
        "no reason": ({"action": "could_not_empty"}, "could not empty needs a reason: blocked, "
                      "bin_damaged, contaminated_refused, no_access"),
        "unknown reason": ({"action": "could_not_empty", "reason": "tired"}, "could not empty "
                           "needs a reason: blocked, bin_damaged, contaminated_refused, no_access"),
        "not a uuid": ({"tap_id": "tap-1"}, "Input should be a valid UUID"),
        "unknown action": ({"action": "done"}, "Input should be 'emptied' or 'could_not_empty'"),
    }  # fmt: skip
    for what, (body, message) in bad.items():
        code, answer = world.tap(world.crew, world.day.mine[3], **body)
        assert code == 422 and message in str(answer["detail"]), (what, answer)
    engine = make_engine(world.settings.database_url)
    with Session(engine) as session:  # none of the bad taps touched the stop
        assert session.get_one(RouteStop, world.day.mine[3]).done_at is None
    engine.dispose()
