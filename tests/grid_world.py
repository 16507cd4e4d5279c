"""The grid the console tests drill down: areas chosen from the registry's own fleet (whatever
its names), a community official, a district official and the city admin, and readings of a few
sites stored in InfluxDB the way ingest stores them, so the figures are not all empty."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.influx import InfluxClient
from core.lineprotocol import tag_set
from core.settings import Settings
from devices import registry
from devices.contract import Topics
from devices.grid import Grid
from devices.models import Bin, Site
from devices.registry import BinTags
from ingest.decode import decode
from security.users import UserRole, create_user

PASSWORD = "green bins 2026"
COMMUNITY_OFFICIAL, DISTRICT_OFFICIAL, ADMIN = "grid.community", "grid.district", "city.admin"


@dataclass(frozen=True)
class GridWorld:
    grid: Grid
    city: str
    district: str  # the district official's, with two streets or more that have sites
    other_district: str
    street: str  # a street of `district`, holding `community`
    community: str  # the community official's
    sites_by_community: dict[str, list[str]]

    def sites_under(self, area_id: str) -> set[str]:
        under = self.grid.under(area_id)
        return {s for c, sites in self.sites_by_community.items() if c in under for s in sites}


def build(session: Session, settings: Settings, bins: dict[str, BinTags]) -> GridWorld:
    """Choose the areas, create the three users, store one reading per chosen site."""
    grid = registry.grid(session)
    sites_by_community: dict[str, list[str]] = defaultdict(list)
    for site_id, community_id in session.execute(select(Site.id, Site.community_id)):
        sites_by_community[community_id].append(site_id)

    def has_sites(area_id: str) -> bool:
        return any(sites_by_community.get(a) for a in grid.under(area_id))

    (city,) = grid.roots()
    districts = [d.id for d in grid.children(city.id) if has_sites(d.id)]
    district = next(d for d in districts if sum(has_sites(s.id) for s in grid.children(d)) >= 2)
    other = next(d for d in districts if d != district)
    street = next(s.id for s in grid.children(district) if has_sites(s.id))
    community = next(c.id for c in grid.children(street) if sites_by_community.get(c.id))
    world = GridWorld(grid, city.id, district, other, street, community, dict(sites_by_community))
    now = datetime.now(UTC)
    for username, role, area in (
        (COMMUNITY_OFFICIAL, UserRole.grid, community),
        (DISTRICT_OFFICIAL, UserRole.grid, district),
        (ADMIN, UserRole.admin, None),
    ):
        create_user(
            session,
            username=username,
            display_name=username,
            password=PASSWORD,
            role=role,
            now=now,
            area_id=area,
        )
    # One site per street of each district, each with its own sorting record (n-th street:
    # 100 deposits, 10 × n wrongly sorted), two hours ago: inside every report window.
    readings = []
    streets = [s.id for d in (district, other) for s in grid.children(d) if has_sites(s.id)]
    for n, street_id in enumerate(streets, start=1):
        site_id = min(world.sites_under(street_id))
        bin_id = session.scalars(select(Bin.id).where(Bin.site_id == site_id)).first()
        assert bin_id is not None
        readings.append((bin_id, 100, 10 * n))
    store_readings(settings, bins, readings, at=now - timedelta(hours=2))
    return world


def store_readings(
    settings: Settings,
    bins: dict[str, BinTags],
    readings: list[tuple[str, int, int]],
    *,
    at: datetime,
) -> None:
    """(bin, deposits, contaminated) readings at `at`, decoded and written as ingest does."""
    influx = InfluxClient(settings)
    try:
        influx.ensure_database(settings.raw_retention)
        tags_of = {b: tag_set(dataclasses.asdict(tags)) for b, tags in bins.items()}.get
        ts_ms = int(at.timestamp() * 1000)
        for bin_id, deposits, contaminated in readings:
            payload = {"ts": ts_ms, "fill_pct": 40.0, "deposits": deposits}
            payload["contaminated"] = contaminated
            decoded = decode(
                f"{settings.topic_prefix}/bins/{bin_id}/telemetry",
                json.dumps(payload).encode(),
                ts_ms + 250,
                topics=Topics(settings.topic_prefix),
                tags_of=tags_of,
                max_payload=65536,
            )
            assert not decoded.rejections, decoded.rejections
            influx.write(decoded.lines)
    finally:
        influx.close()
