"""The registry written back as a fleet file (`binwatch fleet export`), so the city can take the
fleet as it stands (after partial imports, say) and keep editing one file.

The file round-trips: importing it into an empty registry and exporting again gives the same
text, and importing it into the registry it came from changes nothing. So the export is
deterministic (everything ordered by id) and says only what the fleet file can say: a site's
standard stations (`<site>-s<n>-<stream>` with the site's capacity and the stream's default
threshold) become `stations: n`, every other bin is listed under `bins`. Retirement is not part
of the file (it is the registry's state with its own audit trail, docs/fleet.md), and neither
are webhook secrets.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.errors import FleetError
from devices.contract import Stream
from devices.fleet import DEFAULT_CAPACITY_L, DEFAULT_THRESHOLDS, MAX_STATIONS
from devices.models import Area, AreaContact, Bin, Crew, Depot, Operator, Site, Vehicle

HEADER = "# binwatch fleet export: the registry as a fleet file (docs/fleet.md)\n"


def export_fleet(session: Session) -> str:
    """The registry as fleet-file YAML."""
    areas = list(session.scalars(select(Area).order_by(Area.id)))
    contacts = {c.area_id: c for c in session.scalars(select(AreaContact))}
    children: dict[str | None, list[Area]] = {}
    for area in areas:
        children.setdefault(area.parent_id, []).append(area)
    cities = [area for area in areas if area.kind == "city"]
    if len(cities) > 1:
        ids = ", ".join(city.id for city in cities)
        raise FleetError(f"the registry holds {len(cities)} cities ({ids}); a fleet file has one")

    def entry(area: Area) -> dict[str, Any]:
        out: dict[str, Any] = {"id": area.id, "name": area.name}
        if (contact := contacts.get(area.id)) is not None:
            out["contact"] = _without_none(
                {"mqtt_topic": contact.mqtt_topic, "webhook_url": contact.webhook_url}
            )
        if area.kind in _BELOW:
            key, kind = _BELOW[area.kind]
            out[key] = [entry(c) for c in children.get(area.id, []) if c.kind == kind]
        return out

    document: dict[str, Any] = {}
    if cities:
        document["city"] = entry(cities[0])
    document["districts"] = [entry(a) for a in areas if a.kind == "district"]
    document["operators"] = [
        _without_none({"id": o.id, "name": o.name, "webhook_url": o.webhook_url})
        for o in session.scalars(select(Operator).order_by(Operator.id))
    ]
    sites = session.scalars(select(Site).order_by(Site.id).options(selectinload(Site.bins)))
    document["sites"] = [_site(site) for site in sites]
    document.update(_operator_side(session))
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    return HEADER + body


# Under an area of this kind: the key of its children and their kind.
_BELOW = {"district": ("streets", "street"), "street": ("communities", "community")}


def _site(site: Site) -> dict[str, Any]:
    bins = sorted(site.bins, key=lambda b: b.id)
    capacities = Counter(b.capacity_l for b in bins)
    # The most common capacity (the smallest of equals) is the site's: the fewest bins differ.
    capacity = min(capacities, key=lambda c: (-capacities[c], c)) if bins else DEFAULT_CAPACITY_L
    by_id = {b.id: b for b in bins}
    stations = 0
    while stations < MAX_STATIONS and all(
        _is_standard(by_id.get(f"{site.id}-s{stations + 1}-{s.value}"), stations + 1, s, capacity)
        for s in Stream
    ):
        stations += 1
    standard = {f"{site.id}-s{n}-{s.value}" for n in range(1, stations + 1) for s in Stream}
    out: dict[str, Any] = {
        "id": site.id,
        "name": site.name,
        "type": site.site_type,
        "community": site.community_id,
        "operator": site.operator_id,
        **({} if site.depot_id is None else {"depot": site.depot_id}),
        "address": site.address,
        "lat": site.latitude,
        "lon": site.longitude,
        "stations": stations,
        "capacity_l": capacity,
    }
    listed = [_bin(b, capacity) for b in bins if b.id not in standard]
    if listed:
        out["bins"] = listed
    return out


def _is_standard(row: Bin | None, station: int, stream: Stream, capacity: int) -> bool:
    """Whether `row` is exactly what `stations:` would make at this station."""
    return (
        row is not None
        and row.station == f"s{station}"
        and row.stream == stream.value
        and row.capacity_l == capacity
        and row.threshold_pct == DEFAULT_THRESHOLDS[stream]
    )


def _bin(row: Bin, capacity: int) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row.id, "stream": row.stream, "station": row.station}
    if row.capacity_l != capacity:
        out["capacity_l"] = row.capacity_l
    if row.threshold_pct != DEFAULT_THRESHOLDS[Stream(row.stream)]:
        out["threshold_pct"] = row.threshold_pct
    return out


def _operator_side(session: Session) -> dict[str, Any]:
    """Depots, vehicles and crews, each key only when the registry has some (a city fleet
    without them exports as it did before they existed)."""
    depots = [
        {
            "id": d.id,
            "operator": d.operator_id,
            "name": d.name,
            "lat": d.latitude,
            "lon": d.longitude,
        }
        for d in session.scalars(select(Depot).order_by(Depot.id))
    ]
    vehicles = [
        _without_none(
            {
                "id": v.id,
                "operator": v.operator_id,
                "depot": v.depot_id,
                "name": v.name,
                "streams": list(v.streams),
                "capacity_l": v.capacity_l,
                "capacity_kg": v.capacity_kg,
                "shift": {"start": v.shift_start, "end": v.shift_end},
                "breaks": [dict(pause) for pause in v.breaks] or None,
            }
        )
        for v in session.scalars(select(Vehicle).order_by(Vehicle.id))
    ]
    crews = [
        _without_none(
            {"id": c.id, "operator": c.operator_id, "name": c.name, "vehicle": c.vehicle_id}
        )
        for c in session.scalars(select(Crew).order_by(Crew.id))
    ]
    found = {"depots": depots, "vehicles": vehicles, "crews": crews}
    return {key: entries for key, entries in found.items() if entries}


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
