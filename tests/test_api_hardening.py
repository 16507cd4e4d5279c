"""Issue 13's API items that need no server process of the API's own: chunked bodies over the
cap, the existence oracle, the audit trail's actor, the offline docs and the OpenAPI errors."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.models import Alert
from api.main import create_app
from api.paging import MAX_ROWS
from core.influx import InfluxClient
from core.lineprotocol import tag_set
from core.settings import Settings
from core.sql import make_engine
from core.times import from_epoch_ms, rfc3339
from devices.models import Bin, Vehicle
from devices.registry import BinTags
from security.keys import TOKEN_PREFIX
from tests.helpers import ADMIN_ACTOR, ADMIN_HEADERS
from tests.test_security_api import ADMIN, MANAGER, OPERATOR, World, _as, open_world


def _chunks(total: int) -> Iterator[bytes]:
    for _ in range(total // 1024):
        yield b'{"x": "' + b"y" * 1010 + b'"},'


def test_a_chunked_body_over_the_limit_is_413_on_every_post_route(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    app = create_app(settings)
    with TestClient(app, headers=ADMIN_HEADERS) as client:
        posts = [
            path.replace("{alert_id}", "1").replace("{request_id}", "1")
            for path, item in app.openapi()["paths"].items()
            if "post" in item
        ]
        for url in posts:
            answer = client.post(
                url,
                content=_chunks(2 * settings.api.max_body),
                headers={"Content-Type": "application/json"},
            )
            assert "content-length" not in answer.request.headers  # sent chunked
            assert answer.status_code == 413, (url, answer.text)
            assert "limit" in answer.json()["detail"]


def _path_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every operation with an id in its path, from the OpenAPI document."""
    return [
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if "{" in path
    ]


@pytest.fixture
def world(settings: Settings, pilot_bins: dict[str, BinTags]) -> Iterator[World]:
    """test_security_api's world, one per test here: these tests open requests and alerts."""
    with open_world(settings) as opened:
        yield opened


@pytest.fixture
def outside(world: World, settings: Settings) -> dict[str, str]:
    """An id of each kind that exists but lies outside the manager's and the operator's scope
    (site B, served by operator B), and one of each kind that does not exist."""
    opened = world.client.post(
        "/api/v1/collections",
        headers=_as(world, ADMIN),
        json={"bin_id": world.bin_b, "reason": "full"},
    )
    assert opened.status_code == 201, opened.text
    [alert_id] = _add_alerts(settings, [(world.bin_b, world.site_b)])
    return {
        "site_id": world.site_b,
        "bin_id": world.bin_b,
        "area_id": "city",
        "operator_id": world.operator_b,
        "request_id": str(opened.json()["id"]),
        "alert_id": str(alert_id),
        "vehicle_id": _vehicle_of(settings, world.operator_b),
        # No plan here: the operator (and the vehicle) decide before the stop is looked at.
        "stop_id": "987653",
        "tap_id": "0c7f3f1e-1b7e-4f43-a5b2-7f4c9d2e6b15",  # nor a tap: the same holds
    }


def _vehicle_of(settings: Settings, operator_id: str) -> str:
    """One of the operator's vehicles (the pilot fleet gives each operator some)."""
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        vehicle = session.scalars(
            select(Vehicle.id).where(Vehicle.operator_id == operator_id)
        ).first()
    engine.dispose()
    assert vehicle is not None
    return vehicle


MISSING = {"site_id": "no-such-site", "bin_id": "no-such-bin", "area_id": "no-such-area",
           "operator_id": "no-such-op", "request_id": "987654", "alert_id": "987654",
           "vehicle_id": "no-such-vehicle", "stop_id": "987654",
           "tap_id": "5b0e7a52-8d5f-4e0b-9a3c-2f1d6c7e8a90"}  # fmt: skip


@pytest.mark.parametrize("role", [MANAGER, OPERATOR])
def test_a_missing_id_and_one_outside_the_scope_get_the_same_answer_on_every_route(
    world: World, outside: dict[str, str], role: str
) -> None:
    """Walks every route with an id: status and detail (with the id masked) are the same for an
    id that does not exist and for one that exists outside the caller's scope."""
    app = world.client.app
    assert isinstance(app, FastAPI)
    routes = _path_routes(app)
    assert len(routes) >= 12, routes
    body = {"operator_id": world.operator_a, "note": "x"}
    tap = {"tap_id": "5b0e7a52-8d5f-4e0b-9a3c-2f1d6c7e8a90", "action": "emptied"}
    compared = 0
    for method, path in routes:
        answers = []
        for ids in (outside, MISSING):
            url = path
            for name, value in ids.items():
                url = url.replace(f"{{{name}}}", value)
            answer = world.client.request(
                method,
                url,
                headers=_as(world, role),
                json=(
                    tap
                    if path.endswith("/taps")
                    else body
                    if path.endswith("/complete") or "collections" in path
                    else {}
                )
                if method == "POST"
                else None,
            )
            detail = str(answer.json().get("detail"))
            for value in sorted(ids.values(), key=len, reverse=True):
                detail = detail.replace(value, "<id>")
            answers.append((answer.status_code, detail))
        assert answers[0] == answers[1], (role, method, path, answers)
        assert answers[0][0] in (403, 404), (role, method, path, answers)
        compared += 1
    assert compared == len(routes)


def _key_id(world: World, role: str) -> str:
    return world.tokens[role].removeprefix(TOKEN_PREFIX).partition("_")[0]


def test_the_audit_trail_names_the_calling_key_and_free_text_is_a_note(
    world: World, outside: dict[str, str], settings: Settings
) -> None:
    """A manager's manual request, an operator's acknowledgement and completion, an admin's
    cancel and alert acknowledgements by each role: the actor is always the key (role, id,
    name) and never anything the body says."""
    client = world.client
    manager = f"manager key {_key_id(world, MANAGER)} (m)"
    operator = f"operator key {_key_id(world, OPERATOR)} (o)"
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        bin_a = session.scalars(select(Bin.id).where(Bin.site_id == world.site_a)).first()
    engine.dispose()
    assert bin_a is not None
    [alert_id] = _add_alerts(settings, [(bin_a, world.site_a)])

    # Old free-text actor fields are refused, not recorded.
    for url, body in (
        ("/api/v1/collections", {"bin_id": bin_a, "reason": "x", "requested_by": "admin"}),
        (f"/api/v1/alerts/{alert_id}/ack", {"by": "someone else"}),
        (f"/api/v1/collections/{outside['request_id']}/cancel", {"actor": "mayor"}),
    ):
        role = ADMIN if url.endswith("cancel") else MANAGER
        assert client.post(url, json=body, headers=_as(world, role)).status_code == 422

    created = client.post(
        "/api/v1/collections", json={"bin_id": bin_a, "reason": "bags"}, headers=_as(world, MANAGER)
    )
    assert created.status_code == 201, created.text
    request_id = created.json()["id"]
    action = {"operator_id": world.operator_a, "note": "crew 3"}
    for step in ("ack", "complete"):
        moved = client.post(
            f"/api/v1/collections/{request_id}/{step}", json=action, headers=_as(world, OPERATOR)
        )
        assert moved.status_code == 200, moved.text
    trail = moved.json()["events"]
    assert [(e["to_status"], e["actor"], e["note"]) for e in trail] == [
        ("open", manager, "bags"),
        ("acknowledged", operator, "crew 3"),
        ("completed", operator, "crew 3"),
    ]
    cancelled = client.post(
        f"/api/v1/collections/{outside['request_id']}/cancel",
        json={"note": "twice"},
        headers=_as(world, ADMIN),
    )
    assert cancelled.json()["events"][-1]["actor"] == ADMIN_ACTOR

    acked = client.post(
        f"/api/v1/alerts/{alert_id}/ack", json={"note": "Wang goes"}, headers=_as(world, MANAGER)
    )
    assert acked.status_code == 200, acked.text
    assert acked.json()["acknowledged_by"] == manager
    assert [(e["kind"], e["actor"], e["note"]) for e in acked.json()["events"]] == [
        ("acknowledged", manager, "Wang goes")
    ]


def test_docs_pages_load_only_local_assets_and_the_api_serves_them(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page)
            assert html.status_code == 200
            urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*["']([^"']+)["']""", html.text)
            urls += re.findall(r"""spec-url=["']([^"']+)["']""", html.text)
            assert len(urls) >= 3, (page, urls)
            assert "http://" not in html.text and "https://" not in html.text, html.text
            for url in urls:
                assert url.startswith("/"), (page, url)
                asset = client.get(url)
                assert asset.status_code == 200 and len(asset.content) > 0, (page, url)
        bundle = client.get("/docs/assets/swagger-ui-bundle.js")
        assert "SwaggerUIBundle" in bundle.text
        assert "Redoc" in client.get("/docs/assets/redoc.standalone.js").text[:2000]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        resolved: dict[str, Any] = document["components"]["schemas"][schema["$ref"].split("/")[-1]]
        return resolved
    return schema


def test_openapi_declares_every_error_with_its_schema_and_every_body_an_example(
    settings: Settings,
) -> None:
    document = create_app(settings).openapi()
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["detail"]
    seen: set[str] = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            expected = (
                {"503"} if not path.startswith("/api/") else {"401", "403", "422", "429", "503"}
            )
            if "{" in path:
                expected.add("404")
            if "requestBody" in operation:
                expected |= {"404", "408", "413"}
                content = operation["requestBody"]["content"]
                if "application/json" in content:
                    body = content["application/json"]
                    schema = _resolve(document, body["schema"])
                    assert schema.get("examples") or body.get("example"), (method, path)
                    example = (schema.get("examples") or [body.get("example")])[0]
                    assert set(example) <= set(schema["properties"]), (method, path, example)
                else:  # a tap's photo: the image itself, no JSON around it
                    assert set(content) == {"image/jpeg", "image/png"}, (method, path)
                    binary = {"type": "string", "format": "binary"}
                    assert all(c["schema"] == binary for c in content.values()), (method, path)
            assert expected <= set(responses), (method, path, sorted(responses))
            for code in expected | ({"409"} & set(responses)):
                declared = responses[code]["content"]["application/json"]
                if path == "/health":
                    continue  # its 503 is the Health body, which says what is degraded
                assert declared["schema"] == {"$ref": "#/components/schemas/Error"}, (path, code)
                assert declared["example"]["detail"], (path, code)
                if code in ("429", "503"):
                    assert "Retry-After" in responses[code]["headers"], (path, code)
                seen.add(code)
    assert seen == {"401", "403", "404", "408", "409", "413", "422", "429", "503"}


def _telemetry(tags: BinTags, start_ms: int, count: int, step_ms: int) -> list[str]:
    tag_text = tag_set(dataclasses.asdict(tags))
    return [
        f"telemetry{tag_text} fill_pct={i % 100}.0,deposits={i % 7}i {start_ms + i * step_ms}"
        for i in range(count)
    ]


def _add_alerts(settings: Settings, bins: list[tuple[str, str]]) -> list[int]:
    """An active tilt alert at each (bin id, site id), straight into the registry; their ids."""
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    with Session(engine) as session:
        alerts = [
            Alert(
                bin_id=bin_id,
                site_id=site_id,
                type="tilt",
                severity="major",
                state="active",
                detail="tilted",
                started_at=now,
                last_seen_at=now,
            )
            for bin_id, site_id in bins
        ]
        session.add_all(alerts)
        session.commit()
        ids = [alert.id for alert in alerts]
    engine.dispose()
    return ids


def _follow(client: TestClient, url: str, key: str) -> tuple[list[Any], int]:
    """Every item of every page from `url` on, and the number of pages."""
    items: list[Any] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        page = client.get(next_url)
        assert page.status_code == 200, page.text
        items += page.json()[key]
        next_url = page.json()["next"]
        pages += 1
        assert pages < 100
    return items, pages


def test_list_pages_through_next_neither_repeat_nor_skip_when_rows_arrive_between_pages(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    """Keyset paging (issue 18): alerts that share their start time (ties broken by id), new
    alerts raised between two pages, a manager following a cursor made from the admin's list
    (scope kept), and cursors the API did not make (422)."""
    with open_world(settings) as world:
        site_a = world.site_a
        in_a = sorted(b for b, t in pilot_bins.items() if t.site == site_a)[:2]
        elsewhere = sorted(b for b, t in pilot_bins.items() if t.site != site_a)[:5]
        _add_alerts(settings, [(b, pilot_bins[b].site) for b in in_a + elsewhere[:3]])  # 5 ties
        admin, manager = _as(world, ADMIN), _as(world, MANAGER)
        before = world.client.get("/api/v1/alerts?limit=500", headers=admin).json()
        first = world.client.get("/api/v1/alerts?limit=2", headers=admin).json()
        assert first["total"] == before["total"] == len(before["items"]) >= 5
        _add_alerts(settings, [(b, pilot_bins[b].site) for b in elsewhere[3:]])  # newest now
        items, next_url = first["items"], first["next"]
        while next_url:
            page = world.client.get(next_url, headers=admin).json()
            assert page["total"] is None and len(page["items"]) <= 2
            items, next_url = items + page["items"], page["next"]
        assert [a["id"] for a in items] == [a["id"] for a in before["items"]]

        mine = world.client.get(first["next"], headers=manager).json()["items"]
        assert mine and {a["site_id"] for a in mine} == {site_a}
        for url, query in (
            ("/api/v1/alerts", "after=bm9wZQ"),
            ("/api/v1/collections", "after=WyJ4Il0"),  # ["x"]: not an id
            ("/api/v1/sites", f"after={first['next'].partition('after=')[2]}"),
            ("/api/v1/sites", "after=WyJhIl0&offset=1"),
        ):
            answer = world.client.get(f"{url}?{query}", headers=admin)
            assert answer.status_code == 422, (url, answer.text)
            assert "after" in answer.text, answer.text


def test_every_list_and_readings_route_is_capped_and_pages_through_everything(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    influx = InfluxClient(settings)
    influx.ensure_database(settings.raw_retention)
    tags = pilot_bins[min(pilot_bins)]
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    start_ms = now_ms - 3_600_000
    count = 2_345  # one a second, 39 minutes' worth, some readings sharing nothing
    influx.write(_telemetry(tags, start_ms, count, 1000))
    influx.close()
    window = {"start": rfc3339(from_epoch_ms(start_ms)), "end": rfc3339(from_epoch_ms(now_ms))}
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as client:
        readings = f"/api/v1/bins/{tags.bin}/readings?{urlencode(window)}"
        too_many = client.get(f"{readings}&limit={MAX_ROWS + 1}")
        assert too_many.status_code == 422
        one_page = client.get(readings).json()
        assert len(one_page["rows"]) == count and one_page["next"] is None  # under the cap
        rows, pages = _follow(client, f"{readings}&limit=500", "rows")
        assert pages == 5
        assert [r["time"] for r in rows] == [r["time"] for r in one_page["rows"]]  # all, once

        buckets = f"{readings}&every=1m"
        whole = client.get(buckets).json()["rows"]
        paged, pages = _follow(client, f"{buckets}&limit=7", "rows")
        assert pages == -(-len(whole) // 7) and paged == whole

        _add_alerts(settings, [(t.bin, t.site) for t in list(pilot_bins.values())[:3]])
        for bin_id in sorted(pilot_bins)[:3]:
            made = client.post("/api/v1/collections", json={"bin_id": bin_id, "reason": "x"})
            assert made.status_code == 201, made.text
        for url in ("/api/v1/sites", "/api/v1/alerts", "/api/v1/collections"):
            everything = client.get(f"{url}?limit=500").json()
            items, pages = _follow(client, f"{url}?limit=2", "items")
            assert items == everything["items"] and everything["total"] >= 3
            assert pages == max(1, -(-everything["total"] // 2))

        site = max({t.site for t in pilot_bins.values()}, key=lambda s: sum(
            t.site == s for t in pilot_bins.values()))  # fmt: skip
        all_bins = client.get(f"/api/v1/sites/{site}/bins").json()
        assert len(all_bins) >= 2
        chained: list[Any] = []
        link: str | None = f"/api/v1/sites/{site}/bins?limit=1"
        while link:
            answer = client.get(link)
            chained += answer.json()
            found = re.match(r'<([^>]+)>; rel="next"', answer.headers.get("link", ""))
            link = found.group(1) if found else None
        assert chained == all_bins


def _cursor(*values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def test_a_cursor_made_by_hand_is_a_422_that_says_so_on_every_keyset_list(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    """`after` is opaque, but anyone can decode and rewrite it. A time at the calendar's edge
    with an offset that takes it past the edge (9999-12-31T23:59:59-23:59) was a 500: the
    registry's column converts it to UTC, and there is no such UTC time."""
    forged = {
        "/api/v1/alerts": [
            _cursor("9999-12-31T23:59:59-23:59", 1),
            _cursor("0001-01-01T00:00:00+23:59", 1),
            _cursor("2026-12-01T00:00:00", 1),  # no offset
            _cursor("2026-12-01T00:00:00+00:00", 2**63),
            _cursor("2026-12-01T00:00:00+00:00", "1"),
            _cursor(1),
        ],
        "/api/v1/collections": [_cursor(-1), _cursor(2**31), _cursor(1.5), _cursor("1")],
        "/api/v1/sites": [_cursor("../x"), _cursor("x" * 65), _cursor(1), "not base64!"],
    }
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as client:
        for path, cursors in forged.items():
            for after in cursors:
                answer = client.get(path, params={"after": after})
                assert answer.status_code == 422, (path, after, answer.text)
                assert "after is not a cursor of this list" in answer.json()["detail"]
