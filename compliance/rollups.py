"""Which rollup tier answers which hours of a report, and the backfill of the tiers. The tiers
themselves (retention policies, continuous queries) are part of the telemetry schema,
core/telemetry.py, which ingest creates at start.

InfluxDB 1.6's cost grows with the series a query opens, not only with the points it reads
(bin-level sums over a district cost 60–120 ms for any range, site-level ones ~10 ms;
docs/performance.md), so a report reads whole days from the daily tier, other hours from the
site-hour tier, and only the last hours, which the continuous queries may not have re-summed yet,
from the bin-hours. Days are cut at the zone's standard offset (a continuous query has no time
zone); `plan` decides which tier answers which hours, and every path gives the same figures
(docs/metrics.md). The API's raw path (compliance/queries.py) evaluates `ROLLUP_FIELDS` as a
subquery, so both paths compute every figure the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

from core.influx import InfluxClient
from core.telemetry import (
    DAY,
    daily_select_into,
    select_into,
    site_hour_select_into,
    standard_offset,
)

BACKFILL_CHUNK: Final = timedelta(days=7)  # one SELECT … INTO per week keeps each write small
# A bin-hour stops changing 6 h after it ends, the site-hour summing it at most an hour later:
# hours that ended longer ago than this are read from site-hours, days from site-days once their
# last hour is; younger hours come from the bin-hours (a margin for the queries' run time).
SETTLED: Final = timedelta(hours=8)


# --- which tier answers which part of a window -------------------------------------------------

Tier = Literal["raw", "hourly", "site_hour", "daily"]
"""`hourly` is the bin-hours; `raw` rolls raw readings up to bin-hours on the fly."""


@dataclass(frozen=True, slots=True)
class Segment:
    start: datetime
    end: datetime
    tier: Tier


def plan(
    start: datetime, end: datetime, *, tier: Tier, timezone: str, now: datetime
) -> tuple[Segment, ...]:
    """The parts of [start, end) (whole hours) and the tier that answers each. `raw` and
    `hourly` answer all of it. `daily` reads from the daily tier the local days that lie wholly
    inside, ended SETTLED before `now` and are cut at the standard offset (in a zone with
    daylight saving the summer's days are not), from site-hours the other hours that ended
    SETTLED before `now`, and from bin-hours the rest."""
    if tier != "daily":
        return (Segment(start, end, tier),)
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
    return tuple(segments)


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
    return Backfilled(hourly, site_hour, daily)


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
