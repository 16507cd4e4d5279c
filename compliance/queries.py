"""The reads behind compliance reports: which registered sites and bins a report covers (registry)
and their hourly sums (InfluxQL, values always as bound parameters).

Every InfluxDB figure is a sum over per-bin-hour rows: the `hourly.telemetry` rollup, or, for
`source=raw` (and the hours the rollups do not hold yet), the very same rollup SELECT
(core.telemetry.ROLLUP_FIELDS) run over raw readings, its bin-hours added up here; for `source=daily`, settled hours come from the per-site tiers (site-hours, and
site-days for whole local days), which hold those rows' sums already. The window's segments (compliance.rollups.plan) say which tier
answers which hours; a figure is the sum of its segments' answers, so every path gives the same
numbers.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from compliance.figures import BATTERY_LOOKBACK, OFFLINE_AFTER, Sums
from compliance.rollups import Segment, Tier, local_midnight
from compliance.schemas import ReportWindow, Subject
from core.errors import NotFound
from core.influx import InfluxClient, Series, quote_ident
from core.telemetry import (
    DAILY_RP,
    MEASUREMENT,
    RAW_RP,
    ROLLUP_FIELDS,
    ROLLUP_MEASUREMENT,
    ROLLUP_RP,
    SITE_HOUR_MEASUREMENT,
    daily_measurement,
)
from core.times import EPOCH, epoch_ms, epoch_ns, from_epoch_ms
from devices import registry
from devices.models import Area, Operator, Site

# Grid level → the telemetry tag ingest writes for it; the city is every reading.
AREA_TAGS: Final = {"community": "community", "street": "street", "district": "district"}
_TIME: Final = "time >= $start AND time < $end"
SECOND: Final = timedelta(seconds=1)
_ADDITIVE: Final = (
    "sum(deposits) AS deposits, sum(contaminated) AS contaminated, "
    "sum(checked_deposits) AS checked_deposits, "
)
# The same sums from either kind of row: a bin-hour row is one bin-hour and holds overflow as a
# share of its hour; site-hour and site-day rows hold both already summed.
_BIN_HOUR_SUMS: Final = (
    f"{_ADDITIVE}sum(overflow) AS overflow_hours, sum(over90) AS over90_hours, "
    "count(readings) AS bin_hours"
)
_SITE_SUMS: Final = (
    f"{_ADDITIVE}sum(overflow_hours) AS overflow_hours, "
    "sum(over90_hours) AS over90_hours, sum(bin_hours) AS bin_hours"
)
_SUMS: Final[dict[Tier, str]] = {  # raw: `_raw_sums`
    "hourly": _BIN_HOUR_SUMS,
    "site_hour": _SITE_SUMS,
    "daily": _SITE_SUMS,
}


@dataclass(frozen=True, slots=True)
class Scope:
    """What a report covers: the registry's sites (with their bins) and the one tag filter that
    selects their readings (None: the whole city)."""

    subject: Subject | None
    sites: list[Site]
    tag: str | None = None
    value: str | None = None


# --- registry ----------------------------------------------------------------------------------


def site_scope(session: Session, site_id: str) -> Scope:
    site = registry.get_site(session, site_id)
    return Scope(Subject(kind="site", id=site.id, name=site.name), [site], "site", site.id)


def areas_under(session: Session, area_id: str) -> set[str]:
    """The area and every area below it, at any depth (an unknown id: just itself)."""
    children: dict[str | None, list[str]] = defaultdict(list)
    for child_id, parent_id in session.execute(select(Area.id, Area.parent_id)):
        children[parent_id].append(child_id)
    under, frontier = {area_id}, [area_id]
    while frontier:
        found = children[frontier.pop()]
        under.update(found)
        frontier.extend(found)
    return under


def area_scope(session: Session, area_id: str) -> Scope:
    """The sites under an area at any depth; NotFound for an unknown area."""
    area = session.get(Area, area_id)
    if area is None:
        raise NotFound(f"no area with id {area_id!r}")
    under = registry.grid(session).under(area.id)
    sites = _sites(session, Site.community_id.in_(under))
    sites = _sites(session, Site.community_id.in_(areas_under(session, area.id)))
    subject = Subject(kind=area.kind, id=area.id, name=area.name)
    tag = AREA_TAGS.get(area.kind)
    return Scope(subject, sites, tag, area.id if tag else None)


def operator_scope(session: Session, operator_id: str) -> Scope:
    operator = session.get(Operator, operator_id)
    if operator is None:
        raise NotFound(f"no operator with id {operator_id!r}")
    sites = _sites(session, Site.operator_id == operator.id)
    return Scope(
        Subject(kind="operator", id=operator.id, name=operator.name), sites, "operator", operator.id
    )


def type_scope(session: Session, site_type: str) -> Scope:
    """Every site of a type, for rankings (no single subject)."""
    return Scope(None, _sites(session, Site.site_type == site_type), "site_type", site_type)


def _sites(session: Session, condition: Any) -> list[Site]:
    query = select(Site).where(condition).options(selectinload(Site.bins)).order_by(Site.id)
    return list(session.scalars(query))


# --- InfluxDB ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Readings:
    """What a report reads from InfluxDB: sums per site over the window, the bins that reported
    lately, each bin's lowest recent battery level and, for a breakdown, sums per local day
    (keyed by its local midnight; a day read from two segments comes twice, and
    compliance.figures.periods adds them up)."""

    by_site: dict[str, Sums]
    recent: set[str]
    battery: dict[str, float]
    days: list[tuple[datetime, Sums]]


@dataclass(frozen=True, slots=True)
class PendingReadings:
    by_site: list[Future[list[Series]]]
    health: Future[tuple[set[str], dict[str, float]]]
    days: list[Future[list[Series]]]

    def result(self) -> Readings:
        """Wait for every read; the first that failed raises its error here."""
        by_site: dict[str, Sums] = {}
        for part in self.by_site:
            for s in part.result():
                for row in s.rows():
                    by_site[s.tags["site"]] = by_site.get(s.tags["site"], Sums()) + _sums(row)
        days = [
            (from_epoch_ms(row["time"]), _sums(row))
            for part in self.days
            for s in part.result()
            for row in s.rows()
        ]
        recent, battery = self.health.result()
        return Readings(by_site, recent, battery, days)


# A report's reads are independent, and each spends most of its time waiting for InfluxDB: sent
# together they take about as long as the slowest, not their sum (docs/performance.md).
_READS: Final = ThreadPoolExecutor(max_workers=8, thread_name_prefix="compliance-read")


def read(
    influx: InfluxClient, scope: Scope, window: ReportWindow, *, by_day: bool
) -> PendingReadings:
    """Send every InfluxDB read of a report at once (one per segment of the window for the
    sums, and the device-health read per segment of its hours); the caller does its SQL meanwhile."""

    def segment_sums(segment: Segment, by: str) -> Future[list[Series]]:
        if segment.tier == "raw":
            return _READS.submit(_raw_sums, influx, scope, window, segment, by)
        fields = _SUMS[segment.tier]
        if by == "site":
            return _READS.submit(_query, influx, scope, window, segment, fields, "GROUP BY site")
        group_by = "GROUP BY time(1d) fill(none) tz($tz)"
        return _READS.submit(
            _query, influx, scope, window, segment, fields, group_by, tz=window.timezone
        )

    return PendingReadings(
        by_site=[segment_sums(segment, "site") for segment in window.segments],
        health=_READS.submit(device_health, influx, scope, window),
        days=[segment_sums(segment, "day") for segment in window.segments] if by_day else [],
    )


def device_health(
    influx: InfluxClient, scope: Scope, window: ReportWindow
) -> tuple[set[str], dict[str, float]]:
    """The bins with a reading in the window's last OFFLINE_AFTER, and each bin's lowest
    battery level over its last BATTERY_LOOKBACK (not before the window's start), from one
    query per segment of the hours they span. Its time buckets are cut where the two figures'
    spans begin, so each bin answers at most two rows (the hours only one figure covers, and
    those both do), sorted into the two figures here. Before, each figure had a query of its
    own per segment (docs/performance.md); one row per bin-hour would cost more than that."""
    recent_from = window.end - OFFLINE_AFTER
    battery_from = max(window.start, window.end - BATTERY_LOOKBACK)
    first = min(recent_from, battery_from)
    width = abs(recent_from - battery_from) or window.end - first
    offset = (first - EPOCH) % width
    recent_ms, battery_ms = epoch_ms(recent_from), epoch_ms(battery_from)
    recent: set[str] = set()
    lowest: dict[str, float] = {}
    for segment in window.per_bin(first):
        for bin_id, at_ms, heard, battery in _health_rows(
            influx, scope, window, segment, width=width, offset=offset
        ):
            if at_ms >= recent_ms and heard:
                recent.add(bin_id)
            if at_ms >= battery_ms and battery is not None:
                level = float(battery)
                lowest[bin_id] = min(level, lowest.get(bin_id, level))
    return recent, lowest


def _health_rows(
    influx: InfluxClient,
    scope: Scope,
    window: ReportWindow,
    segment: Segment,
    *,
    width: timedelta,
    offset: timedelta,
) -> list[tuple[str, int, bool, Any]]:
    """(bin, start of its rows' time in ms, whether it holds a reading, lowest battery) for
    `device_health`: per time bucket from a bin-hour tier, per bin-hour from raw readings (the
    buckets are cut on whole hours, so an hour falls on the same side of each cut as its bucket)."""
    if segment.tier == "raw":
        return [
            (s.tags["bin"], row["time"], row["readings"] is not None, row["battery_pct"])
            for s in _bin_hours(influx, scope, segment, _RAW_HEALTH_FIELDS)
            for row in s.rows()
        ]
    series = _query(
        influx,
        scope,
        window,
        segment,
        "count(readings) AS hours, min(battery_pct) AS battery",
        "GROUP BY bin, time($width, $offset) fill(none)",
        width={"duration": f"{width // SECOND}s"},
        offset={"duration": f"{offset // SECOND}s"},
    )
    return [
        (s.tags["bin"], row["time"], bool(row["hours"]), row["battery"])
        for s in series
        for row in s.rows()
    ]


_RAW_SUMS: Final = (
    "deposits",
    "contaminated",
    "checked_deposits",
    "overflow_hours",
    "over90_hours",
    "bin_hours",
)


def _raw_sums(
    influx: InfluxClient, scope: Scope, window: ReportWindow, segment: Segment, by: str
) -> list[Series]:
    """What the bin-hour sums (`_BIN_HOUR_SUMS`) grouped by site, or by local day (`by`), would
    answer over the raw readings rolled up on the fly, added up here from the bin-hours
    (`_bin_hours`): InfluxDB 1.6 aggregating over a subquery took 10-20 times as long as
    reading the subquery's rows (~1,300 bin-hours of the demo's replay: 9.4 s against 0.46 s
    on a loaded machine; docs/performance.md, Console). The same rows, the same sums."""
    zone = ZoneInfo(window.timezone)
    groups: dict[Any, list[Any]] = {}
    for s in _bin_hours(influx, scope, segment, _RAW_SUM_FIELDS):
        for row in s.rows():
            if by == "site":
                key: Any = s.tags["site"]
            else:  # the local day, keyed by its midnight as GROUP BY time(1d) tz() answers
                key = epoch_ms(
                    local_midnight(from_epoch_ms(row["time"]).astimezone(zone).date(), zone)
                )
            sums = groups.setdefault(key, [0, 0, 0, 0.0, 0.0, 0])
            sums[0] += row["deposits"] or 0
            sums[1] += row["contaminated"] or 0
            sums[2] += row["checked_deposits"] or 0
            sums[3] += row["overflow"] or 0.0
            sums[4] += row["over90"] or 0.0
            sums[5] += row["readings"] is not None
    if by == "site":
        return [
            Series(MEASUREMENT, list(_RAW_SUMS), [sums], {"site": site})
            for site, sums in groups.items()
        ]
    days = [[day, *sums] for day, sums in sorted(groups.items())]
    return [Series(MEASUREMENT, ["time", *_RAW_SUMS], days)] if days else []


def _rollup_fields(*names: str) -> str:
    """Those of the continuous query's fields (ROLLUP_FIELDS) named, spelled as it spells them."""
    fields = [field for field in ROLLUP_FIELDS.split(", ") if field.split(" AS ")[1] in names]
    assert len(fields) == len(names), names
    return ", ".join(fields)


# What the sums and device health need of a bin-hour: InfluxDB's cost grows with the fields
# (the city's bin-hours of the demo's replay: 1.1 s with all 9, 0.1 s with one, load ~13).
# Every reading has fill_pct (the device contract), so each set answers the same bin-hours.
_RAW_SUM_FIELDS: Final = _rollup_fields(
    "deposits", "contaminated", "checked_deposits", "readings", "overflow", "over90"
)
_RAW_HEALTH_FIELDS: Final = _rollup_fields("readings", "battery_pct")


def _bin_hours(influx: InfluxClient, scope: Scope, segment: Segment, fields: str) -> list[Series]:
    """The segment's raw readings rolled up per bin and hour by the continuous query's own
    SELECT (`fields` of ROLLUP_FIELDS): the rows the bin-hour tier holds once it covers these
    hours."""
    where, params = _where(scope, segment)
    return influx.query(
        f"SELECT {fields} FROM {RAW_RP}.{MEASUREMENT} WHERE {where} "
        "GROUP BY time(1h), * fill(none)",
        params=params,
    )


def _query(
    influx: InfluxClient,
    scope: Scope,
    window: ReportWindow,
    segment: Segment,
    fields: str,
    group_by: str,
    **extra: Any,
) -> list[Series]:
    """A rollup tier's answer (raw readings go through `_bin_hours`)."""
    where, params = _where(scope, segment)
    source = _source(segment.tier, window.timezone)
    return influx.query(
        f"SELECT {fields} FROM {source} WHERE {where} {group_by}", params={**params, **extra}
    )


def _where(scope: Scope, segment: Segment) -> tuple[str, dict[str, Any]]:
    where = _TIME
    params: dict[str, Any] = {"start": epoch_ns(segment.start), "end": epoch_ns(segment.end)}
    if scope.tag is not None:
        # The tag name comes from a fixed set (AREA_TAGS, site, operator, site_type), never from
        # the request; the value is bound.
        where = f"{scope.tag} = $scope AND {where}"
        params["scope"] = scope.value
    return where, params


def _source(tier: Tier, timezone: str) -> str:
    if tier == "hourly":
        return f"{ROLLUP_RP}.{ROLLUP_MEASUREMENT}"
    if tier == "site_hour":
        return f"{ROLLUP_RP}.{SITE_HOUR_MEASUREMENT}"
    if tier == "daily":
        return f"{DAILY_RP}.{quote_ident(daily_measurement(timezone))}"
    raise ValueError(f"raw readings are read by _bin_hours, not as tier {tier!r}")


def _sums(row: dict[str, Any]) -> Sums:
    return Sums(
        deposits=row["deposits"] or 0,
        contaminated=row["contaminated"] or 0,
        checked_deposits=row["checked_deposits"] or 0,
        overflow_minutes=60 * float(row["overflow_hours"] or 0),
        over90_minutes=60 * float(row["over90_hours"] or 0),
        bin_hours=row["bin_hours"] or 0,
    )
