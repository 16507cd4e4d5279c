"""Sites: the registry's view of the pilot sites, and the latest state of their bins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session

from api import queries
from api.auth import EVERYONE, ScopeDep
from api.deps import InfluxDep, SessionDep, SiteId, release
from api.paging import After, next_after, next_offset, read_cursor
from api.report_cache import remembered
from api.schemas import ID_REGEX, BinState, SiteDetail, SitePage, SiteSummary
from devices import registry
from devices.contract import SiteType

router = APIRouter(prefix="/sites", tags=["sites"])

MAX_PAGE = 500
# Beyond any real fleet, and inside every database's integer range.
MAX_OFFSET = 1_000_000_000


@router.get("", response_model=SitePage, dependencies=[EVERYONE])
async def list_sites(
    scope: ScopeDep,
    request: Request,
    site_type: Annotated[SiteType | None, Query(description="only sites of this type")] = None,
    community_id: Annotated[
        str | None, Query(pattern=ID_REGEX, description="only sites in this community")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="sites to skip")] = 0,
    after: After = None,
) -> SitePage:
    """A page of the caller's sites ordered by id, with the total matching the filters."""
    past = read_cursor(after, offset, str)

    def build(session: Session) -> SitePage:
        page = registry.list_sites(
            session,
            site_type=site_type,
            community_id=community_id,
            limit=limit,
            offset=offset,
            visible=scope.sites,
            after=past,
            count=past is None,
            with_bins=False,
        )
        counts = registry.bin_counts(session, [site.id for site in page.rows])
        items = [SiteSummary.of(site, counts.get(site.id, 0)) for site in page.rows]
        last = page.rows[-1] if page.rows else None
        return SitePage(
            items=items,
            total=page.total,
            limit=limit,
            offset=offset,
            next=next_after(request, page.more, last.id) if last else None,
        )

    # The answer depends on the sites the caller may see and on the query (path and query
    # string make the `next` link): callers who see the same sites share it.
    key = ("sites", scope.sites, request.url.path, request.url.query)
    return await remembered(request, key, build, reads_influx=False)


@router.get("/{site_id}", response_model=SiteDetail, dependencies=[EVERYONE])
def get_site(site_id: SiteId, session: SessionDep, scope: ScopeDep) -> SiteDetail:
    """A site with its place in the grid (community, street, district) and its operator."""
    scope.site(site_id)
    site = registry.get_site(session, site_id)
    return SiteDetail.of(site, registry.area_chain(session, site.community_id))


@router.get("/{site_id}/bins", response_model=list[BinState], dependencies=[EVERYONE])
def site_bins(
    site_id: SiteId,
    session: SessionDep,
    influx: InfluxDep,
    scope: ScopeDep,
    request: Request,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="bins per page")] = MAX_PAGE,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="bins to skip")] = 0,
) -> list[BinState]:
    """A site's bins with their latest reading (null if it never reported), in id order, at
    most `limit` a page; a `Link: <…>; rel="next"` header names the next page."""
    scope.site(site_id)
    site = registry.get_site(session, site_id)
    everything = sorted(site.bins, key=lambda bin_: bin_.id)
    bins = everything[offset : offset + limit]
    release(session)
    if following := next_offset(request, offset=offset, limit=limit, total=len(everything)):
        response.headers["Link"] = f'<{following}>; rel="next"'

    latest = queries.latest_by_bin(influx, site.id, [bin_.id for bin_ in bins])
    return [BinState.of(bin_, latest.get(bin_.id)) for bin_ in bins]
