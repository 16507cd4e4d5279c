"""Hourly rollups of `telemetry` that InfluxDB maintains itself, so reports over months never scan
raw readings (DESIGN.md, "retention").

One point per bin and hour lands in `hourly.telemetry` with every tag of the raw series (GROUP BY
time(1h), * keeps them as tags). Its fields carry the raw fields' names, aggregated the way that
composes across bins and hours (sums, maxima, minima, per-hour shares), so a query that sums
deposits or takes the highest fill level reads either policy unchanged: that is what lets a
Grafana panel switch between `raw` and `hourly` by one variable (dashboards/README.md). A continuous query keeps the rollup current; `backfill` runs the same SELECT over
data written before the query existed. The API's raw path (api/compliance_queries.py) evaluates
`ROLLUP_FIELDS` as a subquery, so both paths compute every figure the same way.

InfluxDB 1.x runs a continuous query on a schedule (at the end of each interval, for that
interval), never on demand: tests and new deployments call `backfill` rather than waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

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


def continuous_query(database: str) -> str:
    """The CREATE statement of the rollup's continuous query."""
    db = quote_ident(database)
    return (
        f"CREATE CONTINUOUS QUERY {CQ_NAME} ON {db} {RESAMPLE} BEGIN {_select_into(database)} END"
    )


def ensure_rollups(influx: InfluxClient) -> None:
    """Create the `hourly` retention policy and the rollup's continuous query, or bring them in
    line with this code; safe at every start and from every worker (run after `ensure_database`).

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
    verb = "ALTER" if ROLLUP_RP in policies else "CREATE"
    replication = "" if verb == "ALTER" else " REPLICATION 1"
    influx.query(
        f"{verb} RETENTION POLICY {ROLLUP_RP} ON {db} DURATION {ROLLUP_RETENTION}"
        f"{replication} SHARD DURATION {ROLLUP_SHARD}",
        database=False,
    )
    create = continuous_query(influx.database)
    try:
        influx.query(create, database=False)
    except SinkRejected as exc:
        if _CQ_EXISTS not in exc.message:
            raise
        log.info("rollup continuous query changed: replacing it")
        influx.query(f"DROP CONTINUOUS QUERY {CQ_NAME} ON {db}", database=False)
        influx.query(create, database=False)


def backfill(
    influx: InfluxClient,
    start: datetime,
    end: datetime,
    *,
    on_chunk: Callable[[datetime, int], None] | None = None,
) -> int:
    """Roll up raw readings in [start, end), widened to whole hours, a week at a time; returns the
    rollup points written. Rewriting an hour gives the same points, so overlaps are harmless.
    `on_chunk(chunk_end, written)` reports progress."""
    start, end = _floor_hour(start), _ceil_hour(end)
    statement = _select_into(influx.database, "WHERE time >= $start AND time < $end ")
    written = 0
    chunk_start = start
    while chunk_start < end:
        chunk_end = min(chunk_start + BACKFILL_CHUNK, end)
        result = influx.query(statement, params={"start": _ns(chunk_start), "end": _ns(chunk_end)})
        chunk_written = sum(int(row["written"]) for s in result for row in s.rows())
        written += chunk_written
        if on_chunk is not None:
            on_chunk(chunk_end, chunk_written)
        chunk_start = chunk_end
    return written


def _floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: datetime) -> datetime:
    floored = _floor_hour(moment)
    return floored if floored == moment else floored + timedelta(hours=1)


def _ns(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


rollups_app = typer.Typer(
    help="Hourly rollups of the readings, kept by InfluxDB.", no_args_is_help=True
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
    """Roll up readings written before the continuous query existed (or re-roll a range)."""
    first, last = _utc(start, "--start"), _utc(end, "--end")
    if first >= last:
        raise typer.BadParameter("must be before --end", param_hint="--start")
    influx = InfluxClient(Settings())
    try:
        ensure_rollups(influx)
        total_s = (_ceil_hour(last) - _floor_hour(first)).total_seconds()
        with Progress() as progress:
            task = progress.add_task("rolling up", total=total_s)

            def advance(chunk_end: datetime, _written: int) -> None:
                progress.update(task, completed=(chunk_end - _floor_hour(first)).total_seconds())

            written = backfill(influx, first, last, on_chunk=advance)
    finally:
        influx.close()
    typer.echo(f"{written} rollup points written for {first.isoformat()} .. {last.isoformat()}")
