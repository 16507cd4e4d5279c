"""Which rollup tier answers which hours of a report window (compliance.rollups.plan): no servers,
the segments worked out by hand."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from compliance.rollups import SETTLED, Segment, plan
from core.coverage import Coverage, Covered, late_hours
from core.telemetry import daily_measurement, standard_offset

SHANGHAI = "Asia/Shanghai"  # UTC+8 all year: local midnight is 16:00Z
BERLIN = "Europe/Berlin"  # UTC+1, UTC+2 from 2026-03-29 01:00Z
LATER = datetime(2027, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
# The rollups cover all time (e.g. backfilled from the start, continuous queries since).
ALL = Coverage((Covered(datetime(2000, 1, 1, tzinfo=UTC), None),))


def z(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_raw_and_hourly_answer_the_whole_window() -> None:
    start, end = z("2026-03-01T12:00"), z("2026-03-05T12:00")
    for tier in ("raw", "hourly"):
        assert plan(start, end, tier=tier, timezone=SHANGHAI, now=LATER, coverage=ALL) == (
            Segment(start, end, tier),
        )


def test_whole_local_days_come_from_site_days_and_the_edges_from_site_hours() -> None:
    start, end = z("2026-03-01T12:00"), z("2026-03-05T12:00")
    assert plan(start, end, tier="daily", timezone=SHANGHAI, now=LATER, coverage=ALL) == (
        Segment(start, z("2026-03-01T16:00"), "site_hour"),
        Segment(z("2026-03-01T16:00"), z("2026-03-04T16:00"), "daily"),
        Segment(z("2026-03-04T16:00"), end, "site_hour"),
    )


def test_the_last_hours_come_from_the_bin_hours() -> None:
    """Up to the last whole hour at 10:20Z: what ended 8 hours ago or more is settled."""
    start, end, now = z("2026-03-01T16:00"), z("2026-03-05T10:00"), z("2026-03-05T10:20")
    assert plan(start, end, tier="daily", timezone=SHANGHAI, now=now, coverage=ALL) == (
        Segment(start, z("2026-03-04T16:00"), "daily"),
        Segment(z("2026-03-04T16:00"), z("2026-03-05T02:00"), "site_hour"),
        Segment(z("2026-03-05T02:00"), end, "hourly"),
    )


def test_a_day_is_read_from_the_daily_tier_only_once_settled() -> None:
    start, end = z("2026-03-01T16:00"), z("2026-03-04T16:00")  # three whole local days
    now = end + SETTLED - HOUR  # the last one ended 7 hours ago
    assert plan(start, end, tier="daily", timezone=SHANGHAI, now=now, coverage=ALL) == (
        Segment(start, z("2026-03-03T16:00"), "daily"),
        Segment(z("2026-03-03T16:00"), z("2026-03-04T15:00"), "site_hour"),
        Segment(z("2026-03-04T15:00"), end, "hourly"),
    )
    assert plan(start, end, tier="daily", timezone=SHANGHAI, now=end + SETTLED, coverage=ALL) == (
        Segment(start, end, "daily"),
    )


def test_a_window_without_a_whole_day_is_all_site_hours() -> None:
    start, end = z("2026-03-01T17:00"), z("2026-03-02T17:00")
    assert plan(start, end, tier="daily", timezone=SHANGHAI, now=LATER, coverage=ALL) == (
        Segment(start, end, "site_hour"),
    )


def test_summer_days_of_a_daylight_saving_zone_come_from_site_hours() -> None:
    """The daily tier cuts Berlin's days at UTC+1: 28 March (23:00Z to 23:00Z) is one of them;
    29 March has 23 hours and the days after start at 22:00Z, so none of those is."""
    start, end = z("2026-03-27T23:00"), z("2026-04-01T22:00")
    assert standard_offset(BERLIN) == HOUR
    assert plan(start, end, tier="daily", timezone=BERLIN, now=LATER, coverage=ALL) == (
        Segment(start, z("2026-03-28T23:00"), "daily"),
        Segment(z("2026-03-28T23:00"), end, "site_hour"),
    )


def test_segments_tile_the_window_in_order() -> None:
    rng = random.Random(7)
    base = z("2026-01-01T00:00")
    for zone in (SHANGHAI, BERLIN, "America/St_Johns", "UTC"):
        for _ in range(200):
            start = base + rng.randrange(24 * 365) * HOUR
            end = start + rng.randrange(1, 24 * 40) * HOUR
            now = end + rng.randrange(-48, 48) * HOUR
            segments = plan(start, end, tier="daily", timezone=zone, now=now, coverage=ALL)
            assert segments[0].start == start and segments[-1].end == end
            for before, after in pairwise(segments):
                assert before.end == after.start and before.tier != after.tier
            assert all(s.start < s.end for s in segments)
            for s in segments:
                if s.tier != "hourly":  # the site tiers answer only settled hours
                    assert s.end <= now - SETTLED


def test_hours_the_rollups_do_not_cover_come_from_raw_readings() -> None:
    """Continuous queries created at 09:30Z on 3 March (covering from 10:00Z), and a backfill
    of 1 March 10:00Z .. 2 March 04:00Z: the rest is read raw, and a day is read from the daily
    tier only when one covered period holds it whole."""
    start, end = z("2026-02-28T16:00"), z("2026-03-06T16:00")
    coverage = Coverage(
        (
            Covered(z("2026-03-03T10:00"), None),
            Covered(z("2026-03-01T10:00"), z("2026-03-02T04:00"), z("2026-03-05T00:00")),
        )
    )
    assert plan(start, end, tier="daily", timezone=SHANGHAI, now=LATER, coverage=coverage) == (
        Segment(start, z("2026-03-01T10:00"), "raw"),
        Segment(z("2026-03-01T10:00"), z("2026-03-02T04:00"), "site_hour"),
        Segment(z("2026-03-02T04:00"), z("2026-03-03T10:00"), "raw"),
        Segment(z("2026-03-03T10:00"), z("2026-03-03T16:00"), "site_hour"),
        Segment(z("2026-03-03T16:00"), end, "daily"),
    )
    assert plan(start, end, tier="hourly", timezone=SHANGHAI, now=LATER, coverage=coverage) == (
        Segment(start, z("2026-03-01T10:00"), "raw"),
        Segment(z("2026-03-01T10:00"), z("2026-03-02T04:00"), "hourly"),
        Segment(z("2026-03-02T04:00"), z("2026-03-03T10:00"), "raw"),
        Segment(z("2026-03-03T10:00"), end, "hourly"),
    )
    # Nothing recorded (rollups never created or backfilled): all raw, whatever was asked.
    for tier in ("hourly", "daily"):
        assert plan(start, end, tier=tier, timezone=SHANGHAI, now=LATER, coverage=Coverage()) == (
            Segment(start, end, "raw"),
        )


def test_an_hour_with_a_late_reading_is_raw_until_a_rollup_has_re_read_it() -> None:
    """A reading for 03:00Z stored at 05:30Z: the continuous queries re-read that hour at 06:00Z
    and the site tiers re-sum it by 08:00Z; until then (and a margin) it is read raw. Stored at
    10:30Z, more than 6 hours after, no continuous query re-reads it: raw until a backfill."""
    start, end = z("2026-03-05T00:00"), z("2026-03-05T06:00")
    hour = z("2026-03-05T03:00")
    late = Coverage(ALL.periods, {hour: z("2026-03-05T05:30")})
    expected = (
        Segment(start, hour, "hourly"),
        Segment(hour, hour + HOUR, "raw"),
        Segment(hour + HOUR, end, "hourly"),
    )
    for now in (z("2026-03-05T06:10"), z("2026-03-05T08:04")):
        assert plan(start, end, tier="hourly", timezone=SHANGHAI, now=now, coverage=late) == (
            expected
        )
    after = z("2026-03-05T08:06")
    assert plan(start, end, tier="hourly", timezone=SHANGHAI, now=after, coverage=late) == (
        Segment(start, end, "hourly"),
    )
    too_late = Coverage(ALL.periods, {hour: z("2026-03-05T10:30")})
    assert plan(start, end, tier="hourly", timezone=SHANGHAI, now=LATER, coverage=too_late) == (
        expected
    )
    backfilled = Coverage((*ALL.periods, Covered(start, end, z("2026-03-05T11:00"))), too_late.late)
    assert plan(start, end, tier="hourly", timezone=SHANGHAI, now=LATER, coverage=backfilled) == (
        Segment(start, end, "hourly"),
    )


def test_late_hours_are_those_that_ended_more_than_a_minute_before_the_write() -> None:
    hour_ms = 3_600_000
    written = 10 * hour_ms + 90_000  # 10:01:30
    ts = [10 * hour_ms + 5, 10 * hour_ms - 1, 9 * hour_ms, 3 * hour_ms + 7, 3 * hour_ms + 8]
    assert late_hours(ts, written_ms=written) == {9 * hour_ms, 3 * hour_ms}
    # 30 s after the hour: the run at its end may still have been reading; not late.
    assert late_hours([10 * hour_ms - 1], written_ms=10 * hour_ms + 30_000) == set()


def test_the_daily_measurement_is_named_after_the_standard_offset() -> None:
    assert daily_measurement(SHANGHAI) == "site_day_utc+0800"
    assert daily_measurement(BERLIN) == "site_day_utc+0100"
    assert daily_measurement("America/St_Johns") == "site_day_utc-0330"
