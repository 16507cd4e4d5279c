"""Reports never answer from a rollup tier that does not hold their window (real InfluxDB,
Mosquitto and ingest): readings stored before the rollups ran, asked for at once, give the raw
figures on every source; once backfilled, the tiers answer and the figures stay the same; and a
late reading for a recent hour shows at once, though no rollup has re-read that hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from compliance.rollups import SETTLED, backfill, catch_up
from compliance.schemas import ReportSpan
from core.coverage import late_spans, read_coverage
from core.influx import InfluxClient
from core.settings import Settings
from devices.contract import Reading, TopicKind, Topics
from devices.registry import BinTags
from ingest.service import Ingestor
from tests.conftest import count_points
from tests.helpers import ADMIN_HEADERS, wait_for
from tests.mqtt_helpers import publish_all

pytestmark = pytest.mark.servers

SITE = "sz-peoples-government"
HOUR = timedelta(hours=1)
FIGURES = ("deposits", "contaminated", "checked_deposits", "reported_bin_hours", "bins_offline")


def _publish(settings: Settings, readings: list[tuple[str, Reading]]) -> None:
    topics = Topics(settings.topic_prefix)
    before = count_points(settings)
    publish_all(
        settings,
        [
            (topics.bin(b, TopicKind.telemetry), r.model_dump_json(exclude_none=True).encode())
            for b, r in readings
        ],
    )
    wait_for(lambda: count_points(settings) == before + len(readings), timeout=30, what="stored")


def _figures(api: TestClient, **params: str) -> tuple[Any, ...]:
    response = api.get(f"/api/v1/compliance/sites/{SITE}", params=params)
    assert response.status_code == 200, response.text
    metrics = response.json()["metrics"]
    return tuple(metrics[name] for name in FIGURES)


def test_reports_read_raw_where_the_rollups_do_not_reach(
    settings: Settings, pilot_bins: dict[str, BinTags], ingest: Ingestor
) -> None:
    bins = sorted(b for b, tags in pilot_bins.items() if tags.site == SITE)
    now = datetime.now(UTC)
    end = now.replace(minute=0, second=0, microsecond=0)  # the default report's end
    window = {"start": (end - 7 * 24 * HOUR).isoformat(), "end": end.isoformat()}
    # Two days of history and the last hours, written now: before any rollup ran over them.
    readings = [
        (bin_id, Reading(ts=end - hours * HOUR + 10 * timedelta(minutes=1) * k, fill_pct=20,
                         deposits=3 + k, contaminated=k % 2, battery_pct=80))
        for bin_id in bins
        for hours in (2, 3, 20, 30, 50)
        for k in range(3)
    ]  # fmt: skip
    _publish(settings, readings)
    deposits = sum(r.deposits or 0 for _, r in readings)
    # Each report below must read what is stored at that moment: no report cache.
    fresh = settings.model_copy(update={"api_report_cache_s": 0})
    with TestClient(create_app(fresh), headers=ADMIN_HEADERS) as api:
        raw = _figures(api, source="raw", **window)
        assert raw[0] == deposits
        # Asked at once: every source answers what the raw readings say (the default, too).
        assert _figures(api) == raw
        for source in ("hourly", "daily", "auto"):
            assert _figures(api, source=source, **window) == raw, source
        influx = InfluxClient(settings)
        try:
            backfill(influx, end - 7 * 24 * HOUR, end, timezone=settings.timezone)
            coverage = read_coverage(influx, end - 7 * 24 * HOUR, end)
        finally:
            influx.close()
        # Backfilled: settled hours now come from the rollup tiers, with the same figures.
        span = ReportSpan.check(start=None, end=None, every=None, source="auto", now=now)
        planned = span.window(now=now, timezone=settings.timezone, coverage=lambda _s, _e: coverage)
        assert {"site_hour"} <= {s.tier for s in planned.segments}
        for source in ("hourly", "daily", "auto"):
            assert _figures(api, source=source, **window) == raw, source
        # A late reading for an hour the rollups have already read: shown at once.
        _publish(settings, [(bins[0], Reading(ts=end - 2 * HOUR + 90 * timedelta(seconds=1),
                                              fill_pct=20, deposits=7))])  # fmt: skip
        late = _figures(api, source="raw", **window)
        assert late[0] == deposits + 7
        influx = InfluxClient(settings)
        try:
            marked = read_coverage(influx, end - 7 * 24 * HOUR, end).late
        finally:
            influx.close()
        assert end - 2 * HOUR in marked  # ingest marked the hour late
        for source in ("hourly", "daily", "auto"):
            assert _figures(api, source=source, **window) == late, source


def test_catch_up_rolls_up_the_hours_before_the_newest_reading(
    settings: Settings, pilot_bins: dict[str, BinTags], ingest: Ingestor
) -> None:
    """What the demo runs at start: the late readings of a run whose InfluxDB stopped before a
    continuous query re-read them reach every tier, and count as covered."""
    influx = InfluxClient(settings)
    try:
        assert catch_up(influx, timezone=settings.timezone) is None  # nothing stored yet
        bin_id = sorted(b for b, tags in pilot_bins.items() if tags.site == SITE)[0]
        newest = datetime.now(UTC).replace(microsecond=0) - 3 * HOUR
        _publish(
            settings,
            [(bin_id, Reading(ts=newest - k * HOUR, fill_pct=20, deposits=2)) for k in range(10)],
        )
        done = catch_up(influx, timezone=settings.timezone)
        assert done is not None
        # 8 settled hours before the newest reading and its own: 9 bin-hours, 9 readings.
        assert done.hourly == 9
        start = (newest - SETTLED).replace(minute=0, second=0, microsecond=0)
        # (The tenth, more than 6 hours late, ingest rolled up itself when it stored it.)
        rolled = influx.query(
            "SELECT sum(deposits) FROM hourly.telemetry WHERE bin = $bin AND time >= $start",
            params={"bin": bin_id, "start": int(start.timestamp()) * 1_000_000_000},
        )
        assert rolled[0].values[0][1] == 2 * 9
        assert any(
            c.start <= start and (c.end is None or c.end > newest)
            for c in read_coverage(influx, start, newest).periods
        )
    finally:
        influx.close()


def test_a_buffer_older_than_the_queries_window_is_rolled_up_at_once_not_read_raw(
    settings: Settings, pilot_bins: dict[str, BinTags], ingest: Ingestor
) -> None:
    """One bin's offline buffer with a reading in each of the last 30 days' hours (one message
    of 720) marked every hour of the month late: no continuous query re-reads an hour more
    than 6 hours old, so every report over them read the whole city's raw readings until
    someone ran a backfill (the city's month report went from 1 s to a 10 s time-out, 503).
    Now ingest rolls that bin's hours and its site's up again at once: nothing is marked, the
    tiers answer for those hours, and with the buffer's deposits."""
    bin_id = sorted(b for b, tags in pilot_bins.items() if tags.site == SITE)[0]
    now = datetime.now(UTC)
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - 3 * 24 * HOUR
    influx = InfluxClient(settings)
    try:
        backfill(influx, start, end, timezone=settings.timezone)  # every tier covers the window
        buffered = [
            Reading(ts=end - hours * HOUR + 5 * timedelta(minutes=1), fill_pct=30, deposits=2)
            for hours in range(60, 8, -1)  # oldest first, all beyond the queries' 6 hours
        ]
        topic = Topics(settings.topic_prefix).bin(bin_id, TopicKind.telemetry)
        body = "[" + ",".join(r.model_dump_json(exclude_none=True) for r in buffered) + "]"
        publish_all(settings, [(topic, body.encode())])
        wait_for(lambda: count_points(settings) == len(buffered), timeout=30, what="stored")
        wait_for(lambda: ingest.oldest_unacked_s() is None, timeout=30, what="acknowledged")
        coverage = read_coverage(influx, start, end)
        assert not coverage.late, sorted(coverage.late)  # nothing left for reports to read raw
        for measurement, key, value in (
            ("hourly.telemetry", "bin", bin_id),
            ("hourly.site_hour", "site", SITE),
        ):
            summed = influx.query(
                f"SELECT sum(deposits) FROM {measurement} WHERE {key} = $id",
                params={"id": value},
            )
            assert summed[0].values[0][1] == 2 * len(buffered), measurement
    finally:
        influx.close()
    span = ReportSpan.check(start=start, end=end, every=None, source="daily", now=now)
    planned = span.window(now=now, timezone=settings.timezone, coverage=lambda _s, _e: coverage)
    assert "raw" not in {s.tier for s in planned.segments}, planned.segments
    window = {"start": start.isoformat(), "end": end.isoformat()}
    fresh = settings.model_copy(update={"api_report_cache_s": 0})
    with TestClient(create_app(fresh), headers=ADMIN_HEADERS) as api:
        raw = _figures(api, source="raw", **window)
        assert raw[0] == 2 * len(buffered)
        for source in ("hourly", "daily"):
            assert _figures(api, source=source, **window) == raw, source


def test_late_spans_name_each_bins_hours_before_the_queries_window_up_to_a_few_bins() -> None:
    hour = 3_600_000
    stamps = [("a", 5 * hour + 10), ("b", 2 * hour), ("a", 3 * hour + 59), ("a", 9 * hour)]
    assert late_spans(stamps, before_ms=8 * hour, most=2) == {"a": (3 * hour, 5 * hour),
                                                              "b": (2 * hour, 2 * hour)}  # fmt: skip
    # More bins than a batch rolls up at once: a replay of history, left to a backfill.
    assert late_spans([*stamps, ("c", hour)], before_ms=8 * hour, most=2) is None
