"""Which rollup tier answers which hours of a report, and the backfill of the tiers. The tiers
themselves (retention policies, continuous queries) are part of the telemetry schema,
core/telemetry.py, which ingest creates at start.

InfluxDB 1.6's cost grows with the series a query opens, not only with the points it reads
(bin-level sums over a district cost 60–120 ms for any range, site-level ones ~10 ms;
docs/performance.md), so a report reads whole days from the daily tier, other hours from the
site-hour tier, and only the last hours, which the continuous queries may not have re-summed yet,
from the bin-hours. Days are cut at the zone's standard offset (a continuous query has no time
zone); `plan` decides which tier answers which hours (only of what the tiers hold:
core/coverage.py), and every path gives the same figures
(docs/metrics.md). The API's raw path (compliance/queries.py) runs `ROLLUP_FIELDS` over raw
readings and adds up the bin-hours it answers, so both paths compute every figure the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

from core.coverage import HOUR, NOTHING_YET, Coverage, record_coverage
from core.influx import InfluxClient, SinkRejected
from core.telemetry import (
    DAY,
    MEASUREMENT,
    RAW_RP,
    daily_select_into,
    select_into,
    site_hour_select_into,
    standard_offset,
)
from core.times import from_epoch_ms

BACKFILL_CHUNK: Final = timedelta(days=7)  # one SELECT … INTO per week keeps each write small
# A bin-hour stops changing 6 h after it ends, the site-hour summing it at most an hour later:
# hours that ended longer ago than this are read from site-hours, days from site-days once their
# last hour is; younger hours come from the bin-hours (a margin for the queries' run time).
SETTLED: Final = timedelta(hours=8)


def _usable(
    start: datetime, end: datetime, coverage: Coverage, now: datetime
) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end) that lie in one covered period and hold no stale hour, in
    order (joined where periods overlap or touch)."""
    joined: list[tuple[datetime, datetime]] = []
    for period in sorted(coverage.periods, key=lambda c: c.start):
        begin, finish = max(start, period.start), min(end, period.end or end)
        if finish <= begin:
            continue
        if joined and begin <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], finish))
        else:
            joined.append((begin, finish))
    stale = sorted(h for h in coverage.late if start <= h < end and coverage.stale(h, now))
    parts: list[tuple[datetime, datetime]] = []
    for begin, finish in joined:
        for hour in stale:
            if begin <= hour < finish:
                if begin < hour:
                    parts.append((begin, hour))
                begin = hour + HOUR
        if begin < finish:
            parts.append((begin, finish))
    return parts


# --- which tier answers which part of a window -------------------------------------------------

Tier = Literal["raw", "hourly", "site_hour", "daily"]
"""`hourly` is the bin-hours; `raw` rolls raw readings up to bin-hours on the fly."""


@dataclass(frozen=True, slots=True)
class Segment:
    start: datetime
    end: datetime
    tier: Tier


def plan(
    start: datetime,
    end: datetime,
    *,
    tier: Tier,
    timezone: str,
    now: datetime,
    coverage: Coverage,
) -> tuple[Segment, ...]:
    """The parts of [start, end) (whole hours) and the tier that answers each. `raw` answers
    all of it; otherwise the hours the rollups do not hold (`coverage`) come from raw readings,
    and of the rest `hourly` reads the bin-hours, and `daily` reads from the daily tier the
    local days that lie wholly inside one usable part, ended SETTLED before `now` and are cut
    at the standard offset (in a zone with daylight saving the summer's days are not), from
    site-hours the other hours that ended SETTLED before `now`, and from bin-hours the rest."""
    if tier == "raw":
        return (Segment(start, end, "raw"),)
    segments: list[Segment] = []

    def add(segment: Segment) -> None:
        if segments and segments[-1].tier == segment.tier:
            segments[-1] = Segment(segments[-1].start, segment.end, segment.tier)
        else:
            segments.append(segment)

    done = start
    for begin, finish in _usable(start, end, coverage, now):
        if begin > done:
            add(Segment(done, begin, "raw"))
        for segment in _plan_covered(begin, finish, tier=tier, timezone=timezone, now=now):
            add(segment)
        done = finish
    if done < end:
        add(Segment(done, end, "raw"))
    return tuple(segments)


def _plan_covered(
    start: datetime, end: datetime, *, tier: Tier, timezone: str, now: datetime
) -> list[Segment]:
    """[start, end), held by the rollups: see `plan`."""
    if tier != "daily":
        return [Segment(start, end, tier)]
    zone, offset = ZoneInfo(timezone), standard_offset(timezone)
    settled = (now - SETTLED).replace(minute=0, second=0, microsecond=0)
    segments: list[Segment] = []
    covered = start  # everything before this is planned

    def add(until: datetime, what: Tier) -> None:
        nonlocal covered
        until = min(until, end)
        if until <= covered:
            return
        if segments and segments[-1].tier == what:
            segments[-1] = Segment(segments[-1].start, until, what)
        else:
            segments.append(Segment(covered, until, what))
        covered = until

    def hours_until(until: datetime) -> None:
        add(min(until, max(settled, covered)), "site_hour")
        add(until, "hourly")

    day = start.astimezone(zone).date()
    while True:
        begin = local_midnight(day, zone)
        finish = local_midnight(day + DAY, zone)
        if begin >= end:
            break
        whole = start <= begin and finish <= end and finish <= settled
        cut_here = (begin + offset).time() == datetime.min.time() and finish - begin == DAY
        if whole and cut_here:
            hours_until(begin)
            add(finish, "daily")
        day += DAY
    hours_until(end)
    return segments


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC moment a local calendar day begins."""
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Backfilled:
    hourly: int  # bin-hour points written
    site_hour: int
    daily: int  # site-day points


def backfill(
    influx: InfluxClient,
    start: datetime,
    end: datetime,
    *,
    timezone: str,
    on_chunk: Callable[[Tier, datetime, int], None] | None = None,
) -> Backfilled:
    """Roll up raw readings in [start, end), widened to whole hours, a week at a time, sum those
    hours per site, then re-sum the site-days they touch (widened to whole days: hours of those
    days outside the range are taken from the site-hours as they stand). Rewriting gives the
    same points, so overlaps are harmless. `on_chunk(tier, chunk_end, written)` reports progress."""
    first, last = _floor_hour(start), _ceil_hour(end)
    began = datetime.now(UTC)  # what was stored before this moment is in the rollups after it
    database = influx.database
    hourly = _run_chunks(influx, select_into(database, _RANGE), first, last, "hourly", on_chunk)
    site_hour = _run_chunks(
        influx, site_hour_select_into(database, _RANGE), first, last, "site_hour", on_chunk
    )
    offset = standard_offset(timezone)
    daily = _run_chunks(
        influx,
        daily_select_into(database, timezone, _RANGE),
        _floor_day(first, offset),
        _floor_day(last - timedelta.resolution, offset) + DAY,
        "daily",
        on_chunk,
    )
    record_coverage(influx, first, last, began)
    return Backfilled(hourly, site_hour, daily)


def catch_up(influx: InfluxClient, *, timezone: str) -> Backfilled | None:
    """Roll up again the SETTLED hours up to the newest stored reading (None: nothing stored).
    A continuous query re-reads an hour only while InfluxDB runs: readings stored late shortly
    before InfluxDB stopped (the demo stops it with everything else, after a replay) are in no
    rollup until this runs, at the next start, before anything new is written."""
    try:
        series = influx.query(f"SELECT last(fill_pct) FROM {RAW_RP}.{MEASUREMENT}")
    except SinkRejected as exc:
        if any(answer in exc.message for answer in NOTHING_YET):
            return None
        raise
    if not series or not series[0].values:
        return None
    newest = from_epoch_ms(series[0].values[0][0])
    return backfill(influx, newest - SETTLED, newest, timezone=timezone)


_RANGE: Final = "WHERE time >= $start AND time < $end "


def _run_chunks(
    influx: InfluxClient,
    statement: str,
    start: datetime,
    end: datetime,
    tier: Tier,
    on_chunk: Callable[[Tier, datetime, int], None] | None,
) -> int:
    written = 0
    chunk_start = start
    while chunk_start < end:
        chunk_end = min(chunk_start + BACKFILL_CHUNK, end)
        result = influx.query(statement, params={"start": _ns(chunk_start), "end": _ns(chunk_end)})
        chunk_written = sum(int(row["written"]) for s in result for row in s.rows())
        written += chunk_written
        if on_chunk is not None:
            on_chunk(tier, chunk_end, chunk_written)
        chunk_start = chunk_end
    return written


def _floor_day(moment: datetime, offset: timedelta) -> datetime:
    """The start of the daily tier's day (cut at `offset`) that holds `moment`."""
    shifted = moment.astimezone(UTC) + offset
    return shifted.replace(hour=0, minute=0, second=0, microsecond=0) - offset


def _floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: datetime) -> datetime:
    floored = _floor_hour(moment)
    return floored if floored == moment else floored + timedelta(hours=1)


def _ns(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
