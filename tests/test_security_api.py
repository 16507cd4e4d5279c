"""API authentication and scoping: every route has a policy, and for every role a test proves
who may and who may not; plus the rate limit, the body limit and InfluxQL injection attempts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import Policy, PublicPolicy
from api.main import create_app
from core.settings import Settings
from core.sql import make_engine
from devices.models import Bin, Site
from security.keys import ApiRole, create_key, revoke_key
from tests.api_process import ApiProcess
from tests.helpers import ADMIN_HEADERS

ADMIN, MANAGER, OPERATOR = "admin", "manager", "operator"
# Who may call each route at all. A route missing here fails the test below: a new route
# (issue 8's alerts too) must be given a policy and a line here.
POLICIES: dict[tuple[str, str], str] = {
    ("GET", "/health"): "public",
    ("GET", "/api/v1/sites"): "admin, grid, manager, operator",
    ("GET", "/api/v1/sites/{site_id}"): "admin, grid, manager, operator",
    ("GET", "/api/v1/sites/{site_id}/bins"): "admin, grid, manager, operator",
    ("GET", "/api/v1/bins/{bin_id}"): "admin, grid, manager, operator",
    ("GET", "/api/v1/bins/{bin_id}/readings"): "admin, grid, manager, operator",
    ("POST", "/api/v1/collections"): "admin, manager",
    ("GET", "/api/v1/collections"): "admin, grid, manager, operator",
    ("GET", "/api/v1/collections/{request_id}"): "admin, grid, manager, operator",
    ("POST", "/api/v1/collections/{request_id}/ack"): "admin, operator",
    ("POST", "/api/v1/collections/{request_id}/complete"): "admin, operator",
    ("POST", "/api/v1/collections/{request_id}/cancel"): "admin",
    ("GET", "/api/v1/compliance/sites/{site_id}"): "admin, grid, manager, operator",
    ("GET", "/api/v1/compliance/areas/{area_id}"): "admin, grid",
    ("GET", "/api/v1/compliance/operators/{operator_id}"): "admin, operator",
    ("GET", "/api/v1/rankings"): "admin, grid, manager, operator",
    ("GET", "/api/v1/alerts"): "admin, grid, manager, operator",
    ("GET", "/api/v1/alerts/{alert_id}"): "admin, grid, manager, operator",
    ("POST", "/api/v1/alerts/{alert_id}/ack"): "admin, manager, operator",
    ("GET", "/api/v1/operators/{operator_id}/routes"): "admin, operator",
    ("POST", "/api/v1/operators/{operator_id}/routes"): "admin, operator",
    ("GET", "/api/v1/operators/{operator_id}/routes/{vehicle_id}"): "admin, crew, operator",
    ("POST", "/api/v1/operators/{operator_id}/routes/{vehicle_id}/stops/{stop_id}/taps"): (
        "admin, crew, operator"
    ),
    (
        "PUT",
        "/api/v1/operators/{operator_id}/routes/{vehicle_id}/stops/{stop_id}/taps/{tap_id}/photo",
    ): "admin, crew, operator",
    # The console (api/console): a session cookie instead of a key, the same roles and scope.
    ("GET", "/console/login"): "public",
    ("POST", "/console/login"): "public",
    ("POST", "/console/logout"): "admin, crew, grid, manager, operator",
    ("POST", "/console/locale"): "admin, crew, grid, manager, operator",
    ("GET", "/console"): "admin, crew, grid, manager, operator",
    ("GET", "/console/sites/{site_id}"): "admin, grid, manager, operator",
    ("GET", "/console/requests/{request_id}"): "admin, grid, manager, operator",
    ("GET", "/console/alerts/{alert_id}"): "admin, grid, manager, operator",
    ("GET", "/console/photos/{tap_id}"): "admin, grid, manager, operator",
    ("GET", "/console/sites/{site_id}/live"): "admin, grid, manager, operator",
    ("POST", "/console/sites/{site_id}/collections"): "admin, manager",
    ("POST", "/console/alerts/{alert_id}/ack"): "admin, manager, operator",
    # The grid official's drill-down (api/console/grid.py) and the admin's user screens
    # (api/console/admin.py).
    ("GET", "/console/grid"): "admin, grid",
    ("GET", "/console/grid/{area_id}"): "admin, grid",
    ("GET", "/console/users"): "admin",
    ("POST", "/console/users"): "admin",
    ("GET", "/console/users/{username}"): "admin",
    ("POST", "/console/users/{username}/scope"): "admin",
    ("POST", "/console/users/{username}/disable"): "admin",
    ("POST", "/console/users/{username}/password"): "admin",
    # Reports and rankings (api/console/reports.py): grid officials (their area) and admins.
    ("GET", "/console/rankings"): "admin, grid",
    ("GET", "/console/reports"): "admin, grid",
    ("GET", "/console/reports/areas/{area_id}"): "admin, grid",
    ("GET", "/console/reports/areas/{area_id}/{kind}"): "admin, grid",
    ("GET", "/console/reports/sites/{site_id}"): "admin, grid",
    ("GET", "/console/reports/sites/{site_id}/{kind}"): "admin, grid",
    ("GET", "/console/map"): "admin, grid, manager, operator",
    ("GET", "/console/map/live"): "admin, grid, manager, operator",
    # The dispatcher's screen (api/console/dispatch.py): an operator's own company, the admin any.
    ("GET", "/console/dispatch"): "admin, operator",
    ("GET", "/console/dispatch/{operator_id}"): "admin, operator",
    ("POST", "/console/dispatch/{operator_id}/replan"): "admin, operator",
    # The crew's screen (api/console/crew.py): its vehicle's stops of the day, and its taps.
    ("GET", "/console/crew"): "crew",
    ("GET", "/console/crew/stops"): "crew",
    ("POST", "/console/crew/stops/{stop_id}/tap"): "crew",
}


def _endpoints(app: FastAPI) -> Iterator[Any]:
    """Every endpoint with its full path, methods and dependencies. FastAPI 0.16x keeps included
    routers as lazy `_IncludedRouter` entries whose `effective_route_contexts()` are the
    endpoints; older versions copy them into `app.routes` as `APIRoute`s."""
    for route in app.routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "effective_route_contexts"):
            yield from route.effective_route_contexts()


def _policy(route: Any) -> str | None:
    for dependency in route.dependant.dependencies:
        call = dependency.call
        if isinstance(call, PublicPolicy):
            return "public"
        if isinstance(call, Policy):
            return ", ".join(sorted(role.value for role in call.roles))
    return None


def test_every_route_has_the_policy_in_the_table(settings: Settings) -> None:
    found = {
        (method, route.path): _policy(route)
        for route in _endpoints(create_app(settings))
        for method in route.methods or ()
    }
    assert found == POLICIES


@dataclass(frozen=True)
class World:
    client: TestClient
    tokens: dict[str, str]
    site_a: str
    site_b: str
    bin_b: str
    operator_a: str
    operator_b: str


@pytest.fixture(scope="module")
def world(module_settings: Settings) -> Iterator[World]:
    """One for the module: a test that adds keys or a request touches nothing another reads."""
    with open_world(module_settings) as opened:
        yield opened


@contextmanager
def open_world(settings: Settings) -> Iterator[World]:
    """A manager of site A, an operator serving A (and not B), and the admin, over the pilot
    registry of `settings`."""
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    with Session(engine) as session:
        sites = list(session.scalars(select(Site).join(Bin).distinct().order_by(Site.id)))
        a = sites[0]
        b = next(s for s in sites if s.operator_id != a.operator_id)
        bin_b = session.scalars(select(Bin.id).where(Bin.site_id == b.id)).first()
        assert bin_b is not None
        tokens = {
            MANAGER: create_key(
                session, name="m", role=ApiRole.manager, now=now, site_ids=[a.id]
            ).token,
            OPERATOR: create_key(
                session, name="o", role=ApiRole.operator, now=now, operator_id=a.operator_id
            ).token,
            ADMIN: ADMIN_HEADERS["Authorization"].removeprefix("Bearer "),
        }
        ids = (a.id, b.id, bin_b, a.operator_id, b.operator_id)
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        yield World(client, tokens, *ids)


def _as(world: World, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.tokens[role]}"}


_OUTSIDE_READS = [
    "/api/v1/sites/{site_b}",
    "/api/v1/sites/{site_b}/bins",
    "/api/v1/bins/{bin_b}",
    "/api/v1/bins/{bin_b}/readings",
    "/api/v1/compliance/sites/{site_b}",
]


# A manager may not read operator reports at all (403, tested below), so only operators here.
@pytest.mark.parametrize(
    ("role", "path"),
    [(role, path) for role in (MANAGER, OPERATOR) for path in _OUTSIDE_READS]
    + [(OPERATOR, "/api/v1/compliance/operators/{operator_b}")]
    + [(OPERATOR, "/api/v1/operators/{operator_b}/routes")],
)
def test_reads_outside_the_scope_are_404_like_a_missing_id(
    world: World, role: str, path: str
) -> None:
    url = path.format(**vars(world))
    answer = world.client.get(url, headers=_as(world, role))
    assert answer.status_code == 404, answer.text
    missing = world.client.get(url.rsplit("/", 1)[0] + "/no-such-id", headers=_as(world, ADMIN))
    assert "no " in answer.json()["detail"]
    assert missing.status_code in (404, 405)


@pytest.mark.parametrize("role", [MANAGER, OPERATOR, ADMIN])
def test_lists_show_only_the_scope(world: World, role: str) -> None:
    sites = world.client.get("/api/v1/sites?limit=500", headers=_as(world, role)).json()
    ids = {site["id"] for site in sites["items"]}
    assert world.site_a in ids
    assert (world.site_b in ids) == (role == ADMIN)
    if role == MANAGER:
        assert ids == {world.site_a}


@pytest.mark.parametrize(
    ("role", "method", "path", "expected"),
    [
        (MANAGER, "GET", "/api/v1/compliance/areas/city", 403),
        (OPERATOR, "GET", "/api/v1/compliance/areas/city", 403),
        (MANAGER, "POST", "/api/v1/collections/1/complete", 403),
        (OPERATOR, "POST", "/api/v1/collections/1/cancel", 403),
        (MANAGER, "GET", "/api/v1/operators/op-lvyuan/routes", 403),
        (MANAGER, "POST", "/api/v1/operators/op-lvyuan/routes", 403),
    ],
)
def test_roles_outside_a_route_are_403_with_a_message(
    world: World, role: str, method: str, path: str, expected: int
) -> None:
    answer = world.client.request(
        method, path, headers=_as(world, role), json={"operator_id": "x", "actor": "x"}
    )
    assert answer.status_code == expected
    assert f"a {role} key may not" in answer.json()["detail"]


def test_managers_request_only_for_their_sites_and_operators_act_only_on_their_own(
    world: World,
) -> None:
    client = world.client
    denied = client.post(
        "/api/v1/collections",
        headers=_as(world, MANAGER),
        json={"bin_id": world.bin_b, "reason": "full"},
    )
    assert denied.status_code == 403 and "not in this key's scope" in denied.json()["detail"]
    # The admin opens one at site B (operator B's); operator A may neither see nor complete it.
    opened = client.post(
        "/api/v1/collections",
        headers=_as(world, ADMIN),
        json={"bin_id": world.bin_b, "reason": "full"},
    )
    assert opened.status_code == 201, opened.text
    request_id = opened.json()["id"]
    assert (
        client.get(f"/api/v1/collections/{request_id}", headers=_as(world, OPERATOR)).status_code
        == 404
    )
    listed = client.get("/api/v1/collections", headers=_as(world, OPERATOR)).json()
    assert request_id not in {item["id"] for item in listed["items"]}
    for body in ({"operator_id": world.operator_a}, {"operator_id": world.operator_b}):
        answer = client.post(
            f"/api/v1/collections/{request_id}/ack", headers=_as(world, OPERATOR), json=body
        )
        assert answer.status_code == 403, answer.text
        assert "operator" in answer.json()["detail"]


def test_no_key_a_wrong_key_a_revoked_or_expired_key_are_401(
    world: World, module_settings: Settings
) -> None:
    engine = make_engine(module_settings.database_url)
    now = datetime.now(UTC)
    with Session(engine) as session:
        revoked = create_key(session, name="r", role=ApiRole.admin, now=now)
        revoke_key(session, revoked.key.id, now=now)
        expiring = create_key(
            session, name="e", role=ApiRole.admin, now=now, expires_at=now + timedelta(seconds=1)
        )
    engine.dispose()
    world.tokens["revoked"] = revoked.token
    world.tokens["expired"] = expiring.token
    world.tokens["forged"] = expiring.token[:-4] + "AAAA"
    assert world.client.get("/api/v1/sites").status_code == 401
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("api.auth.datetime", _Later)
        for who in ("revoked", "expired", "forged"):
            answer = world.client.get("/api/v1/sites", headers=_as(world, who))
            assert answer.status_code == 401 and "API key" in answer.json()["detail"]
    assert world.client.get("/health").status_code in (200, 503)  # public


class _Later(datetime):
    @classmethod
    def now(cls, tz: object = None) -> _Later:
        return cls.fromtimestamp(datetime.now(UTC).timestamp() + 5, UTC)


KEY_CACHE_S = 3.0


def test_a_revoked_key_stops_working_within_the_key_cache_bound(
    settings: Settings, pilot_bins: object, tmp_path: Path
) -> None:
    """On a real `binwatch api` process: a key verified just before its revocation is still
    remembered (the cache is used), and no request started BINWATCH_API_KEY_CACHE_S after the
    revocation gets through, nor any after the first refusal."""
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        issued = create_key(session, name="cached", role=ApiRole.admin, now=datetime.now(UTC))
        key_id = issued.key.id
    cached = settings.model_copy(update={"api_key_cache_s": KEY_CACHE_S})
    with (
        ApiProcess(cached, tmp_path / "api.log") as api,
        httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {issued.token}"}) as c,
    ):
        assert c.get("/api/v1/sites").status_code == 200  # verified: remembered from now on
        with Session(engine) as session:
            revoke_key(session, key_id, now=datetime.now(UTC))
        revoked = time.monotonic()
        seen: list[tuple[float, int]] = []
        while not seen or seen[-1][0] < KEY_CACHE_S + 1:
            started = time.monotonic() - revoked
            seen.append((started, c.get("/api/v1/sites").status_code))
            time.sleep(0.1)
    engine.dispose()
    assert seen[0][1] == 200, seen  # within the bound the remembered key still works
    refused = next(i for i, (_, status) in enumerate(seen) if status == 401)
    assert {status for _, status in seen[refused:]} == {401}, seen
    assert all(status == 401 for at, status in seen if at >= KEY_CACHE_S), seen


def test_rate_limit_answers_429_with_retry_after(settings: Settings, pilot_bins: object) -> None:
    slow = settings.model_copy(update={"api_rate_per_s": 0.5, "api_rate_burst": 3})
    with TestClient(create_app(slow), headers=ADMIN_HEADERS) as client:
        codes = [client.get("/api/v1/sites").status_code for _ in range(4)]
        answer = client.get("/api/v1/sites")
    assert codes == [200, 200, 200, 429]
    assert answer.status_code == 429 and int(answer.headers["Retry-After"]) >= 1
    assert "rate limit" in answer.json()["detail"]


def test_rate_limit_is_per_key(settings: Settings, pilot_bins: object) -> None:
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        operator_id = session.scalars(select(Site.operator_id)).first()
        crew = create_key(
            session,
            name="crew",
            role=ApiRole.operator,
            now=datetime.now(UTC),
            operator_id=operator_id,
        ).token
    engine.dispose()
    slow = settings.model_copy(update={"api_rate_per_s": 0.5, "api_rate_burst": 3})
    with TestClient(create_app(slow)) as client:
        admin = [client.get("/api/v1/sites", headers=ADMIN_HEADERS).status_code for _ in range(4)]
        # The admin key is spent; the operator's key still has its whole burst, then is spent too.
        own = {"Authorization": f"Bearer {crew}"}
        others = [client.get("/api/v1/sites", headers=own).status_code for _ in range(4)]
        admin_again = client.get("/api/v1/sites", headers=ADMIN_HEADERS).status_code
    assert admin == [200, 200, 200, 429]
    assert others == [200, 200, 200, 429]
    assert admin_again == 429


def test_bodies_over_the_limit_are_413(world: World) -> None:
    answer = world.client.post(
        "/api/v1/collections", headers=_as(world, ADMIN), content=b"x" * (70 * 1024)
    )
    assert answer.status_code == 413 and "limit" in answer.json()["detail"]


INJECTIONS = [
    "x' OR '1'='1",
    'x" ; DROP DATABASE "x',
    "x/**/OR/**/1=1",
    "a;DROP MEASUREMENT telemetry",
]


@pytest.mark.parametrize("attempt", INJECTIONS)
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/sites/{}/bins",
        "/api/v1/bins/{}",
        "/api/v1/bins/{}/readings",
        "/api/v1/compliance/sites/{}",
        "/api/v1/compliance/areas/{}",
        "/api/v1/compliance/operators/{}",
        "/api/v1/collections?site_id={}",
        "/api/v1/bins/b1/readings?every={}",
        "/api/v1/rankings?site_type={}",
    ],
)
def test_influxql_injection_is_refused_before_any_query(
    world: World, path: str, attempt: str
) -> None:
    answer = world.client.get(path.format(attempt), headers=_as(world, ADMIN))
    assert 400 <= answer.status_code < 500 and answer.json()["detail"]
