"""The grid official's screens (issue 15): the drill-down city → district → street → community
→ site, each level with its compliance figures, and the overdue collection requests and the
escalations waiting for the level. A grid official sees their area and what lies under it; the
admin the whole city.

Every figure is the API's own: an area's and each of its parts' are the compliance area report
(what `GET /api/v1/compliance/areas/{id}` answers), a community's sites are that report's site
rows; the parts' figures come from the area's own reads (api.routes.compliance.area_and_parts:
one report's InfluxDB reads a page, not one per part). What the caller may see is the API's `Scope`
(`Scope.area`, `Scope.sites`), so an area or site outside it is the same 404 as a missing one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from api.auth import Scope
from api.console.auth import PREFIX, CallerDep, PageError, ScopeDep, console_allow
from api.console.drilldown import REPORT_DAYS, crumbs, home, overdue, report_days, waiting_for
from api.console.i18n import N_
from api.console.pages import render
from api.deps import SessionDep
from api.routes.compliance import AreaFigures, area_and_parts, remembered_on_page
from api.schemas import ID_REGEX
from collection import store as collection_store
from collection.lifecycle import OPEN
from collection.models import CollectionRequest
from compliance.figures import score
from compliance.schemas import Metrics, ReportSpan, ReportWindow, Score
from core.errors import NotFound
from core.influx import InfluxClient
from devices import registry
from devices.grid import Grid, Place
from security.keys import ApiRole

router = APIRouter(prefix=f"{PREFIX}/grid", include_in_schema=False)

GRID_ROLES = console_allow(ApiRole.admin, ApiRole.grid)
AreaId = Annotated[str, Path(pattern=ID_REGEX)]
REQUESTS_SHOWN = 500  # per status; a city's overdue requests are far fewer


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a level's table: a part of the area (or a site) and its figures."""

    id: str
    name: str
    href: str
    score: Score
    metrics: Metrics


def _top(scope: Scope, grid: Grid) -> Place:
    """The caller's own top of the grid (their area; the city for the admin)."""
    place = home(grid, scope.principal.area_id)
    if place is None:
        raise PageError(status.HTTP_404_NOT_FOUND, N_("There is no such area."))
    return place


@router.get("", dependencies=[GRID_ROLES])
def grid_home(session: SessionDep, scope: ScopeDep) -> Response:
    """The caller's own area."""
    top = _top(scope, registry.grid(session))
    return RedirectResponse(f"{PREFIX}/grid/{top.id}", status.HTTP_303_SEE_OTHER)


@router.get("/{area_id}", dependencies=[GRID_ROLES])
def area_page(
    area_id: AreaId,
    request: Request,
    session: SessionDep,
    caller: CallerDep,
    scope: ScopeDep,
    days: Annotated[int | None, Query()] = None,
) -> Response:
    """An area's figures, its parts' (or sites') figures, and its overdue requests."""
    grid = registry.grid(session)
    try:
        scope.area(area_id)
    except NotFound:
        raise PageError(status.HTTP_404_NOT_FOUND, N_("There is no such area.")) from None
    path = crumbs(grid, area_id, top=_top(scope, grid).id)
    if path is None:  # in scope but not under the caller's top: a registry being edited
        raise PageError(status.HTTP_404_NOT_FOUND, N_("There is no such area."))
    area = path[-1]
    period = report_days(days)
    now = datetime.now(UTC)
    end = now.replace(minute=0, second=0, microsecond=0)
    span = ReportSpan.check(
        start=end - timedelta(days=period), end=end, every=None, source="auto", now=now
    )
    parts = [] if area.kind == "community" else grid.children(area_id)
    communities = {part.id: grid.under(part.id) for part in parts}
    sites = area.kind == "community"

    def build(influx: InfluxClient, session: Session, window: ReportWindow) -> AreaFigures:
        return area_and_parts(influx, session, area_id, window, communities, list_sites=sites)

    # The caller's scope was checked above; the key holds everything the answer depends on.
    key = ("grid", area_id, tuple(sorted(communities.items())), sites)
    report, of_parts = remembered_on_page(request, session, key, span, build)
    if area.kind == "community":
        rows = [
            Row(s.id, s.name, f"{PREFIX}/sites/{s.id}", s.score, s.metrics) for s in report.sites
        ]
    else:
        rows = [
            Row(
                part.id,
                part.name,
                f"{PREFIX}/grid/{part.id}?days={period}",
                score(of_parts[part.id]),
                of_parts[part.id],
            )
            for part in parts
        ]
    late = overdue(_waiting_requests(session, scope, grid, area_id), datetime.now(UTC))
    return render(
        request,
        "grid.html",
        locale=caller.user.locale,
        me=caller,
        area=area,
        crumbs=path,
        days=period,
        periods=REPORT_DAYS,
        report=report,
        rows=rows,
        overdue=late,
        waiting=waiting_for(area.kind, late),
        site_names=registry.site_names(session, {r.site_id for r in late}),
    )


def _waiting_requests(
    session: Session, scope: Scope, grid: Grid, area_id: str
) -> list[CollectionRequest]:
    """The requests still waiting for a crew at the area's sites (within the caller's scope)."""
    sites = registry.site_ids_in(session, grid.under(area_id))
    if scope.sites is not None:
        sites &= scope.sites
    found: list[CollectionRequest] = []
    for status_ in OPEN:
        page, _total, _more = collection_store.list_requests(
            session, status=status_, visible_sites=sites, limit=REQUESTS_SHOWN
        )
        found += page
    return found
