"""The console's map: the user's sites at their coordinates, coloured by their state, refreshed
every few seconds like a site's page. Scope is the same `Scope` as everywhere (a manager's sites, a grid
official's area, the admin everything).

The map is drawn by ECharts (static/echarts.min.js) in Web Mercator coordinates computed here,
so the same points sit right on a tile layer when `BINWATCH_CONSOLE_TILE_URL` names one, and on a
plain background when it is empty (an intranet need not reach any tile server). Beside the
canvas, the same sites as a list with their state in words: the map is not the only way to read
it (a screen reader cannot read a canvas)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from alerts import store as alert_store
from api import queries
from api.auth import Scope
from api.console.auth import CONSOLE_EVERYONE, PREFIX, Caller, CallerDep, ScopeDep
from api.console.i18n import N_, translations
from api.console.pages import render
from api.deps import InfluxDep, SessionDep, SettingsDep
from core.errors import SinkError
from core.influx import InfluxClient
from devices import registry
from devices.models import Site

router = APIRouter(prefix=PREFIX, include_in_schema=False)

# A site's state, worst first: the map shows the worst of its bins. Colours in console.css and
# console-map.js; names as catalog msgids.
STATES: Final = {
    "alert": N_("Alert"),
    "offline": N_("Offline"),
    "full": N_("Bin full"),
    "ok": N_("Normal"),
    "no_data": N_("No readings"),
}
# How far back a bin's last fill level counts: beyond it the bin is silent, which the alerter
# reports as offline; a longer window would only make InfluxDB read more.
FILL_WINDOW: Final = timedelta(hours=24)
SITES_MAX: Final = 10_000  # every site of a city; the pilot has 68


@dataclass(frozen=True, slots=True)
class SiteOnMap:
    site: Site
    state: str
    full_bins: int
    alerts: int

    def point(self, gettext: Callable[[str], str]) -> dict[str, Any]:
        """What console-map.js draws: Web Mercator x/y in [0, 1] (tile space at zoom 0)."""
        x, y = tile_xy(self.site.latitude, self.site.longitude)
        return {
            "id": self.site.id,
            "name": self.site.name,
            "state": self.state,
            "label": gettext(STATES[self.state]),
            "x": x,
            "y": y,
        }


def tile_xy(latitude: float, longitude: float) -> tuple[float, float]:
    """A place in Web Mercator tile space at zoom 0 (x, y in [0, 1]), as console-map.js and a
    tile server count (the dispatch page's routes are drawn the same way)."""
    lat = math.radians(latitude)
    return (longitude + 180) / 360, (1 - math.asinh(math.tan(lat)) / math.pi) / 2


def site_state(*, alert_types: list[str], fills: list[tuple[float | None, float]]) -> str:
    """The worst of: an active alert (offline counted apart), a bin at or over its threshold,
    every bin normal; `fills` are (latest fill level or None, threshold) per bin."""
    if any(kind != "offline" for kind in alert_types):
        return "alert"
    if alert_types:
        return "offline"
    if any(fill is not None and fill >= threshold for fill, threshold in fills):
        return "full"
    if any(fill is not None for fill, _threshold in fills):
        return "ok"
    return "no_data"


def sites_on_map(
    session: Session, influx: InfluxClient, scope: Scope
) -> tuple[list[SiteOnMap], bool]:
    """The caller's sites with their state; True when the fill levels could not be read."""
    sites, _total, _more = registry.list_sites(
        session, site_type=None, community_id=None, limit=SITES_MAX, offset=0, visible=scope.sites
    )
    alerts, _total, _more = alert_store.list_alerts(
        session, state="active", visible_sites=scope.sites, limit=SITES_MAX
    )
    alert_types: dict[str, list[str]] = defaultdict(list)
    for alert in alerts:
        alert_types[alert.site_id].append(alert.type)
    try:
        fills = queries.latest_fill_by_bin(influx, datetime.now(UTC) - FILL_WINDOW, scope.sites)
        fills_missing = False
    except SinkError:
        fills, fills_missing = {}, True
    shown = []
    for site in sites:
        if site.retired_at is not None:
            continue
        levels = [(fills.get(b.id), b.threshold_pct) for b in site.bins if b.retired_at is None]
        state = site_state(alert_types=alert_types[site.id], fills=levels)
        full = sum(1 for fill, threshold in levels if fill is not None and fill >= threshold)
        shown.append(SiteOnMap(site, state, full, len(alert_types[site.id])))
    return shown, fills_missing


def _drawing_order(shown: SiteOnMap) -> int:
    return -list(STATES).index(shown.state)


@dataclass(frozen=True, slots=True)
class MapView:
    """What rendering the map (whole page or its live part) needs."""

    request: Request
    session: Session
    influx: InfluxClient
    caller: Caller
    scope: Scope

    def render(self, template: str, **extra: Any) -> Response:
        locale = self.caller.user.locale
        sites, fills_missing = sites_on_map(self.session, self.influx, self.scope)
        gettext = translations(locale).gettext
        return render(
            self.request,
            template,
            locale=locale,
            me=self.caller,
            sites=sites,
            # The worst drawn last, so a nearby site's dot does not hide an alert.
            points=[s.point(gettext) for s in sorted(sites, key=_drawing_order)],
            counts={state: sum(1 for s in sites if s.state == state) for state in STATES},
            states=STATES,
            fills_missing=fills_missing,
            **extra,
        )


@router.get("/map", dependencies=[CONSOLE_EVERYONE])
def map_page(
    request: Request,
    session: SessionDep,
    influx: InfluxDep,
    settings: SettingsDep,
    caller: CallerDep,
    scope: ScopeDep,
) -> Response:
    """The user's sites on a map."""
    return MapView(request, session, influx, caller, scope).render(
        "map.html",
        tile_url=settings.console.tile_url,
        tile_attribution=settings.console.tile_attribution,
    )


@router.get("/map/live", dependencies=[CONSOLE_EVERYONE])
def map_live(
    request: Request, session: SessionDep, influx: InfluxDep, caller: CallerDep, scope: ScopeDep
) -> Response:
    """The part of the map page that htmx swaps in every LIVE_EVERY_S (the points and the list)."""
    return MapView(request, session, influx, caller, scope).render("_map_live.html")
