"""The API against a real InfluxDB and a small hand-built registry: one district, street,
community and operator, two sites, four bins. Points are written straight to InfluxDB with the
tags ingest would give them, so every expected number here is exact."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from binwatch.servers import free_port
from core.influx import InfluxClient, quote_ident
from core.lineprotocol import tag_set
from core.settings import Settings
from core.sql import make_engine, session_factory
from devices.contract import Topics
from devices.models import MAX_ROW_ID, Area, Bin, Operator, Site
from devices.registry import bin_tags
from ingest.decode import decode
from security.keys import ApiRole, create_key
from tests.helpers import ADMIN_HEADERS, wait_for
from tests.registry_backends import prepare_registry

pytestmark = pytest.mark.servers

HOUR_MS = 3_600_000
# Three whole hours ago: inside the default 24 h window and the 90 d retention, and on an hour
# boundary (Asia/Shanghai is UTC+8, so local and UTC hour buckets coincide).
BASE_MS = (int(datetime.now(UTC).timestamp() * 1000) // HOUR_MS - 3) * HOUR_MS
DAY_MS = 24 * HOUR_MS
SILENT_MS = BASE_MS - 40 * DAY_MS  # a bin silent since, well inside the 90 d retention
BINS = ("a-kitchen", "a-residual", "a-recyclable", "b-kitchen")


def iso(ms: int) -> str:
    return (
        (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


@pytest.fixture
def registry(settings: Settings, request: pytest.FixtureRequest) -> dict[str, str]:
    """The registry, migrated and filled by hand; returns each bin's escaped tag set."""
    prepare_registry(settings.database_url.get_secret_value(), request, fleet=False)
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as session:
        session.add_all(
            [
                Area(id="shizhong", name="Shizhong District", kind="district"),
                Area(id="lvxin", name="Lvxin Street", kind="street", parent_id="shizhong"),
                Area(id="xiaoba", name="Xiaoba Community", kind="community", parent_id="lvxin"),
                Operator(id="op-green", name="Green Sorting Co."),
            ]
        )
        session.flush()
        session.add_all(
            [
                Site(
                    id="site-a",
                    name="Jiazhou Shuian",
                    site_type="compound",
                    community_id="xiaoba",
                    operator_id="op-green",
                    address="1 Shuian Rd",
                    latitude=36.6,
                    longitude=117.0,
                ),
                Site(
                    id="site-b",
                    name="Lvxin Primary School",
                    site_type="school",
                    community_id="xiaoba",
                    operator_id="op-green",
                    address="2 Lvxin Rd",
                    latitude=36.7,
                    longitude=117.1,
                ),
            ]
        )
        session.flush()
        session.add_all(
            [
                Bin(
                    id=bin_id,
                    site_id=f"site-{bin_id[0]}",
                    station="gate",
                    stream=bin_id[2:],
                    capacity_l=240,
                    threshold_pct=80.0,
                )
                for bin_id in BINS
            ]
        )
        session.commit()
        tags = {bin_id: tag_set(dataclasses.asdict(t)) for bin_id, t in bin_tags(session).items()}
    engine.dispose()
    return tags


@pytest.fixture
def influx(settings: Settings) -> Iterator[InfluxClient]:
    client = InfluxClient(settings)
    client.ensure_database(settings.raw_retention)
    yield client
    client.query(f"DROP DATABASE {quote_ident(settings.influx.db)}", database=False)
    client.close()


@pytest.fixture
def client(
    settings: Settings, registry: dict[str, str], influx: InfluxClient
) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as test_client:
        yield test_client


@pytest.fixture
def write(influx: InfluxClient, registry: dict[str, str]) -> Any:
    """write(bin_id, ts_ms, **fields): one telemetry point as ingest would store it."""

    def _write(bin_id: str, ts_ms: int, **fields: Any) -> None:
        # Through ingest's own decode, so the stored fields are exactly what ingest writes.
        payload = json.dumps({"ts": ts_ms, "fill_pct": 10.0, **fields}).encode()
        topic = f"binwatch/v1/bins/{bin_id}/telemetry"
        decoded = decode(
            topic,
            payload,
            ts_ms + 250,
            topics=Topics("binwatch/v1"),
            tags_of=registry.get,
            max_payload=65536,
        )
        assert not decoded.rejections, decoded.rejections
        influx.write(decoded.lines)

    return _write


# --- sites ----------------------------------------------------------------------------------


def test_sites_are_paginated_and_filtered(client: TestClient) -> None:
    first = client.get("/api/v1/sites", params={"limit": 1}).json()
    second = client.get("/api/v1/sites", params={"limit": 1, "offset": 1}).json()
    schools = client.get("/api/v1/sites", params={"site_type": "school"}).json()
    elsewhere = client.get("/api/v1/sites", params={"community_id": "nowhere"}).json()

    assert (first["total"], first["limit"], first["offset"]) == (2, 1, 0)
    assert [s["id"] for s in first["items"] + second["items"]] == ["site-a", "site-b"]
    assert first["items"][0] == {
        "id": "site-a",
        "name": "Jiazhou Shuian",
        "site_type": "compound",
        "community_id": "xiaoba",
        "operator_id": "op-green",
        "address": "1 Shuian Rd",
        "latitude": 36.6,
        "longitude": 117.0,
        "bin_count": 3,
        "retired_at": None,
    }
    assert [s["id"] for s in schools["items"]] == ["site-b"] and schools["total"] == 1
    assert elsewhere == {"items": [], "total": 0, "limit": 100, "offset": 0, "next": None}
    assert first["next"].startswith("/api/v1/sites?limit=1&after=") and second["next"] is None
    following = client.get(first["next"]).json()  # keyset: the same rows, uncounted
    assert following["items"] == second["items"] and following["total"] is None


LIST_CACHE_S = 2.0


def test_a_remembered_site_list_reaches_only_callers_who_see_the_same_sites(
    settings: Settings, registry: dict[str, str], influx: InfluxClient
) -> None:
    """The site list is remembered for BINWATCH_API_REPORT_CACHE_S, keyed by the sites the
    caller may see and the query: a manager never gets the admin's page, a changed query is
    another page, and a bin added shows in the counts once the entry is that old."""
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as session:
        token = create_key(
            session, name="m", role=ApiRole.manager, now=datetime.now(UTC), site_ids=["site-a"]
        ).token
    manager = {"Authorization": f"Bearer {token}"}
    short = settings.model_copy(update={"api_report_cache_s": LIST_CACHE_S})
    with TestClient(create_app(short), headers=ADMIN_HEADERS) as client:
        began = time.monotonic()
        everything = client.get("/api/v1/sites").json()
        assert [(s["id"], s["bin_count"]) for s in everything["items"]] == [
            ("site-a", 3), ("site-b", 1)
        ]  # fmt: skip
        mine = client.get("/api/v1/sites", headers=manager).json()
        assert [s["id"] for s in mine["items"]] == ["site-a"] and mine["total"] == 1
        with session_factory(engine)() as session:
            session.add(Bin(id="a-spare", site_id="site-a", station="gate", stream="residual",
                            capacity_l=240, threshold_pct=80.0))  # fmt: skip
            session.commit()
        assert client.get("/api/v1/sites").json() == everything  # remembered
        assert time.monotonic() - began < LIST_CACHE_S, "too slow to show the cache"
        one = client.get("/api/v1/sites", params={"limit": 1}).json()  # another query
        assert [(s["id"], s["bin_count"]) for s in one["items"]] == [("site-a", 4)]
        wait_for(
            lambda: client.get("/api/v1/sites").json()["items"][0]["bin_count"] == 4,
            timeout=LIST_CACHE_S + 2,
            what="the new bin in the remembered site list",
        )
        assert time.monotonic() - began >= LIST_CACHE_S
    engine.dispose()


def test_site_detail_names_its_place_in_the_grid(client: TestClient) -> None:
    site = client.get("/api/v1/sites/site-a").json()

    assert site["community"] == {"id": "xiaoba", "name": "Xiaoba Community"}
    assert site["street"] == {"id": "lvxin", "name": "Lvxin Street"}
    assert site["district"] == {"id": "shizhong", "name": "Shizhong District"}
    assert site["operator"] == {"id": "op-green", "name": "Green Sorting Co."}
    assert (site["site_type"], site["bin_count"]) == ("compound", 3)


def test_site_bins_carry_their_newest_reading(client: TestClient, write: Any) -> None:
    write("a-kitchen", BASE_MS, fill_pct=40.0, seq=1, deposits=3, contaminated=1)
    write(
        "a-kitchen",
        BASE_MS + 60_000,
        fill_pct=95.5,
        seq=2,
        deposits=5,
        contaminated=0,
        weight_kg=12.5,
        battery_pct=88.0,
        temp_c=21.5,
    )
    # Silent for 40 days: its last reading is found behind the recent window, not its older one.
    write("a-residual", SILENT_MS - 10 * DAY_MS, fill_pct=10.0, seq=6)
    write("a-residual", SILENT_MS, fill_pct=100.0, seq=7)
    write("b-kitchen", BASE_MS + 120_000, fill_pct=1.0)  # another site: must not leak in

    bins = {b["id"]: b for b in client.get("/api/v1/sites/site-a/bins").json()}

    assert list(bins) == ["a-kitchen", "a-recyclable", "a-residual"]
    assert bins["a-kitchen"]["stream"] == "kitchen"
    assert bins["a-kitchen"]["latest"] == {
        "time": iso(BASE_MS + 60_000),
        "received_at": iso(BASE_MS + 60_250),
        "fill_pct": 95.5,
        "seq": 2,
        "deposits": 5,
        "contaminated": 0,
        "weight_kg": 12.5,
        "battery_pct": 88.0,
        "temp_c": 21.5,
        "overflow": False,
        "over90": True,
    }
    assert bins["a-residual"]["latest"]["time"] == iso(SILENT_MS)
    assert bins["a-residual"]["latest"]["overflow"] is True
    assert bins["a-residual"]["latest"]["deposits"] is None
    assert bins["a-recyclable"]["latest"] is None


# --- bins -----------------------------------------------------------------------------------


def test_bin_detail_has_its_site_and_latest_reading(client: TestClient, write: Any) -> None:
    write("b-kitchen", BASE_MS, fill_pct=33.0)

    found = client.get("/api/v1/bins/b-kitchen").json()
    silent = client.get("/api/v1/bins/a-recyclable").json()

    assert found["site"] == {"id": "site-b", "name": "Lvxin Primary School", "site_type": "school"}
    assert (found["threshold_pct"], found["capacity_l"]) == (80.0, 240)
    assert (found["latest"]["time"], found["latest"]["fill_pct"]) == (iso(BASE_MS), 33.0)
    assert silent["latest"] is None


def test_raw_readings_are_every_point_in_the_window(client: TestClient, write: Any) -> None:
    for minute in range(4):
        write("a-kitchen", BASE_MS + minute * 60_000, fill_pct=10.0 * minute, seq=minute)
    write("a-residual", BASE_MS, fill_pct=50.0)

    default = client.get("/api/v1/bins/a-kitchen/readings").json()
    window = client.get(
        "/api/v1/bins/a-kitchen/readings",
        params={
            "start": iso(BASE_MS + 60_000),
            "end": iso(BASE_MS + 180_000),
        },
    ).json()

    assert [r["seq"] for r in default["rows"]] == [0, 1, 2, 3]
    assert default["every"] is None
    # end is exclusive; an offset other than Z is accepted and answered in UTC
    assert [r["time"] for r in window["rows"]] == [iso(BASE_MS + 60_000), iso(BASE_MS + 120_000)]
    assert window["rows"][0]["received_at"] == iso(BASE_MS + 60_250)
    assert (window["start"], window["end"]) == (iso(BASE_MS + 60_000), iso(BASE_MS + 180_000))
    shifted = datetime.fromisoformat(iso(BASE_MS + 60_000)).astimezone(
        datetime.fromisoformat("2026-01-01T00:00:00+08:00").tzinfo
    )
    same = client.get(
        "/api/v1/bins/a-kitchen/readings",
        params={
            "start": shifted.isoformat(),
            "end": iso(BASE_MS + 180_000),
        },
    ).json()
    assert same["rows"] == window["rows"]


def test_buckets_sum_deposits_and_take_the_ratio_of_sums(client: TestClient, write: Any) -> None:
    write(
        "a-kitchen",
        BASE_MS + 60_000,
        fill_pct=20.0,
        deposits=2,
        contaminated=2,
        battery_pct=90.0,
        temp_c=20.0,
    )
    write(
        "a-kitchen",
        BASE_MS + 120_000,
        fill_pct=40.0,
        deposits=198,
        contaminated=0,
        battery_pct=80.0,
        temp_c=25.0,
    )
    write("a-kitchen", BASE_MS + HOUR_MS + 60_000, fill_pct=45.0, deposits=0, contaminated=0)

    body = client.get(
        "/api/v1/bins/a-kitchen/readings",
        params={
            "start": iso(BASE_MS),
            "end": iso(BASE_MS + 3 * HOUR_MS),
            "every": "1h",
        },
    ).json()

    assert body["every"] == "1h"
    assert body["rows"] == [
        {
            "time": iso(BASE_MS),
            "fill_pct_mean": 30.0,
            "fill_pct_max": 40.0,
            "deposits": 200,
            "contaminated": 2,
            "accuracy": 0.99,
            "battery_pct_min": 80.0,
            "temp_c_max": 25.0,
            "readings": 2,
        },
        {
            "time": iso(BASE_MS + HOUR_MS),
            "fill_pct_mean": 45.0,
            "fill_pct_max": 45.0,
            "deposits": 0,
            "contaminated": 0,
            "accuracy": None,
            "battery_pct_min": None,
            "temp_c_max": None,
            "readings": 1,
        },
    ]


# --- errors ---------------------------------------------------------------------------------

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.mark.parametrize(
    ("path", "params", "names"),
    [
        ("/api/v1/bins/a-kitchen/readings", {"start": "2026-11-27T08:00:00"}, "start"),
        ("/api/v1/bins/a-kitchen/readings", {"end": "yesterday"}, "end"),
        ("/api/v1/bins/a-kitchen/readings", {"start": "1066-10-14T09:00:00Z"}, "start"),
        ("/api/v1/bins/a-kitchen/readings", {"every": "1y"}, "every"),
        ("/api/v1/bins/a-kitchen/readings", {"every": "0m"}, "every"),
        ("/api/v1/bins/a-kitchen/readings", {"every": "30s"}, "every"),
        ("/api/v1/bins/a-kitchen/readings", {"every": "999999999999999999w"}, "every"),
        ("/api/v1/bins/bad id!/readings", {}, "bin_id"),
        ("/api/v1/sites/" + "x" * 65, {}, "site_id"),
        ("/api/v1/sites", {"limit": 0}, "limit"),
        ("/api/v1/sites", {"limit": 501}, "limit"),
        ("/api/v1/sites", {"offset": -1}, "offset"),
        ("/api/v1/sites", {"offset": 10**30}, "offset"),
        ("/api/v1/sites", {"site_type": "castle"}, "site_type"),
        ("/api/v1/sites", {"community_id": "a b"}, "community_id"),
    ],
)
def test_bad_parameters_are_422_naming_the_parameter(
    client: TestClient, path: str, params: dict[str, Any], names: str
) -> None:
    response = client.get(path, params=params)

    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"][-1] == names
    assert error["msg"] and not error["msg"].startswith("Value error")


@pytest.mark.parametrize(
    ("start", "message"),
    [
        ("2026-11-27T08:00:00", "time has no UTC offset: add Z or one like +08:00"),
        ("2026-11-27T08:00:00 08:00", "URL-encode it as %2B"),
    ],
)
def test_a_time_without_offset_is_422_saying_so(
    client: TestClient, start: str, message: str
) -> None:
    response = client.get("/api/v1/bins/a-kitchen/readings", params={"start": start})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "start"] and message in error["msg"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": iso(BASE_MS), "end": iso(BASE_MS)}, "start must be before end"),
        (
            {"start": "2026-11-27T08:00:00+08:00", "end": "2026-11-27T00:00:00Z"},
            "start must be before end",
        ),
        ({"start": (NOW - timedelta(days=8)).isoformat()}, "pass every"),
        (
            {"start": (NOW - timedelta(days=7, seconds=1)).isoformat(), "end": NOW.isoformat()},
            "raw readings cover at most 7 days",
        ),
        (
            {"start": (NOW - timedelta(days=7, minutes=2)).isoformat(), "every": "1m"},
            "the maximum is 10000",
        ),
    ],
)
def test_windows_that_cannot_be_served_are_422_saying_why(
    client: TestClient, params: dict[str, str], message: str
) -> None:
    response = client.get("/api/v1/bins/a-kitchen/readings", params=params)

    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_windows_at_the_limits_are_served(client: TestClient) -> None:
    week = {"start": (NOW - timedelta(days=7)).isoformat(), "end": NOW.isoformat()}
    most_buckets = {
        "start": (NOW - timedelta(minutes=10_000)).isoformat(),
        "end": NOW.isoformat(),
        "every": "1m",
    }

    for params in (week, most_buckets):
        response = client.get("/api/v1/bins/a-kitchen/readings", params=params)
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/v1/sites/site-z", "no site with id 'site-z'"),
        ("/api/v1/sites/site-z/bins", "no site with id 'site-z'"),
        ("/api/v1/bins/nope", "no bin with id 'nope'"),
        ("/api/v1/bins/nope/readings", "no bin with id 'nope'"),
    ],
)
def test_unknown_ids_are_404(client: TestClient, path: str, message: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert response.json() == {"detail": message}


def test_a_database_influxdb_does_not_have_is_a_bad_gateway(
    settings: Settings, registry: dict[str, str]
) -> None:
    with TestClient(
        create_app(settings), headers=ADMIN_HEADERS
    ) as client:  # nobody created settings.influx.db
        response = client.get("/api/v1/bins/a-kitchen/readings")

    assert response.status_code == 502
    assert response.json()["detail"].startswith("InfluxDB rejected the query: database not found")


# --- health ---------------------------------------------------------------------------------


def test_health_reports_ingest_heartbeat(client: TestClient, influx: InfluxClient) -> None:
    before = client.get("/health")
    influx.write(
        [
            f"ingest,worker=w1 batch=10i,write_ms=3.5,oldest_wait_ms=120.0 {BASE_MS}",
            f"ingest,worker=w2 batch=4i,write_ms=2.0,oldest_wait_ms=80.5 {BASE_MS + 1_000}",
        ]
    )
    after = client.get("/health")

    assert before.status_code == 200
    assert before.json() == {
        "status": "ok",
        "influxdb": "ok",
        "database": "ok",
        "ingest": {"last_write": None, "lag_ms": None},
    }
    assert after.json()["ingest"] == {"last_write": iso(BASE_MS + 1_000), "lag_ms": 80.5}


def test_health_is_503_when_influxdb_is_unreachable(
    settings: Settings, registry: dict[str, str]
) -> None:
    down = settings.model_copy(update={"influx_url": f"http://127.0.0.1:{free_port()}"})

    with TestClient(create_app(down), headers=ADMIN_HEADERS) as client:
        health = client.get("/health")
        readings = client.get("/api/v1/bins/a-kitchen/readings")

    assert health.status_code == 503
    body = health.json()
    assert (body["status"], body["database"]) == ("degraded", "ok")
    assert body["influxdb"] == "unavailable"  # its address only in the log: /health is public
    assert readings.status_code == 503
    assert readings.json() == {"detail": "InfluxDB unavailable, try again"}
    assert readings.headers["retry-after"] == "2"


def test_health_is_503_when_the_registry_is_unreachable(
    settings: Settings, influx: InfluxClient, registry_backend: str
) -> None:
    nowhere = {
        "sqlite": "sqlite:////nonexistent/dir/registry.db",
        "postgresql": f"postgresql+psycopg://binwatch@127.0.0.1:{free_port()}/binwatch",
    }[registry_backend]
    gone = settings.model_copy(update={"database_url": nowhere})

    with TestClient(create_app(gone), headers=ADMIN_HEADERS) as client:
        response = client.get("/health")

    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["influxdb"]) == ("degraded", "ok")
    # The class only: the server's text names its address, database and user, in the log.
    assert body["database"] == "unavailable: OperationalError"


def test_an_unmigrated_registry_is_503_not_500(settings: Settings, influx: InfluxClient) -> None:
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as client:  # nobody ran migrate()
        response = client.get("/api/v1/sites")

    assert response.status_code == 503
    assert response.json() == {"detail": "registry database unavailable, try again"}
    assert response.headers["retry-after"] == "2"


def test_openapi_describes_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()

    assert spec["info"]["title"] == "binwatch"
    assert set(spec["paths"]) == {
        "/health",
        "/api/v1/sites",
        "/api/v1/sites/{site_id}",
        "/api/v1/sites/{site_id}/bins",
        "/api/v1/bins/{bin_id}",
        "/api/v1/bins/{bin_id}/readings",
        "/api/v1/collections",
        "/api/v1/collections/{request_id}",
        "/api/v1/collections/{request_id}/ack",
        "/api/v1/collections/{request_id}/complete",
        "/api/v1/collections/{request_id}/cancel",
        "/api/v1/compliance/sites/{site_id}",
        "/api/v1/compliance/areas/{area_id}",
        "/api/v1/compliance/operators/{operator_id}",
        "/api/v1/rankings",
        *("/api/v1/alerts", "/api/v1/alerts/{alert_id}", "/api/v1/alerts/{alert_id}/ack"),
        "/api/v1/operators/{operator_id}/routes",
        "/api/v1/operators/{operator_id}/routes/{vehicle_id}",
        "/api/v1/operators/{operator_id}/routes/{vehicle_id}/stops/{stop_id}/taps",
        "/api/v1/operators/{operator_id}/routes/{vehicle_id}/stops/{stop_id}/taps/{tap_id}/photo",
    }


def test_an_id_beyond_postgresqls_integer_is_422_not_500(client: TestClient) -> None:
    # The fuzzer found it on PostgreSQL: 2**31 in a path overflowed the integer id column.
    for kind in ("collections", "alerts"):
        beyond = client.get(f"/api/v1/{kind}/{MAX_ROW_ID + 1}")
        assert beyond.status_code == 422, beyond.text
        assert client.get(f"/api/v1/{kind}/{MAX_ROW_ID}").status_code == 404
