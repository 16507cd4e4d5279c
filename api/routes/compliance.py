"""Compliance reports (issue 5): sorting accuracy, participation, overflow, device health and
collection per site, area and operator, and the published rankings; every report also as CSV."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from anyio import from_thread
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from api.auth import EVERYONE, ScopeDep, allow
from api.deps import SiteId, release
from api.report_cache import remembered
from api.schemas import ID_REGEX, TimeParam
from compliance import queries as reads
from compliance.figures import (
    DeviceCounts,
    RequestSums,
    Sums,
    device_counts,
    metrics,
    period_bounds,
    periods,
    ranking_csv,
    report_csv,
    request_total,
    score,
    total,
)
from compliance.ranking import ranked, rule
from compliance.requests import request_sums
from compliance.schemas import (
    ComplianceReport,
    Every,
    Metrics,
    Period,
    Ranking,
    ReportSpan,
    ReportWindow,
    SiteRow,
    SourceParam,
)
from core.coverage import read_coverage
from core.errors import NotFound
from core.influx import InfluxClient
from core.settings import Settings
from devices.contract import SiteType
from devices.models import Site
from security.keys import ApiRole

router = APIRouter(tags=["compliance"])

CSV = "text/csv"
_CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {CSV: {"schema": {"type": "string"}}}}
}
_ID_RULE = "1–64 letters, digits, '_', '.' or '-', starting with a letter or digit"
AreaId = Annotated[str, Path(pattern=ID_REGEX, description=f"an area id: {_ID_RULE}")]
OperatorId = Annotated[str, Path(pattern=ID_REGEX, description=f"an operator id: {_ID_RULE}")]
Format = Annotated[
    Literal["json", "csv"] | None,
    Query(description="csv for a CSV table (as does Accept: text/csv); default JSON"),
]
Body = TypeVar("Body", ComplianceReport, Ranking)
Answer = TypeVar("Answer")


async def report_span(
    start: Annotated[
        TimeParam,
        Query(description="RFC 3339 on a whole hour (URL-encode '+' as %2B); default end − 7 days"),
    ] = None,
    end: Annotated[
        TimeParam,
        Query(description="RFC 3339 on a whole hour, exclusive; default the last whole hour"),
    ] = None,
    every: Annotated[
        Every | None,
        Query(description="a breakdown by local day, week (from Monday) or calendar month"),
    ] = None,
    source: Annotated[
        SourceParam,
        Query(
            description="raw readings (≤ 7 days), the bin-hour rollup (hourly), the site-day and "
            "site-hour rollups where settled (daily), or auto: raw up to 1 day, else daily"
        ),
    ] = "auto",
) -> ReportSpan:
    """The checked span of a report request; InvalidRequest (422) when it cannot be served.
    No I/O: checked on the event loop, before the report cache is asked."""
    return ReportSpan.check(start=start, end=end, every=every, source=source, now=datetime.now(UTC))


ReportSpanDep = Annotated[ReportSpan, Depends(report_span)]


def report_window(
    settings: Settings,
    influx: InfluxClient,
    *,
    start: datetime | None,
    end: datetime | None,
    every: Every | None = None,
    source: SourceParam = "auto",
) -> ReportWindow:
    """The checked and planned window of a report the console computes itself, uncached (the
    monthly reports; the grid pages and rankings go through `remembered_on_page`)."""
    now = datetime.now(UTC)
    span = ReportSpan.check(start=start, end=end, every=every, source=source, now=now)
    return _planned(settings, influx, span, now)


def _planned(
    settings: Settings, influx: InfluxClient, span: ReportSpan, now: datetime
) -> ReportWindow:
    return span.window(
        now=now,
        timezone=settings.timezone,
        coverage=lambda first, last: read_coverage(influx, first, last),
    )


async def _remembered(
    request: Request,
    key: tuple[Hashable, ...],
    span: ReportSpan,
    build: Callable[[InfluxClient, Session, ReportWindow], Answer],
) -> Answer:
    """`build`'s answer over the planned `span` (api.report_cache.remembered: the caller's
    scope is checked before)."""
    settings: Settings = request.app.state.settings
    influx: InfluxClient = request.app.state.influx

    def planned(session: Session) -> Answer:
        return build(influx, session, _planned(settings, influx, span, datetime.now(UTC)))

    return await remembered(request, (*key, span), planned, reads_influx=True)


def remembered_on_page(
    request: Request,
    session: Session,
    key: tuple[Hashable, ...],
    span: ReportSpan,
    build: Callable[[InfluxClient, Session, ReportWindow], Answer],
) -> Answer:
    """`_remembered`, for a console page's route (a sync route: FastAPI runs it on a worker
    thread, from which this waits on the event loop). The page's registry session lets its
    connection go first; the computation, on a miss, has its own session and InfluxDB slot, so
    the page takes no InfluxDB slot of its own (docs/performance.md, Console)."""
    release(session)
    return from_thread.run(_remembered, request, key, span, build)


@router.get(
    "/compliance/sites/{site_id}",
    response_model=ComplianceReport,
    responses=_CSV_RESPONSE,
    dependencies=[EVERYONE],
)
async def site_report(
    site_id: SiteId,
    caller: ScopeDep,
    span: ReportSpanDep,
    request: Request,
    format: Format = None,
) -> ComplianceReport | Response:
    """A site's accuracy, participation, overflow, device health, collection and score."""
    caller.site(site_id)

    def build(influx: InfluxClient, session: Session, window: ReportWindow) -> ComplianceReport:
        scope = reads.site_scope(session, site_id)
        return build_report(influx, session, scope, window, list_sites=False)

    return _answer(request, format, await _remembered(request, ("site", site_id), span, build))


@router.get(
    "/compliance/areas/{area_id}",
    response_model=ComplianceReport,
    responses=_CSV_RESPONSE,
    dependencies=[allow(ApiRole.admin, ApiRole.grid)],
)
async def area_report(
    area_id: AreaId,
    caller: ScopeDep,
    span: ReportSpanDep,
    request: Request,
    format: Format = None,
) -> ComplianceReport | Response:
    """A community's, street's, district's or the city's figures, with its sites ranked (a grid
    key: its own area and those under it)."""
    caller.area(area_id)

    def build(influx: InfluxClient, session: Session, window: ReportWindow) -> ComplianceReport:
        return area_compliance(influx, session, area_id, window, list_sites=True)

    return _answer(request, format, await _remembered(request, ("area", area_id), span, build))


def area_compliance(
    influx: InfluxClient,
    session: Session,
    area_id: str,
    window: ReportWindow,
    *,
    list_sites: bool,
) -> ComplianceReport:
    """An area's report, as the route above answers it."""
    scope = reads.area_scope(session, area_id)
    return build_report(influx, session, scope, window, list_sites=list_sites)


AreaFigures = tuple[ComplianceReport, dict[str, Metrics]]


def area_and_parts(
    influx: InfluxClient,
    session: Session,
    area_id: str,
    window: ReportWindow,
    parts: Mapping[str, Collection[str]],
    *,
    list_sites: bool,
) -> AreaFigures:
    """An area's report and the figures of each of its parts (part id → the communities under
    it) from the same reads: each part's figures are what its own area report answers
    (`area_compliance`), its sites' sums, device counts and requests added up the same way,
    at the cost of one report (the console's grid pages show them; docs/performance.md)."""
    scope = reads.area_scope(session, area_id)
    return _report(influx, session, scope, window, list_sites=list_sites, parts=parts)


@router.get(
    "/compliance/operators/{operator_id}",
    response_model=ComplianceReport,
    responses=_CSV_RESPONSE,
    dependencies=[allow(ApiRole.admin, ApiRole.operator)],
)
async def operator_report(
    operator_id: OperatorId,
    caller: ScopeDep,
    span: ReportSpanDep,
    request: Request,
    format: Format = None,
) -> ComplianceReport | Response:
    """The figures of every site an operator serves, with those sites ranked."""
    if not caller.is_admin and caller.principal.operator_id != operator_id:
        raise NotFound(f"no operator with id {operator_id!r}")

    def build(influx: InfluxClient, session: Session, window: ReportWindow) -> ComplianceReport:
        scope = reads.operator_scope(session, operator_id)
        return build_report(influx, session, scope, window, list_sites=True)

    key = ("operator", operator_id)
    return _answer(request, format, await _remembered(request, key, span, build))


@router.get("/rankings", response_model=Ranking, responses=_CSV_RESPONSE, dependencies=[EVERYONE])
async def rankings(
    site_type: Annotated[SiteType, Query(description="rank the sites of this type")],
    span: ReportSpanDep,
    request: Request,
    format: Format = None,
) -> Ranking | Response:
    """The sites of a type with enough evidence, cleanest first, each with its score and the
    parts behind it; then those without enough evidence, with the reason."""

    def build(influx: InfluxClient, session: Session, window: ReportWindow) -> Ranking:
        scope = reads.type_scope(session, site_type.value)
        return build_ranking(influx, session, scope, window, site_type)

    return _answer(request, format, await _remembered(request, ("ranking", site_type), span, build))


def build_ranking(
    influx: InfluxClient,
    session: Session,
    scope: reads.Scope,
    window: ReportWindow,
    site_type: SiteType,
) -> Ranking:
    """The ranking of the scope's sites (all of `site_type`) over the window; the console's
    rankings page shows the same."""
    pending = reads.read(influx, scope, window, by_day=False)
    requests = _by_site(_requests(session, scope, window))
    release(session)  # the InfluxDB reads may still run
    rows = _site_rows(pending.result(), scope, window, requests)
    return Ranking(
        site_type=site_type,
        start=window.start,
        end=window.end,
        timezone=window.timezone,
        source=window.source,
        rule=rule(window.start, window.end),
        items=[row for row in rows if row.rank is not None],
        not_ranked=[row for row in rows if row.rank is None],
    )


def _requests(
    session: Session, scope: reads.Scope, window: ReportWindow, splits: Sequence[datetime] = ()
) -> dict[tuple[str, int], RequestSums]:
    """The collection requests of the scope's sites created in the window, by site and period
    (cut at `splits`). An operator's report counts only the requests assigned to it, as its
    readings are those tagged with it; open requests are judged at the window's end, or now
    when the window reaches past it."""
    subject = scope.subject
    return request_sums(
        session,
        [site.id for site in scope.sites],
        start=window.start,
        end=window.end,
        as_of=min(window.end, datetime.now(UTC)),
        splits=splits,
        operator_id=subject.id if subject is not None and subject.kind == "operator" else None,
    )


def _by_site(requests: Mapping[tuple[str, int], RequestSums]) -> dict[str, RequestSums]:
    grouped: dict[str, list[RequestSums]] = defaultdict(list)
    for (site_id, _period), sums in requests.items():
        grouped[site_id].append(sums)
    return {site_id: request_total(items) for site_id, items in grouped.items()}


def _site_rows(
    found: reads.Readings,
    scope: reads.Scope,
    window: ReportWindow,
    requests: Mapping[str, RequestSums],
) -> list[SiteRow]:
    """Every site of the scope, ranked; `requests` are the sites' collection figures over the
    window."""
    rows = []
    for site in scope.sites:
        figures = _figures(found, [site], window, requests)
        rows.append(
            SiteRow(
                rank=0,
                id=site.id,
                name=site.name,
                site_type=SiteType(site.site_type),
                community_id=site.community_id,
                score=score(figures),
                metrics=figures,
            )
        )
    return ranked(rows, rule(window.start, window.end))


def _figures(
    found: reads.Readings,
    sites: Sequence[Site],
    window: ReportWindow,
    requests: Mapping[str, RequestSums],
) -> Metrics:
    """The figures of a group of the scope's sites over the window: only registered sites
    count, so a total is always the sum of the sites listed."""
    devices = DeviceCounts(0, 0)
    for site in sites:
        devices += device_counts(
            [bin_.id for bin_ in site.bins], recent=found.recent, battery=found.battery
        )
    return metrics(
        total(found.by_site.get(site.id, Sums()) for site in sites),
        bins=sum(len(site.bins) for site in sites),
        start=window.start,
        end=window.end,
        devices=devices,
        requests=request_total(requests[site.id] for site in sites if site.id in requests),
    )


def build_report(
    influx: InfluxClient,
    session: Session,
    scope: reads.Scope,
    window: ReportWindow,
    *,
    list_sites: bool,
) -> ComplianceReport:
    """A site's, area's or operator's report (the console's monthly report shows the same)."""
    return _report(influx, session, scope, window, list_sites=list_sites, parts={})[0]


def _report(
    influx: InfluxClient,
    session: Session,
    scope: reads.Scope,
    window: ReportWindow,
    *,
    list_sites: bool,
    parts: Mapping[str, Collection[str]],
) -> tuple[ComplianceReport, dict[str, Metrics]]:
    """`build_report`, and the figures of the `parts` of its scope (part → its communities)."""
    assert scope.subject is not None
    bounds: list[tuple[datetime, datetime]] = []
    if window.every is not None:
        bounds = period_bounds(
            every=window.every, start=window.start, end=window.end, timezone=window.timezone
        )
    pending = reads.read(influx, scope, window, by_day=window.every is not None)
    # One read for the sites and the periods: period i starts at bounds[i].
    requests = _requests(session, scope, window, [begin for begin, _ in bounds[1:]])
    by_site = _by_site(requests)
    release(session)  # the InfluxDB reads may still run
    found = pending.result()
    rows = _site_rows(found, scope, window, by_site)
    bins = sum(len(site.bins) for site in scope.sites)
    figures = _figures(found, scope.sites, window, by_site)
    of_parts = {
        part: _figures(
            found,
            [site for site in scope.sites if site.community_id in communities],
            window,
            by_site,
        )
        for part, communities in parts.items()
    }
    breakdown = None
    if window.every is not None:
        ends = dict(bounds)
        readings: dict[datetime, Sums] = {}
        for begin, _finish, period_sums in periods(
            found.days,
            every=window.every,
            start=window.start,
            end=window.end,
            timezone=window.timezone,
        ):
            readings[begin] = period_sums
        by_period: dict[datetime, list[RequestSums]] = defaultdict(list)
        for (_site_id, index), site_requests in requests.items():
            by_period[bounds[index][0]].append(site_requests)
        breakdown = []
        # Periods with readings or requests; one with neither is left out.
        for begin in sorted(readings.keys() | by_period.keys()):
            finish = ends[begin]
            period_figures = metrics(
                readings.get(begin, Sums()),
                bins=bins,
                start=begin,
                end=finish,
                devices=None,
                requests=request_total(by_period.get(begin, ())),
            )
            breakdown.append(
                Period(start=begin, end=finish, metrics=period_figures, score=score(period_figures))
            )
    return ComplianceReport(
        subject=scope.subject,
        start=window.start,
        end=window.end,
        timezone=window.timezone,
        source=window.source,
        every=window.every,
        metrics=figures,
        score=score(figures),
        periods=breakdown,
        sites=rows if list_sites else [],
    ), of_parts


def _answer(request: Request, format: str | None, body: Body) -> Body | Response:
    """JSON, or CSV when `format=csv` or the client accepts text/csv (and did not ask for JSON)."""
    wants_csv = format == "csv" or (format is None and CSV in request.headers.get("accept", ""))
    if not wants_csv:
        return body
    lines = report_csv(body) if isinstance(body, ComplianceReport) else ranking_csv(body)
    return StreamingResponse(lines, media_type=f"{CSV}; charset=utf-8")
