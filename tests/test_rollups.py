"""The hourly rollups on a real InfluxDB: created idempotently, replaced when their definition
changes, and backfilled with exactly the per-bin-hour figures worked out here by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from binwatch.influx import InfluxClient, quote_ident
from binwatch.rollups import CQ_NAME, RESAMPLE, ROLLUP_FIELDS, backfill, ensure_rollups
from binwatch.settings import Settings

pytestmark = pytest.mark.servers

HOUR = timedelta(hours=1)
# Ten days ago, on an hour: inside raw retention, and a backfill of it crosses a chunk (a week).
BASE = (datetime.now(UTC) - timedelta(days=10)).replace(minute=0, second=0, microsecond=0)
TAGS = "bin=b1,community=c,district=d,operator=o,site=s1,site_type=agency,stream=kitchen,street=st"


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.fixture
def influx(settings: Settings) -> Iterator[InfluxClient]:
    client = InfluxClient(settings)
    client.ensure_database(settings.raw_retention)
    try:
        yield client
    finally:
        client.close()


def continuous_queries(settings: Settings) -> dict[str, str]:
    """This database's continuous queries, read over plain HTTP: SHOW lists every database, and
    those without any come back as series without values."""
    response = httpx.post(f"{settings.influx_url}/query", data={"q": "SHOW CONTINUOUS QUERIES"})
    series = response.json()["results"][0]["series"]
    return {
        name: query
        for item in series
        if item["name"] == settings.influx_db
        for name, query in item.get("values", [])
    }


def test_ensure_rollups_is_idempotent_and_replaces_a_changed_definition(
    influx: InfluxClient, settings: Settings
) -> None:
    ensure_rollups(influx)
    ensure_rollups(influx)
    (query,) = continuous_queries(settings).values()
    # InfluxDB stores the statement re-rendered (identifiers unquoted), so compare its parts.
    assert (
        f"{CQ_NAME} ON {settings.influx_db} {RESAMPLE} BEGIN SELECT {ROLLUP_FIELDS} INTO" in query
    )
    policies = {
        row["name"]: row for s in influx.query("SHOW RETENTION POLICIES") for row in s.rows()
    }
    assert policies["hourly"]["duration"] == "0s"  # INF
    assert policies["raw"]["default"] is True  # the rollup policy does not take over

    db = quote_ident(settings.influx_db)
    influx.query(f"DROP CONTINUOUS QUERY {CQ_NAME} ON {db}", database=False)
    influx.query(
        f"CREATE CONTINUOUS QUERY {CQ_NAME} ON {db} BEGIN SELECT max(fill_pct) AS fill_pct "
        f"INTO {db}.hourly.telemetry FROM {db}.raw.telemetry GROUP BY time(1h), * END",
        database=False,
    )
    ensure_rollups(influx)
    assert continuous_queries(settings) == {CQ_NAME: query}


def test_backfill_writes_one_point_per_bin_hour_with_every_tag(influx: InfluxClient) -> None:
    ensure_rollups(influx)
    lines = [
        # Hour 0: three readings, one at 100 %, two at ≥ 90 %; 5 deposits of which 1 checked
        # wrong, plus 3 unchecked deposits (no contamination count).
        f"telemetry,{TAGS} fill_pct=80.0,deposits=2i,contaminated=1i,checked_deposits=2i,"
        f"battery_pct=50.0,temp_c=20.0,overflow=0i,over90=0i {ms(BASE)}",
        f"telemetry,{TAGS} fill_pct=95.0,deposits=3i,contaminated=0i,checked_deposits=3i,"
        f"battery_pct=49.0,temp_c=25.0,overflow=0i,over90=1i {ms(BASE + 20 * HOUR / 60)}",
        f"telemetry,{TAGS} fill_pct=100.0,deposits=3i,overflow=1i,over90=1i "
        f"{ms(BASE + 40 * HOUR / 60)}",
        # Eight days later (another backfill chunk): one reading.
        f"telemetry,{TAGS} fill_pct=10.0,overflow=0i,over90=0i {ms(BASE + 8 * 24 * HOUR)}",
    ]
    influx.write(lines)
    chunks: list[int] = []
    written = backfill(
        influx,
        BASE + timedelta(minutes=5),  # widened to the whole hour
        BASE + 8 * 24 * HOUR + HOUR,
        on_chunk=lambda _end, n: chunks.append(n),
    )
    assert written == 2 and chunks == [1, 1]
    (series,) = influx.query("SELECT * FROM hourly.telemetry GROUP BY *")
    assert series.tags == dict(pair.split("=") for pair in TAGS.split(","))
    first, second = series.rows()
    expected: dict[str, Any] = {
        "time": ms(BASE),
        "deposits": 8,
        "contaminated": 1,
        "checked_deposits": 5,
        "readings": 3,
        "overflow": pytest.approx(1 / 3),
        "over90": pytest.approx(2 / 3),
        "fill_pct": 100,
        "battery_pct": 49,
        "temp_c": 25,
    }
    assert first == expected
    assert second["time"] == ms(BASE + 8 * 24 * HOUR)
    assert (second["readings"], second["overflow"], second["deposits"]) == (1, 0, None)
    # Rewriting the same hours gives the same points.
    assert backfill(influx, BASE, BASE + 9 * 24 * HOUR) == 2
    assert influx.query("SELECT count(readings) FROM hourly.telemetry")[0].values[0][1] == 2
