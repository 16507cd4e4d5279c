"""The rollups on a real InfluxDB: created idempotently, replaced when their definition changes,
and backfilled with exactly the per-bin-hour and per-site-day figures worked out here by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from compliance.rollups import Backfilled, backfill
from core.influx import InfluxClient, quote_ident
from core.settings import Settings
from core.telemetry import (
    CQ_NAME,
    DAILY_CQ,
    DAILY_FIELDS,
    RESAMPLE,
    ROLLUP_FIELDS,
    SITE_FIELDS,
    SITE_HOUR_CQ,
    daily_measurement,
    ensure_rollups,
)

pytestmark = [
    pytest.mark.servers,
    pytest.mark.registry_backends(
        "sqlite",
        reason="InfluxDB's continuous queries are under test; the registry only lists the fleet",
    ),
]

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


def stored_continuous_queries(settings: Settings) -> dict[str, str]:
    """This database's continuous queries, read over plain HTTP: SHOW lists every database, and
    those without any come back as series without values."""
    response = httpx.post(f"{settings.influx.url}/query", data={"q": "SHOW CONTINUOUS QUERIES"})
    series = response.json()["results"][0]["series"]
    return {
        name: query
        for item in series
        if item["name"] == settings.influx.db
        for name, query in item.get("values", [])
    }


def test_ensure_rollups_is_idempotent_and_replaces_a_changed_definition(
    influx: InfluxClient, settings: Settings
) -> None:
    ensure_rollups(influx, settings.timezone)
    ensure_rollups(influx, settings.timezone)
    stored = stored_continuous_queries(settings)
    assert set(stored) == {CQ_NAME, SITE_HOUR_CQ, DAILY_CQ}
    # InfluxDB stores the statement re-rendered (identifiers unquoted), so compare its parts.
    query = stored[CQ_NAME]
    assert (
        f"{CQ_NAME} ON {settings.influx.db} {RESAMPLE} BEGIN SELECT {ROLLUP_FIELDS} INTO" in query
    )
    # Asia/Shanghai: days cut at UTC+8, i.e. buckets starting at 16:00Z.
    assert f"SELECT {SITE_FIELDS} INTO" in stored[SITE_HOUR_CQ]
    assert f"SELECT {DAILY_FIELDS} INTO" in stored[DAILY_CQ]
    assert "site_day_utc+0800" in stored[DAILY_CQ] and "time(1d, 16h)" in stored[DAILY_CQ]
    policies = {
        row["name"]: row for s in influx.query("SHOW RETENTION POLICIES") for row in s.rows()
    }
    assert policies["hourly"]["duration"] == policies["daily"]["duration"] == "0s"  # INF
    assert policies["raw"]["default"] is True  # the rollup policy does not take over

    db = quote_ident(settings.influx.db)
    influx.query(f"DROP CONTINUOUS QUERY {CQ_NAME} ON {db}", database=False)
    influx.query(
        f"CREATE CONTINUOUS QUERY {CQ_NAME} ON {db} BEGIN SELECT max(fill_pct) AS fill_pct "
        f"INTO {db}.hourly.telemetry FROM {db}.raw.telemetry GROUP BY time(1h), * END",
        database=False,
    )
    ensure_rollups(influx, settings.timezone)
    assert stored_continuous_queries(settings) == stored


def test_backfill_writes_one_point_per_bin_hour_and_per_site_day(
    influx: InfluxClient, settings: Settings
) -> None:
    ensure_rollups(influx, settings.timezone)
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
    chunks: list[tuple[str, int]] = []
    written = backfill(
        influx,
        BASE + timedelta(minutes=5),  # widened to the whole hour
        BASE + 8 * 24 * HOUR + HOUR,
        timezone=settings.timezone,
        on_chunk=lambda tier, _end, n: chunks.append((tier, n)),
    )
    assert written == Backfilled(hourly=2, site_hour=2, daily=2)
    assert [n for tier, n in chunks if tier == "hourly"] == [1, 1]
    (series,) = influx.query("SELECT * FROM hourly.telemetry GROUP BY *")
    assert series.tags == dict(pair.split("=") for pair in TAGS.split(","))
    first, second = series.rows()
    deposits = {"deposits": 8, "contaminated": 1, "checked_deposits": 5}  # of the first hour
    expected: dict[str, Any] = {
        "time": ms(BASE),
        **deposits,
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
    # One point per site and hour, and per site and local day (cut at UTC+8, i.e. at 16:00Z),
    # with the site's tags and not the bin's or the stream's.
    site_tags = {
        key: value
        for key, value in (pair.split("=") for pair in TAGS.split(","))
        if key not in ("bin", "stream")
    }
    # The first hour's sums, the same in both site tiers: overflow shares become hours.
    site_sums = {
        **deposits,
        "overflow_hours": pytest.approx(1 / 3),
        "over90_hours": pytest.approx(2 / 3),
        "bin_hours": 1,
    }
    (site_hours,) = influx.query("SELECT * FROM hourly.site_hour GROUP BY *")
    assert site_hours.tags == site_tags
    assert site_hours.rows()[0] == {"time": ms(BASE), **site_sums}
    (daily,) = influx.query(
        f'SELECT * FROM daily."{daily_measurement(settings.timezone)}" GROUP BY *'
    )
    assert daily.tags == site_tags
    first_day, second_day = daily.rows()
    assert first_day == {"time": ms(local_day_start(BASE)), **site_sums}
    assert second_day["time"] == ms(local_day_start(BASE + 8 * 24 * HOUR))
    assert (second_day["bin_hours"], second_day["overflow_hours"]) == (1, 0)
    # Rewriting the same hours gives the same points.
    again = backfill(influx, BASE, BASE + 9 * 24 * HOUR, timezone=settings.timezone)
    assert again.hourly == 2
    assert influx.query("SELECT count(readings) FROM hourly.telemetry")[0].values[0][1] == 2


def local_day_start(moment: datetime) -> datetime:
    """The UTC start of the Asia/Shanghai day holding `moment` (UTC+8, no daylight saving)."""
    shifted = moment + 8 * HOUR
    return shifted.replace(hour=0) - 8 * HOUR
