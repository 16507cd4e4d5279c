"""The reads behind compliance reports: which registered sites and bins a report covers (registry)
and their hourly sums (InfluxQL, values always as bound parameters).

Every InfluxDB figure is read from per-bin-hour rows: the `hourly.telemetry` rollup, or, for
`source=raw`, the very same rollup SELECT (binwatch.rollups.ROLLUP_FIELDS) run as a subquery over
raw readings. The outer queries are identical for both, so both paths give the same numbers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from api.compliance import BATTERY_LOOKBACK, OFFLINE_AFTER, Sums
from api.compliance_schemas import ReportWindow, Source, Subject
from api.schemas import epoch_ns, from_epoch_ms
from binwatch.errors import NotFound
from binwatch.influx import InfluxClient, Series
from binwatch.rollups import RAW_RP, ROLLUP_FIELDS, ROLLUP_MEASUREMENT, ROLLUP_RP
from devices import registry
from devices.models import Area, Operator, Site

# Grid level → the telemetry tag ingest writes for it; the city is every reading.
AREA_TAGS: Final = {"community": "community", "street": "street", "district": "district"}
_TIME: Final = "time >= $start AND time < $end"
_SUMS: Final = (
    "sum(deposits) AS deposits, sum(contaminated) AS contaminated, "
    "sum(checked_deposits) AS checked_deposits, sum(overflow) AS overflow_hours, "
    "sum(over90) AS over90_hours, count(readings) AS bin_hours"
)


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


def area_scope(session: Session, area_id: str) -> Scope:
    """The sites under an area at any depth; NotFound for an unknown area."""
    area = session.get(Area, area_id)
    if area is None:
        raise NotFound(f"no area with id {area_id!r}")
    children: dict[str | None, list[str]] = defaultdict(list)
    for child_id, parent_id in session.execute(select(Area.id, Area.parent_id)):
        children[parent_id].append(child_id)
    under, frontier = {area.id}, [area.id]
    while frontier:
        found = children[frontier.pop()]
        under.update(found)
        frontier.extend(found)
    sites = _sites(session, Site.community_id.in_(under))
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


def site_sums(influx: InfluxClient, scope: Scope, window: ReportWindow) -> dict[str, Sums]:
    """Sums over the whole window, per site."""
    series = _query(influx, scope, window, window.start, window.end, _SUMS, "GROUP BY site")
    return {s.tags["site"]: _sums(row) for s in series for row in s.rows()}


def day_sums(
    influx: InfluxClient, scope: Scope, window: ReportWindow
) -> list[tuple[datetime, Sums]]:
    """Sums per local calendar day (InfluxDB buckets days in the city's zone), each keyed by
    its local midnight; days without readings are left out."""
    series = _query(
        influx,
        scope,
        window,
        window.start,
        window.end,
        _SUMS,
        "GROUP BY time(1d) fill(none) tz($tz)",
        tz=window.timezone,
    )
    return [(from_epoch_ms(row["time"]), _sums(row)) for s in series for row in s.rows()]


def recent_bins(influx: InfluxClient, scope: Scope, window: ReportWindow) -> set[str]:
    """Bins with a reading in the window's last OFFLINE_AFTER."""
    series = _query(
        influx,
        scope,
        window,
        window.end - OFFLINE_AFTER,
        window.end,
        "count(readings) AS hours",
        "GROUP BY bin",
    )
    return {s.tags["bin"] for s in series if any(row["hours"] for row in s.rows())}


def lowest_battery(influx: InfluxClient, scope: Scope, window: ReportWindow) -> dict[str, float]:
    """Each bin's lowest battery level over the window's last BATTERY_LOOKBACK."""
    series = _query(
        influx,
        scope,
        window,
        max(window.start, window.end - BATTERY_LOOKBACK),
        window.end,
        "min(battery_pct) AS battery",
        "GROUP BY bin",
    )
    return {
        s.tags["bin"]: float(row["battery"])
        for s in series
        for row in s.rows()
        if row["battery"] is not None
    }


def _query(
    influx: InfluxClient,
    scope: Scope,
    window: ReportWindow,
    start: datetime,
    end: datetime,
    fields: str,
    group_by: str,
    **extra: Any,
) -> list[Series]:
    where = _TIME
    params: dict[str, Any] = {"start": epoch_ns(start), "end": epoch_ns(end), **extra}
    if scope.tag is not None:
        # The tag name comes from a fixed set (AREA_TAGS, site, operator, site_type), never from
        # the request; the value is bound.
        where = f"{scope.tag} = $scope AND {where}"
        params["scope"] = scope.value
    statement = f"SELECT {fields} FROM {_source(window.source, where)} WHERE {where} {group_by}"
    return influx.query(statement, params=params)


def _source(source: Source, where: str) -> str:
    if source == "hourly":
        return f"{ROLLUP_RP}.{ROLLUP_MEASUREMENT}"
    return f"(SELECT {ROLLUP_FIELDS} FROM {RAW_RP}.telemetry WHERE {where} GROUP BY time(1h), * fill(none))"


def _sums(row: dict[str, Any]) -> Sums:
    return Sums(
        deposits=row["deposits"] or 0,
        contaminated=row["contaminated"] or 0,
        checked_deposits=row["checked_deposits"] or 0,
        overflow_minutes=60 * float(row["overflow_hours"] or 0),
        over90_minutes=60 * float(row["over90_hours"] or 0),
        bin_hours=row["bin_hours"] or 0,
    )
