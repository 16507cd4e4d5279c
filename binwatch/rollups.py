"""Rollups of `telemetry` that InfluxDB maintains itself, so reports over months never scan raw
readings (DESIGN.md, "retention").

One point per bin and hour lands in `hourly.telemetry` with every tag of the raw series (GROUP BY
time(1h), * keeps them as tags). Its fields carry the raw fields' names, aggregated the way that
composes across bins and hours (sums, maxima, minima, per-hour shares), so a query that sums
deposits or takes the highest fill level reads either policy unchanged: that is what lets a
Grafana panel switch between `raw` and `hourly` by one variable (dashboards/README.md). A
continuous query keeps the rollup current; `backfill` runs the same SELECT over data written
before the query existed. The API's raw path (api/compliance_queries.py) evaluates
`ROLLUP_FIELDS` as a subquery, so both paths compute every figure the same way.

Two more tiers sum it per site, for reports over many sites and months: per site and hour
(`hourly.site_hour`) and per site and local day (`daily.site_day_utc±hhmm`, from the site-hours).
InfluxDB 1.6's cost grows with the series a query opens, not only with the points it reads
(bin-level sums over a district cost 60–120 ms for any range, site-level ones ~10 ms;
docs/performance.md), so a report reads whole days from the daily tier, other hours from the
site-hour tier, and only the last hours, which the continuous queries may not have re-summed yet,
from the bin-hours. Days are cut at the zone's standard offset (a continuous query has no time
zone); `plan` decides which tier answers which hours, and every path gives the same figures
(docs/metrics.md).

InfluxDB 1.x runs a continuous query on a schedule (at the end of each interval, for that
interval), never on demand: tests and new deployments call `backfill` rather than waiting.

**Coverage.** A tier holds a period only once a rollup ran over it after its readings were written.
InfluxDB records what is known (`read_coverage`): the periods covered (`rollup_coverage`: from the
first hour after `ensure_rollups` created the continuous queries, and every range `backfill` rolled
up, with when it ran), and the hours that got a reading late (`rollup_late`, written by ingest:
more than `LATE_GRACE` after the hour ended, e.g. an offline buffer or the demo's replay, with
when). `plan` reads from raw readings the hours outside the covered periods and the late hours
that no rollup has re-read since: a report never answers from a tier that does not hold its window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo

import typer
from rich.progress import Progress

from binwatch.errors import SinkRejected
from binwatch.influx import InfluxClient, quote_ident
from binwatch.settings import Settings

log = logging.getLogger(__name__)

ROLLUP_RP: Final = "hourly"
ROLLUP_MEASUREMENT: Final = "telemetry"  # the raw measurement's name, in another policy
RAW_RP: Final = "raw"  # ingest creates it as the database's default (InfluxClient.ensure_database)
# Kept forever: the pilot fleet makes ~3.8 M rollup points a year (433 bins × 8,760 h), small
# enough that deleting history would save nothing worth a lost year-on-year comparison.
ROLLUP_RETENTION: Final = "INF"
# Shards of a year rather than the default week for a long policy: a year-long report then
# opens one or two shards instead of 52, and the rollup is small enough for year-sized shards.
ROLLUP_SHARD: Final = "52w"
# Every hour the query re-aggregates the last 6 hours, so readings that a bin buffered while
# offline, or that ingest stored a little late, still reach their hour's rollup.
RESAMPLE: Final = "RESAMPLE EVERY 1h FOR 6h"
BACKFILL_CHUNK: Final = timedelta(days=7)  # one SELECT … INTO per week keeps each write small

# Per bin and hour. `overflow` / `over90` become the share of the hour's readings at ≥ 100 % /
# ≥ 90 %, so summed over bin-hours they are hours overflowing (docs/metrics.md). A plain mean(),
# not sum()/count(): InfluxDB 1.6 sums a subquery's two-aggregate expression wrongly (checked: 20
# instead of 30 over two hours), and the raw path reads this SELECT as a subquery.
ROLLUP_FIELDS: Final = (
    "sum(deposits) AS deposits, sum(contaminated) AS contaminated, "
    "sum(checked_deposits) AS checked_deposits, count(fill_pct) AS readings, "
    "mean(overflow) AS overflow, mean(over90) AS over90, "
    "max(fill_pct) AS fill_pct, min(battery_pct) AS battery_pct, max(temp_c) AS temp_c"
)


def _select_into(database: str, where: str = "") -> str:
    db = quote_ident(database)
    return (
        f"SELECT {ROLLUP_FIELDS} INTO {db}.{ROLLUP_RP}.{ROLLUP_MEASUREMENT} "
        f"FROM {db}.{RAW_RP}.telemetry {where}GROUP BY time(1h), *"
    )


CQ_NAME: Final = "telemetry_1h"
_CQ_EXISTS: Final = "continuous query already exists"

SITE_TAGS: Final = "site, site_type, community, street, district, operator"
SITE_HOUR_MEASUREMENT: Final = "site_hour"
DAILY_RP: Final = "daily"
# From bin-hours to a site's sums: overflow shares become hours, and each bin-hour point counts
# as one bin-hour with readings; from site-hours to site-days everything simply adds.
SITE_FIELDS: Final = (
    "sum(deposits) AS deposits, sum(contaminated) AS contaminated, "
    "sum(checked_deposits) AS checked_deposits, sum(overflow) AS overflow_hours, "
    "sum(over90) AS over90_hours, count(readings) AS bin_hours"
)
DAILY_FIELDS: Final = (
    "sum(deposits) AS deposits, sum(contaminated) AS contaminated, "
    "sum(checked_deposits) AS checked_deposits, sum(overflow_hours) AS overflow_hours, "
    "sum(over90_hours) AS over90_hours, sum(bin_hours) AS bin_hours"
)
# The bin-hour query rewrites an hour for 6 h after it ends (RESAMPLE … FOR 6h); re-summing
# 8 h of site-hours and 2 days of site-days every hour means each tier re-reads the one below
# after that has stopped changing, whichever of the queries InfluxDB runs first within an hour.
SITE_HOUR_RESAMPLE: Final = "RESAMPLE EVERY 1h FOR 8h"
DAILY_RESAMPLE: Final = "RESAMPLE EVERY 1h FOR 2d"
# A bin-hour stops changing 6 h after it ends, the site-hour summing it at most an hour later:
# hours that ended longer ago than this are read from site-hours, days from site-days once their
# last hour is; younger hours come from the bin-hours (a margin for the queries' run time).
SETTLED: Final = timedelta(hours=8)
DAY: Final = timedelta(days=1)


def standard_offset(timezone: str) -> timedelta:
    """The zone's offset from UTC without daylight saving: where the daily tier cuts its days."""
    now = datetime.now(ZoneInfo(timezone))
    return (now.utcoffset() or timedelta(0)) - (now.dst() or timedelta(0))


def daily_measurement(timezone: str) -> str:
    """Named after the offset its days are cut at, so a changed BINWATCH_TIMEZONE never reads
    days cut for another zone (the new query starts a new measurement; backfill fills it)."""
    minutes = int(standard_offset(timezone) / timedelta(minutes=1))
    sign = "-" if minutes < 0 else "+"
    return f"site_day_utc{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def _site_hour_select_into(database: str, where: str = "") -> str:
    db = quote_ident(database)
    return (
        f"SELECT {SITE_FIELDS} INTO {db}.{ROLLUP_RP}.{SITE_HOUR_MEASUREMENT} "
        f"FROM {db}.{ROLLUP_RP}.{ROLLUP_MEASUREMENT} {where}GROUP BY time(1h), {SITE_TAGS}"
    )


def _daily_select_into(database: str, timezone: str, where: str = "") -> str:
    db = quote_ident(database)
    # GROUP BY time(1d, offset) starts buckets at UTC midnight + offset: local midnight is
    # UTC midnight − the zone's offset, i.e. + (1 day − offset) modulo a day.
    shift = int((-standard_offset(timezone) % DAY) / timedelta(minutes=1))
    return (
        f"SELECT {DAILY_FIELDS} INTO {db}.{DAILY_RP}.{quote_ident(daily_measurement(timezone))} "
        f"FROM {db}.{ROLLUP_RP}.{SITE_HOUR_MEASUREMENT} {where}"
        f"GROUP BY time(1d, {shift}m), {SITE_TAGS}"
    )


SITE_HOUR_CQ: Final = SITE_HOUR_MEASUREMENT
DAILY_CQ: Final = "site_day"


def continuous_queries(database: str, timezone: str) -> dict[str, str]:
    """The CREATE statements of the three tiers' continuous queries, by name."""
    db = quote_ident(database)
    bodies = {
        CQ_NAME: (RESAMPLE, _select_into(database)),
        SITE_HOUR_CQ: (SITE_HOUR_RESAMPLE, _site_hour_select_into(database)),
        DAILY_CQ: (DAILY_RESAMPLE, _daily_select_into(database, timezone)),
    }
    return {
        name: f"CREATE CONTINUOUS QUERY {name} ON {db} {resample} BEGIN {select} END"
        for name, (resample, select) in bodies.items()
    }


def ensure_rollups(influx: InfluxClient, timezone: str) -> None:
    """Create the tiers' retention policies and continuous queries, or bring them in line with
    this code; safe at every start and from every worker (run after `ensure_database`).

    InfluxDB treats CREATE of an identical continuous query as a no-op and refuses one whose text
    differs ("already exists"): that refusal is how a changed definition is detected, and it is
    then dropped and created anew. (SHOW CONTINUOUS QUERIES would need InfluxClient to accept
    the value-less series it returns for databases without any.)"""
    db = quote_ident(influx.database)
    policies = {
        row["name"]
        for series in influx.query(f"SHOW RETENTION POLICIES ON {db}", database=False)
        for row in series.rows()
    }
    for policy in (ROLLUP_RP, DAILY_RP):
        verb = "ALTER" if policy in policies else "CREATE"
        replication = "" if verb == "ALTER" else " REPLICATION 1"
        influx.query(
            f"{verb} RETENTION POLICY {policy} ON {db} DURATION {ROLLUP_RETENTION}"
            f"{replication} SHARD DURATION {ROLLUP_SHARD}",
            database=False,
        )
    for name, create in continuous_queries(influx.database, timezone).items():
        try:
            influx.query(create, database=False)
        except SinkRejected as exc:
            if _CQ_EXISTS not in exc.message:
                raise
            log.info("continuous query %s changed: replacing it", name)
            influx.query(f"DROP CONTINUOUS QUERY {name} ON {db}", database=False)
            influx.query(create, database=False)
    now = datetime.now(UTC)
    if not any(period.end is None for period in read_coverage(influx, now, now).periods):
        # The queries' first run after this hour rolls it up with whatever was written by then.
        _record_coverage(influx, _ceil_hour(now), None, None)


# --- which periods the tiers hold -------------------------------------------------------------

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
        next_run = _ceil_hour(written + timedelta.resolution)
        return next_run > hour + _RE_READ_WINDOW or next_run + _RE_READ_LAG > now


def read_coverage(influx: InfluxClient, start: datetime, end: datetime) -> Coverage:
    """The recorded coverage, and the late hours of [start, end)."""
    try:
        periods = influx.query(f"SELECT end_ms, rolled_ms FROM {ROLLUP_RP}.{COVERAGE_MEASUREMENT}")
        late = influx.query(
            f"SELECT written_ms FROM {ROLLUP_RP}.{LATE_MEASUREMENT} "
            "WHERE time >= $start AND time < $end",
            params={"start": _ns(start), "end": _ns(end)},
        )
    except SinkRejected as exc:
        if any(answer in exc.message for answer in NOTHING_YET):
            return Coverage()
        raise
    return Coverage(
        tuple(
            Covered(
                _at_ms(row["time"]),
                None if row["end_ms"] == _OPEN else _at_ms(row["end_ms"]),
                _at_ms(row["rolled_ms"]) if row["rolled_ms"] else None,
            )
            for s in periods
            for row in s.rows()
        ),
        {_at_ms(row["time"]): _at_ms(row["written_ms"]) for s in late for row in s.rows()},
    )


def late_hours(ts_ms: Iterable[int], *, written_ms: int) -> set[int]:
    """The starts (epoch ms) of the hours among `ts_ms` that ended more than LATE_GRACE before
    `written_ms` (pure: ingest calls it on every batch, so it does no more than compare)."""
    hour_ms = HOUR // timedelta(milliseconds=1)
    boundary = (written_ms - LATE_GRACE // timedelta(milliseconds=1)) // hour_ms * hour_ms
    return {ts - ts % hour_ms for ts in ts_ms if ts < boundary}


def late_lines(hours_ms: Iterable[int], *, written_ms: int) -> list[str]:
    """The `rollup_late` points for ingest to write (into ROLLUP_RP) once the readings are
    stored: one per hour, the same time overwriting, so each holds its hour's last late write."""
    return [f"{LATE_MEASUREMENT} written_ms={written_ms}i {hour}" for hour in sorted(hours_ms)]


def _record_coverage(
    influx: InfluxClient, start: datetime, end: datetime | None, rolled_at: datetime | None
) -> None:
    end_ms = _OPEN if end is None else _ms(end)
    rolled_ms = 0 if rolled_at is None else _ms(rolled_at)
    influx.write(
        [f"{COVERAGE_MEASUREMENT} end_ms={end_ms}i,rolled_ms={rolled_ms}i {_ms(start)}"],
        retention_policy=ROLLUP_RP,
    )


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
    hourly = _run_chunks(influx, _select_into(database, _RANGE), first, last, "hourly", on_chunk)
    site_hour = _run_chunks(
        influx, _site_hour_select_into(database, _RANGE), first, last, "site_hour", on_chunk
    )
    offset = standard_offset(timezone)
    daily = _run_chunks(
        influx,
        _daily_select_into(database, timezone, _RANGE),
        _floor_day(first, offset),
        _floor_day(last - timedelta.resolution, offset) + DAY,
        "daily",
        on_chunk,
    )
    _record_coverage(influx, first, last, began)
    return Backfilled(hourly, site_hour, daily)


def catch_up(influx: InfluxClient, *, timezone: str) -> Backfilled | None:
    """Roll up again the SETTLED hours up to the newest stored reading (None: nothing stored).
    A continuous query re-reads an hour only while InfluxDB runs: readings stored late shortly
    before InfluxDB stopped (the demo stops it with everything else, after a replay) are in no
    rollup until this runs, at the next start, before anything new is written."""
    try:
        series = influx.query(f"SELECT last(fill_pct) FROM {RAW_RP}.telemetry")
    except SinkRejected as exc:
        if any(answer in exc.message for answer in NOTHING_YET):
            return None
        raise
    if not series or not series[0].values:
        return None
    newest = _at_ms(series[0].values[0][0])
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


def _ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _at_ms(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def _ns(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


rollups_app = typer.Typer(
    help="Hourly and daily rollups of the readings, kept by InfluxDB.", no_args_is_help=True
)


def _utc(value: str, option: str) -> datetime:
    """An ISO 8601 time; one without an offset is read as UTC (the help says so)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=option) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@rollups_app.command("backfill")
def backfill_command(
    start: Annotated[
        str, typer.Option(help="first hour to roll up, ISO 8601 (UTC unless it has an offset)")
    ],
    end: Annotated[
        str, typer.Option(help="end of the range, exclusive (UTC unless it has an offset)")
    ],
) -> None:
    """Roll up readings written before the continuous queries existed (or re-roll a range)."""
    first, last = _utc(start, "--start"), _utc(end, "--end")
    if first >= last:
        raise typer.BadParameter("must be before --end", param_hint="--start")
    settings = Settings()
    influx = InfluxClient(settings)
    try:
        ensure_rollups(influx, settings.timezone)
        with Progress() as progress:
            tasks = {
                tier: progress.add_task(f"{tier} tier", total=(last - first).total_seconds())
                for tier in ("hourly", "site_hour", "daily")
            }

            def advance(tier: Tier, chunk_end: datetime, _written: int) -> None:
                done = min(last, max(first, chunk_end)) - first
                progress.update(tasks[tier], completed=done.total_seconds())

            written = backfill(influx, first, last, timezone=settings.timezone, on_chunk=advance)
    finally:
        influx.close()
    typer.echo(
        f"{written.hourly} bin-hour, {written.site_hour} site-hour and {written.daily} site-day "
        f"points written for "
        f"{first.isoformat()} .. {last.isoformat()}"
    )
