"""The telemetry schema, defined once: the InfluxDB measurement ingest writes (its name, tags and
fields), the retention policies, and the rollups of it that InfluxDB maintains itself, so
reports over months never scan raw readings (DESIGN.md, "retention"). Ingest writes it and
creates the rollups at start, the collector and the alerter write beside it, compliance and the
API read it, the dashboards query it: all by these names.

One point per bin and hour lands in `hourly.telemetry` with every tag of the raw series (GROUP BY
time(1h), * keeps them as tags). Its fields carry the raw fields' names, aggregated the way that
composes across bins and hours (sums, maxima, minima, per-hour shares), so a query that sums
deposits or takes the highest fill level reads either policy unchanged: that is what lets a
Grafana panel switch between `raw` and `hourly` by one variable (dashboards/README.md). A
continuous query keeps the rollup current; `compliance.rollups.backfill` runs the same SELECT over
data written before the query existed. Two more tiers sum it per site: per site and hour
(`hourly.site_hour`) and per site and local day (`daily.site_day_utc±hhmm`, from the
site-hours), cut at the zone's standard offset (a continuous query has no time zone).

InfluxDB 1.x runs a continuous query on a schedule (at the end of each interval, for that
interval), never on demand: tests and new deployments call `backfill` rather than waiting.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from core.errors import SinkRejected
from core.influx import InfluxClient, quote_ident

log = logging.getLogger(__name__)

MEASUREMENT: Final = "telemetry"
"""The readings: one point per reading, at the bin's own `ts`."""
TAGS: Final = ("bin", "site", "site_type", "stream", "community", "street", "district", "operator")
"""Every grid level a bin belongs to, so dashboards and reports GROUP BY any without a join."""
FIELDS: Final = (
    "fill_pct",
    "seq",
    "deposits",
    "contaminated",
    "weight_kg",
    "battery_pct",
    "temp_c",
    "overflow",
    "over90",
    "received_ms",
)
"""A reading's fields as ingest writes them (core.lineprotocol.telemetry_line), besides
`checked_deposits`: the deposits of readings that carry a contamination count (the denominator
of sorting accuracy). `overflow`/`over90` are 0/1 flags, `received_ms` ingest's clock."""
MAX_RAW_RANGE: Final = timedelta(days=7)
"""The longest range read as raw readings at once (~10,000 rows at one reading a minute): the
API's readings and a report's `source=raw`."""

ROLLUP_RP: Final = "hourly"
ROLLUP_MEASUREMENT: Final = MEASUREMENT  # the raw measurement's name, in another policy
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


def select_into(database: str, where: str = "") -> str:
    db = quote_ident(database)
    return (
        f"SELECT {ROLLUP_FIELDS} INTO {db}.{ROLLUP_RP}.{ROLLUP_MEASUREMENT} "
        f"FROM {db}.{RAW_RP}.{MEASUREMENT} {where}GROUP BY time(1h), *"
    )


CQ_NAME: Final = "telemetry_1h"
_CQ_EXISTS: Final = "continuous query already exists"

SITE_TAG_KEYS: Final = ("site", "site_type", "community", "street", "district", "operator")
"""The tags a site's series carry: the grid above the bin, without the bin's stream."""
SITE_TAGS: Final = ", ".join(SITE_TAG_KEYS)
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


def site_hour_select_into(database: str, where: str = "") -> str:
    db = quote_ident(database)
    return (
        f"SELECT {SITE_FIELDS} INTO {db}.{ROLLUP_RP}.{SITE_HOUR_MEASUREMENT} "
        f"FROM {db}.{ROLLUP_RP}.{ROLLUP_MEASUREMENT} {where}GROUP BY time(1h), {SITE_TAGS}"
    )


def daily_select_into(database: str, timezone: str, where: str = "") -> str:
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
        CQ_NAME: (RESAMPLE, select_into(database)),
        SITE_HOUR_CQ: (SITE_HOUR_RESAMPLE, site_hour_select_into(database)),
        DAILY_CQ: (DAILY_RESAMPLE, daily_select_into(database, timezone)),
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
