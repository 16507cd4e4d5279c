"""What the rollup tiers hold: a tier answers for a period only once a rollup ran over it after
its readings were written. InfluxDB records what is known, next to the rollups themselves: the
periods covered (`rollup_coverage`: from the first hour after the continuous queries were created,
and every range a backfill rolled up, with when it ran), and the hours that got a reading late
(`rollup_late`, written by ingest: more than `LATE_GRACE` after the hour ended, e.g. an offline
buffer or the demo's replay, with when). compliance.rollups.plan reads from raw readings the hours
outside the covered periods and the late hours no rollup has re-read since, so a report never
answers from a tier that does not hold its window. Part of the storage schema (core), since
ingest writes the late marks and starts the coverage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from core.influx import InfluxClient, SinkRejected
from core.telemetry import (
    DAY,
    ROLLUP_RP,
    daily_select_into,
    select_into,
    site_hour_select_into,
    standard_offset,
)
from core.times import epoch_ms, epoch_ns, from_epoch_ms

COVERAGE_MEASUREMENT: Final = "rollup_coverage"  # in ROLLUP_RP, kept as long as the rollups
LATE_MEASUREMENT: Final = "rollup_late"
_OPEN: Final = 0  # `end_ms` of the coverage the continuous queries give: no end
# InfluxDB's answers before ingest or `ensure_rollups` created the database or the policy.
NOTHING_YET: Final = ("database not found", "retention policy not found")
# A reading stored this long after its hour ended is late: the continuous query's run at the end
# of the hour (InfluxDB starts it within a second) may have missed it. Shorter would mark the last
# readings of every hour, which ingest stores a few milliseconds after the hour ends, and make
# reports read the last hour raw; those few readings reach the bin-hours at the next hour's run.
LATE_GRACE: Final = timedelta(minutes=1)
# The first run after a late write that re-reads its hour (at the next hour's end, if the hour
# is within the last RESAMPLE … FOR 6h) updates the bin-hours; site-hours and site-days re-sum
# the tier below at the following runs: two more hours and a margin for the runs themselves.
_RE_READ_LAG: Final = timedelta(hours=2, minutes=5)
_RE_READ_WINDOW: Final = timedelta(hours=6)
HOUR: Final = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Covered:
    """A period every tier holds, from `start` (a whole hour) to `end` (None: open, the
    continuous queries' coverage); `rolled_at`: when a backfill rolled it up (None for the
    continuous queries', which run every hour)."""

    start: datetime
    end: datetime | None
    rolled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Coverage:
    """What the rollups hold: the covered periods, and each late hour's last late write."""

    periods: tuple[Covered, ...] = ()
    late: dict[datetime, datetime] = field(default_factory=dict)

    def stale(self, hour: datetime, now: datetime) -> bool:
        """Whether `hour` got a reading that no rollup has re-read in every tier yet."""
        written = self.late.get(hour)
        if written is None:
            return False
        if any(
            p.rolled_at is not None
            and p.rolled_at > written
            and p.start <= hour
            and (p.end is None or hour < p.end)
            for p in self.periods
        ):
            return False
        next_run = ceil_hour(written + timedelta.resolution)
        return next_run > hour + _RE_READ_WINDOW or next_run + _RE_READ_LAG > now


def read_coverage(influx: InfluxClient, start: datetime, end: datetime) -> Coverage:
    """The recorded coverage, and the late hours of [start, end)."""
    try:
        periods = influx.query(f"SELECT end_ms, rolled_ms FROM {ROLLUP_RP}.{COVERAGE_MEASUREMENT}")
        late = influx.query(
            f"SELECT written_ms FROM {ROLLUP_RP}.{LATE_MEASUREMENT} "
            "WHERE time >= $start AND time < $end",
            params={"start": epoch_ns(start), "end": epoch_ns(end)},
        )
    except SinkRejected as exc:
        if any(answer in exc.message for answer in NOTHING_YET):
            return Coverage()
        raise
    return Coverage(
        tuple(
            Covered(
                from_epoch_ms(row["time"]),
                None if row["end_ms"] == _OPEN else from_epoch_ms(row["end_ms"]),
                from_epoch_ms(row["rolled_ms"]) if row["rolled_ms"] else None,
            )
            for s in periods
            for row in s.rows()
        ),
        {
            from_epoch_ms(row["time"]): from_epoch_ms(row["written_ms"])
            for s in late
            for row in s.rows()
        },
    )


def late_hours(ts_ms: Iterable[int], *, written_ms: int) -> set[int]:
    """The starts (epoch ms) of the hours among `ts_ms` that ended more than LATE_GRACE before
    `written_ms` (pure: ingest calls it on every batch, so it does no more than compare)."""
    hour_ms = HOUR // timedelta(milliseconds=1)
    boundary = (written_ms - LATE_GRACE // timedelta(milliseconds=1)) // hour_ms * hour_ms
    return {ts - ts % hour_ms for ts in ts_ms if ts < boundary}


def re_read_from(written_ms: int) -> int:
    """The first hour (epoch ms) that a continuous query will still re-read for a reading
    written at `written_ms`: the next run, at the end of the hour holding it, re-aggregates
    the 6 hours before it. An hour before that gets no rollup but a backfill's."""
    hour = HOUR // timedelta(milliseconds=1)
    return (written_ms // hour + 1) * hour - _RE_READ_WINDOW // timedelta(milliseconds=1)


def late_spans(
    stamps: Iterable[tuple[str, int]], *, before_ms: int, most: int
) -> dict[str, tuple[int, int]] | None:
    """Per bin, the first and the last hour (epoch ms) of its readings in hours that start
    before `before_ms`, from (bin id, reading time) pairs; None as soon as more than `most`
    bins have one (a replay of history, which a backfill rolls up: ingest.service)."""
    hour = HOUR // timedelta(milliseconds=1)
    spans: dict[str, tuple[int, int]] = {}
    for bin_id, ts in stamps:
        start = ts - ts % hour
        if start >= before_ms:
            continue
        known = spans.get(bin_id)
        if known is None and len(spans) == most:
            return None
        spans[bin_id] = (
            (start, start) if known is None else (min(known[0], start), max(known[1], start))
        )
    return spans


def reroll_bin(
    influx: InfluxClient, *, bin_id: str, site_id: str, start_ms: int, end_ms: int, timezone: str
) -> None:
    """Roll up again one bin's hours in [start_ms, end_ms) (whole hours), its site's site-hours
    of those hours and the site-days that hold them: what `binwatch rollups backfill` does for
    the whole city, for one bin and one site, so it costs that bin's readings, not the city's.
    Ingest calls it for readings late beyond the continuous queries' window: left marked late,
    every report over those hours read the whole city's raw readings until someone backfilled
    (one bin's 30-day buffer turned the city's month report from 1 s into a 10 s time-out)."""
    offset = standard_offset(timezone)
    hour = HOUR // timedelta(milliseconds=1)
    first, last = start_ms // hour * hour, -(-end_ms // hour) * hour
    day, shift = DAY // timedelta(milliseconds=1), offset // timedelta(milliseconds=1)
    day_first = (first + shift) // day * day - shift
    day_last = -(-(last + shift) // day) * day - shift
    database = influx.database
    by_bin = "WHERE bin = $bin AND time >= $start AND time < $end "
    by_site = "WHERE site = $site AND time >= $start AND time < $end "
    for statement, params, (start, end) in (
        (select_into(database, by_bin), {"bin": bin_id}, (first, last)),
        (site_hour_select_into(database, by_site), {"site": site_id}, (first, last)),
        (daily_select_into(database, timezone, by_site), {"site": site_id}, (day_first, day_last)),
    ):
        influx.query(
            statement, params={**params, "start": start * 1_000_000, "end": end * 1_000_000}
        )


def late_lines(hours_ms: Iterable[int], *, written_ms: int) -> list[str]:
    """The `rollup_late` points for ingest to write (into ROLLUP_RP) once the readings are
    stored: one per hour, the same time overwriting, so each holds its hour's last late write."""
    return [f"{LATE_MEASUREMENT} written_ms={written_ms}i {hour}" for hour in sorted(hours_ms)]


def record_coverage(
    influx: InfluxClient, start: datetime, end: datetime | None, rolled_at: datetime | None
) -> None:
    end_ms = _OPEN if end is None else epoch_ms(end)
    rolled_ms = 0 if rolled_at is None else epoch_ms(rolled_at)
    influx.write(
        [f"{COVERAGE_MEASUREMENT} end_ms={end_ms}i,rolled_ms={rolled_ms}i {epoch_ms(start)}"],
        retention_policy=ROLLUP_RP,
    )


def open_coverage(influx: InfluxClient) -> None:
    """Record that the continuous queries (just made sure of, core.telemetry.ensure_rollups)
    hold every hour from the next one on, unless that is recorded already: the queries' first
    run after this hour rolls it up with whatever was written by then."""
    now = datetime.now(UTC)
    if not any(period.end is None for period in read_coverage(influx, now, now).periods):
        record_coverage(influx, ceil_hour(now), None, None)


def ceil_hour(moment: datetime) -> datetime:
    floored = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return floored if floored == moment else floored + HOUR
