"""The grid officials' and the city admins' reports (issue 15): the rankings by site type, and
the monthly report of an area or a site as a printable page, a PDF, a CSV for Excel and an
.xlsx. A grid official reaches their own area and what lies under it; an admin the whole city.
Anything outside is the same 404 page as an id that does not exist.

Every number comes from the API's own report and ranking (api.routes.compliance.build_report,
build_ranking): the console shows what the API serves, under the same ranking rule."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.console.auth import CONSOLE_GRID, PREFIX, Caller, CallerDep, PageError
from api.console.i18n import N_, Formats, translations
from api.console.pages import render
from api.console.report_files import report_csv, report_xlsx
from api.console.report_model import (
    FIGURES,
    PARTS,
    MonthlyReport,
    Place,
    month_bounds,
    monthly,
    not_ranked_reason,
    period_text,
    place_text,
    report_title,
    rule_text,
)
from api.console.report_pdf import report_pdf
from api.deps import InfluxDep, SessionDep, SettingsDep, SiteId
from api.routes.compliance import (
    build_ranking,
    build_report,
    remembered_on_page,
    report_window,
)
from api.schemas import ID_REGEX
from compliance import queries as reads
from compliance.schemas import Every, Ranking, ReportSpan, ReportWindow
from core.errors import NotFound
from core.influx import InfluxClient
from core.settings import Settings
from devices.contract import SiteType
from devices.models import Area

router = APIRouter(prefix=PREFIX, include_in_schema=False)

AreaId = Annotated[str, Path(pattern=ID_REGEX)]
FileKind = Literal["pdf", "csv", "xlsx"]
MONTH = re.compile(r"(\d{4})-(\d{2})")
MEDIA_TYPES = {
    "pdf": "application/pdf",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
NO_AREA = N_("There is no such area.")
NO_SITE = N_("There is no such site.")


@dataclass(frozen=True, slots=True)
class Reach:
    """The areas a user's reports may cover (None: the whole city) and the one they open on."""

    areas: set[str] | None
    home: str

    def area(self, area_id: str) -> None:
        if self.areas is not None and area_id not in self.areas:
            raise PageError(status.HTTP_404_NOT_FOUND, NO_AREA)


def reach_of(session: Session, caller: Caller) -> Reach:
    """An admin's reach is the city; a grid official's their area and every area under it."""
    user = caller.user
    if user.role == "admin":
        city = session.scalars(select(Area.id).where(Area.kind == "city").order_by(Area.id))
        home = city.first()
        if home is None:
            raise PageError(status.HTTP_404_NOT_FOUND, NO_AREA)
        return Reach(None, home)
    assert user.area_id is not None  # a grid official always has one (security.users)
    return Reach(reads.areas_under(session, user.area_id), user.area_id)


def _month(month: str | None, settings: Settings) -> date:
    """`YYYY-MM`, by default the city's month of the last whole hour (the current one, but
    in a month's first hour the one before: a report needs a whole hour). A month after the
    current one is refused here, before its bounds are computed: December 9999 has no month
    after it to end at."""
    last_hour = datetime.now(ZoneInfo(settings.timezone)) - timedelta(hours=1)
    if month is None:
        return last_hour.date().replace(day=1)
    found = MONTH.fullmatch(month)
    if found is None or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 2000:
        raise PageError(status.HTTP_422_UNPROCESSABLE_CONTENT, N_("There is no such month."))
    chosen = date(int(found.group(1)), int(found.group(2)), 1)
    if chosen > last_hour.date():  # its first day is after the last whole hour
        raise PageError(status.HTTP_422_UNPROCESSABLE_CONTENT, N_("This month has not begun yet."))
    return chosen


def _span(settings: Settings, month: date, every: Every | None) -> ReportSpan:
    now = datetime.now(UTC)
    start, end = month_bounds(month, timezone=settings.timezone, now=now)
    if start >= end:
        raise PageError(status.HTTP_422_UNPROCESSABLE_CONTENT, N_("This month has not begun yet."))
    return ReportSpan.check(start=start, end=end, every=every, source="auto", now=now)


def _window(
    settings: Settings, influx: InfluxClient, month: date, every: Every | None
) -> ReportWindow:
    span = _span(settings, month, every)
    return report_window(settings, influx, start=span.start, end=span.end, every=every)


def _area_scope(session: Session, reach: Reach, area_id: str) -> reads.Scope:
    reach.area(area_id)
    try:
        return reads.area_scope(session, area_id)
    except NotFound:
        raise PageError(status.HTTP_404_NOT_FOUND, NO_AREA) from None


def _site_scope(session: Session, reach: Reach, site_id: str) -> reads.Scope:
    try:
        scope = reads.site_scope(session, site_id)
    except NotFound:
        raise PageError(status.HTTP_404_NOT_FOUND, NO_SITE) from None
    if reach.areas is not None and scope.sites[0].community_id not in reach.areas:
        raise PageError(status.HTTP_404_NOT_FOUND, NO_SITE)
    return scope


@dataclass(frozen=True, slots=True)
class Context:
    """What every route here needs: the request, its reads and who asks."""

    request: Request
    session: Session
    influx: InfluxClient
    settings: Settings
    caller: Caller

    @property
    def locale(self) -> str:
        return self.caller.user.locale

    @property
    def formats(self) -> Formats:
        return Formats(self.locale, ZoneInfo(self.settings.timezone))

    def area_report(self, area_id: str, month: str | None) -> MonthlyReport:
        scope = _area_scope(self.session, reach_of(self.session, self.caller), area_id)
        chosen = _month(month, self.settings)
        window = _window(self.settings, self.influx, chosen, "1d")
        report = build_report(self.influx, self.session, scope, window, list_sites=True)
        return monthly(chosen, report)

    def site_report(self, site_id: str, month: str | None) -> MonthlyReport:
        scope = _site_scope(self.session, reach_of(self.session, self.caller), site_id)
        site_type = SiteType(scope.sites[0].site_type)
        chosen = _month(month, self.settings)
        window = _window(self.settings, self.influx, chosen, "1d")
        report = build_report(self.influx, self.session, scope, window, list_sites=False)
        # Its place among the city's sites of its type: the ranking the city publishes.
        city = reads.type_scope(self.session, site_type.value)
        ranking = build_ranking(
            self.influx,
            self.session,
            city,
            _window(self.settings, self.influx, chosen, None),
            site_type,
        )
        rank = next((row.rank for row in ranking.items if row.id == site_id), None)
        place = Place(rank=rank, ranked=len(ranking.items))
        return monthly(chosen, report, site_type=site_type, place=place)

    def page(self, found: MonthlyReport, files: str) -> Response:
        gettext, fmt = translations(self.locale).gettext, self.formats
        return render(
            self.request,
            "report.html",
            locale=self.locale,
            me=self.caller,
            r=found,
            title=report_title(found, gettext, fmt),
            period=period_text(found.report, gettext, fmt),
            rule=rule_text(found.rule, gettext, fmt),
            place=place_text(found, gettext, fmt),
            figures=FIGURES,
            parts=PARTS,
            files=files,
            month_value=found.month.strftime("%Y-%m"),
            reason=lambda row: not_ranked_reason(row, gettext, fmt),
        )

    def download(self, found: MonthlyReport, kind: FileKind) -> Response:
        gettext, fmt = translations(self.locale).gettext, self.formats
        if kind == "pdf":
            body = report_pdf(found, gettext, fmt)
        elif kind == "csv":
            body = report_csv(found, gettext, fmt)
        else:
            body = report_xlsx(found, gettext, fmt)
        subject = found.report.subject
        month = found.month.strftime("%Y-%m")
        name = report_title(found, gettext, fmt)
        disposition = (
            f'attachment; filename="binwatch-{subject.id}-{month}.{kind}"; '
            f"filename*=UTF-8''{quote(f'{name}.{kind}')}"
        )
        return Response(
            body,
            media_type=MEDIA_TYPES[kind],
            headers={"Content-Disposition": disposition, "Cache-Control": "no-store"},
        )


def _context(
    request: Request,
    session: SessionDep,
    influx: InfluxDep,
    settings: SettingsDep,
    caller: CallerDep,
) -> Context:
    return Context(request, session, influx, settings, caller)


ContextDep = Annotated[Context, Depends(_context)]


@router.get("/reports", dependencies=[CONSOLE_GRID])
def my_report(session: SessionDep, caller: CallerDep) -> Response:
    """The report of the user's own area: the city for an admin."""
    home = reach_of(session, caller).home
    return RedirectResponse(f"{PREFIX}/reports/areas/{home}", status.HTTP_303_SEE_OTHER)


@router.get("/reports/areas/{area_id}", dependencies=[CONSOLE_GRID])
def area_report_page(area_id: AreaId, context: ContextDep, month: str | None = None) -> Response:
    """An area's monthly report, printable, with each site type's ranking."""
    found = context.area_report(area_id, month)
    return context.page(found, f"{PREFIX}/reports/areas/{area_id}")


@router.get("/reports/areas/{area_id}/{kind}", dependencies=[CONSOLE_GRID])
def area_report_file(
    area_id: AreaId, kind: FileKind, context: ContextDep, month: str | None = None
) -> Response:
    """An area's monthly report as PDF, CSV (Excel) or .xlsx."""
    return context.download(context.area_report(area_id, month), kind)


@router.get("/reports/sites/{site_id}", dependencies=[CONSOLE_GRID])
def site_report_page(site_id: SiteId, context: ContextDep, month: str | None = None) -> Response:
    """A site's monthly report, printable, with its place in its type's ranking."""
    found = context.site_report(site_id, month)
    return context.page(found, f"{PREFIX}/reports/sites/{site_id}")


@router.get("/reports/sites/{site_id}/{kind}", dependencies=[CONSOLE_GRID])
def site_report_file(
    site_id: SiteId, kind: FileKind, context: ContextDep, month: str | None = None
) -> Response:
    """A site's monthly report as PDF, CSV (Excel) or .xlsx."""
    return context.download(context.site_report(site_id, month), kind)


@router.get("/rankings", dependencies=[CONSOLE_GRID])
def rankings_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerDep,
    site_type: SiteType = SiteType.compound,
    month: str | None = None,
    area: Annotated[str | None, Query(pattern=ID_REGEX)] = None,
) -> Response:
    """The sites of a type in the user's area (or `area` under it), ranked over a month, with
    how each score is made and the sites without enough evidence apart. The ranking is
    remembered for a few seconds, as the API's are (docs/api.md), after the reach check."""
    reach = reach_of(session, caller)
    area_id = area or reach.home
    subject = _area_scope(session, reach, area_id).subject
    chosen = _month(month, settings)

    def build(influx: InfluxClient, session: Session, window: ReportWindow) -> Ranking:
        scope = reads.area_scope(session, area_id)
        of_type = [site for site in scope.sites if site.site_type == site_type.value]
        typed = reads.Scope(scope.subject, of_type, scope.tag, scope.value)
        return build_ranking(influx, session, typed, window, site_type)

    key = ("console-ranking", area_id, site_type)
    span = _span(settings, chosen, None)
    ranking = remembered_on_page(request, session, key, span, build)
    locale = caller.user.locale
    fmt = Formats(locale, ZoneInfo(settings.timezone))
    gettext = translations(locale).gettext
    return render(
        request,
        "rankings.html",
        locale=locale,
        me=caller,
        ranking=ranking,
        subject=subject,
        site_types=list(SiteType),
        chosen_type=site_type,
        month=chosen,
        month_value=chosen.strftime("%Y-%m"),
        area=area,
        rule=rule_text(ranking.rule, gettext, fmt),
        parts=PARTS,
        reason=lambda row: not_ranked_reason(row, gettext, fmt),
    )
