"""The dispatcher's screen (issue 16): an operator's routes of the day per vehicle, as lists and
on a map; its requests waiting for a crew and those overdue; the requests no route takes, why
(in the reader's language) and when they roll over; a re-plan button; and the operator's
scorecard against deadlines. For the operator role (its own company) and the admin (any, picked
from the operators' list).

Everything shown is what the API computes: the plan in force and the re-plan are
`collection.plans` (`plan_or_404`, `routes_message`, `replan`: what
`/api/v1/operators/{id}/routes` reads and posts), the scope check is the API's
(`api.routes.routes.own_operator`: another company's operator is the same 404 as a missing
one), the overdue requests are the grid's (`drilldown.overdue`) and the scorecard is the
operator's compliance report (`api.routes.compliance.build_report` over the operator's scope,
as `GET /api/v1/compliance/operators/{id}` answers it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Path, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from api.auth import Scope
from api.console.auth import (
    PREFIX,
    Caller,
    CallerDep,
    PageError,
    PostCallerDep,
    ScopeDep,
    console_allow,
)
from api.console.drilldown import overdue
from api.console.i18n import N_
from api.console.map import tile_xy
from api.console.pages import render
from api.deps import InfluxDep, SessionDep, SettingsDep
from api.routes.collections import Now
from api.routes.compliance import build_report, report_window
from api.routes.routes import local_day, own_operator
from api.schemas import ID_REGEX
from collection import plans
from collection import store as collection_store
from collection.lifecycle import OPEN
from collection.models import OPEN_STATUSES, CollectionRequest, RoutePlan
from compliance import queries as reads
from compliance.schemas import ComplianceReport
from core.errors import InvalidRequest, NotFound, SinkError
from core.influx import InfluxClient
from core.reasons import MESSAGES, Reason
from core.settings import Settings
from devices import registry
from devices.messages import RoutesPlanned
from devices.models import MAX_ROW_ID, Operator
from security.keys import ApiRole

router = APIRouter(prefix=f"{PREFIX}/dispatch", include_in_schema=False)

DISPATCHERS: Any = console_allow(ApiRole.admin, ApiRole.operator)
OperatorId = Annotated[str, Path(pattern=ID_REGEX)]
SCORECARD_DAYS: Final = 30
REQUESTS_SHOWN: Final = 500  # per status; an operator's waiting requests are far fewer
NOTICES: Final = {
    "replanned": N_("The day was planned again."),
    "inserted": N_("The request was put into a route, or listed below if none can take it."),
}
# One colour per vehicle's line on the map (and its legend), told apart from the stream colours
# of the stops on it.
ROUTE_COLOURS: Final = ("#6a1b9a", "#ef6c00", "#00838f", "#ad1457", "#4e342e", "#283593")
# Reasons no later plan can change until the fleet file does (a vehicle for the stream, a
# bigger one); the others roll over to the next plan.
FLEET_BOUND: Final = frozenset({"route.no_carrier", "route.over_capacity"})


@dataclass(frozen=True, slots=True)
class Left:
    """A job no route takes: the stored item, its reason as a message (None for a plan from
    before the messages) and whether its request still waits for a crew."""

    item: dict[str, Any]
    reason: Reason | None
    waiting: bool

    @property
    def fleet_bound(self) -> bool:
        return self.reason is not None and self.reason.id in FLEET_BOUND


def _operator(scope: Scope, session: Session, operator_id: str) -> None:
    try:
        own_operator(scope, session, operator_id)
    except NotFound:
        raise PageError(status.HTTP_404_NOT_FOUND, N_("There is no such operator.")) from None


def _day(asked: str | None, settings: Settings, now: datetime) -> date:
    """The day asked for (YYYY-MM-DD), by default today in the city's zone."""
    if not asked:
        return local_day(settings, now)
    try:
        return date.fromisoformat(asked)
    except ValueError:
        raise PageError(
            status.HTTP_422_UNPROCESSABLE_CONTENT, N_("There is no such day: write YYYY-MM-DD.")
        ) from None


def _waiting(session: Session, operator_id: str) -> list[CollectionRequest]:
    found: list[CollectionRequest] = []
    for status_ in OPEN:
        page, _total, _more = collection_store.list_requests(
            session, status=status_, operator_id=operator_id, limit=REQUESTS_SHOWN
        )
        found += page
    return found


def _left(session: Session, plan: RoutePlan) -> list[Left]:
    out = []
    for item in plan.unassigned:
        request = (
            session.get(CollectionRequest, item["request_id"]) if item.get("request_id") else None
        )
        waiting = request is None or request.status in OPEN_STATUSES
        out.append(Left(item, Reason.load(item.get("reason_msg")), waiting))
    return out


def _next_shift(session: Session, operator_id: str, day: date, zone: ZoneInfo) -> datetime | None:
    try:
        return plans.next_shift(session, operator_id, day, zone)[0]
    except ValueError:  # no vehicles (any more): no next shift to name
        return None


def _scorecard(
    settings: Settings, influx: InfluxClient, session: Session, operator_id: str
) -> ComplianceReport | None:
    """The operator's report over the last 30 days up to the last whole hour (None when
    InfluxDB cannot answer: the rest of the page still helps)."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    try:
        window = report_window(
            settings, influx, start=end - timedelta(days=SCORECARD_DAYS), end=end
        )
        scope = reads.operator_scope(session, operator_id)  # as the API's operator report
        return build_report(influx, session, scope, window, list_sites=False)
    except SinkError:
        return None


def _map(
    routes: RoutesPlanned | None, names: dict[str, str], vehicles: dict[str, str]
) -> tuple[list[Any], list[Any]]:
    """What console-map.js draws: each vehicle's route as a line through its stops in order
    (named as the fleet names the vehicle), and its bins' stops as points (coloured by stream)."""
    lines: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    for number, vehicle in enumerate(routes.vehicles if routes else []):
        lines.append(
            {
                "name": vehicles.get(vehicle.vehicle_id, vehicle.vehicle_id),
                "colour": ROUTE_COLOURS[number % len(ROUTE_COLOURS)],
                "points": [tile_xy(s.lat, s.lon) for s in vehicle.stops],
            }
        )
        for stop in vehicle.stops:
            if stop.kind == "job" and stop.site_id is not None:
                x, y = tile_xy(stop.lat, stop.lon)
                name = names.get(stop.site_id, stop.site_id)
                points.append(
                    {
                        "id": stop.site_id,
                        "name": name,
                        "label": f"{vehicles.get(vehicle.vehicle_id, vehicle.vehicle_id)}"
                        f" · {stop.bin_id}",
                        "state": f"stream-{stop.stream}",
                        "x": x,
                        "y": y,
                    }
                )
    return lines, points


@dataclass(frozen=True, slots=True)
class DispatchView:
    request: Request
    session: Session
    influx: InfluxClient
    settings: Settings
    caller: Caller
    now: datetime

    def page(self, operator_id: str, day: date, *, notice: str | None = None) -> Response:
        session = self.session
        zone = ZoneInfo(self.settings.timezone)
        plan = plans.latest_plan(session, operator_id, day)
        routes = plans.routes_message(plan) if plan is not None else None
        left = _left(session, plan) if plan is not None else []
        waiting = _waiting(session, operator_id)
        now = self.now
        late = overdue(waiting, now)
        soon = sorted((r for r in waiting if r.due_at > now), key=lambda r: (r.due_at, r.id))
        site_ids = {r.site_id for r in waiting} | {str(u.item["site_id"]) for u in left}
        if routes is not None:
            site_ids |= {s.site_id for v in routes.vehicles for s in v.stops if s.site_id}
        names = registry.site_names(session, site_ids)
        # a vehicle as the fleet file names it (绿源压缩车1号), as the crew's screen does
        vehicles = {v.id: v.name for v in registry.vehicles(session)}
        lines, points = _map(routes, names, vehicles)
        planned = {  # request → the vehicle whose route holds it, by name
            s.request_id: vehicles.get(v.vehicle_id, v.vehicle_id)
            for v in (routes.vehicles if routes else [])
            for s in v.stops
            if s.request_id is not None
        }
        is_admin = self.caller.user.role == ApiRole.admin
        # A day without routes says why and what comes next, never a blank screen.
        empty = (
            None
            if routes is not None and routes.vehicles
            else plans.no_routes(session, operator_id, day, plan, settings=self.settings, now=now)
        )
        return render(
            self.request,
            "dispatch.html",
            locale=self.caller.user.locale,
            me=self.caller,
            operator=session.get_one(Operator, operator_id),
            operators=registry.operators(session) if is_admin else [],
            day=day,
            today=local_day(self.settings, now),
            plan=plan,
            routes=routes,
            empty=empty,
            now=now,
            left=left,
            next_shift=_next_shift(session, operator_id, day, zone) if plan else None,
            overdue=late,
            soon=soon,
            site_names=names,
            vehicle_names=vehicles,
            planned=planned,
            scorecard=_scorecard(self.settings, self.influx, session, operator_id),
            scorecard_days=SCORECARD_DAYS,
            lines=lines,
            points=points,
            notice=NOTICES.get(notice or ""),
            tile_url=self.settings.console.tile_url,
            tile_attribution=self.settings.console.tile_attribution,
        )


@router.get("", dependencies=[DISPATCHERS])
def dispatch_home(session: SessionDep, caller: CallerDep) -> Response:
    """The operator's own screen; for the admin the first operator's (others one click away)."""
    operator_id = caller.user.operator_id
    if operator_id is None:
        operators = registry.operators(session)
        if not operators:
            raise PageError(status.HTTP_404_NOT_FOUND, N_("There is no such operator."))
        operator_id = operators[0].id
    return RedirectResponse(f"{PREFIX}/dispatch/{operator_id}", status.HTTP_303_SEE_OTHER)


@router.get("/{operator_id}", dependencies=[DISPATCHERS])
def dispatch_page(
    operator_id: OperatorId,
    request: Request,
    session: SessionDep,
    influx: InfluxDep,
    settings: SettingsDep,
    caller: CallerDep,
    scope: ScopeDep,
    now: Now,
    day: Annotated[str | None, Query(alias="date")] = None,
    notice: str | None = None,
) -> Response:
    """The operator's routes of the day, waiting and overdue requests, scorecard."""
    _operator(scope, session, operator_id)
    view = DispatchView(request, session, influx, settings, caller, now)
    return view.page(operator_id, _day(day, settings, now), notice=notice)


def _request_id(value: str) -> int | None:
    if not value.strip():
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_ROW_ID:
        raise PageError(status.HTTP_422_UNPROCESSABLE_CONTENT, N_("There is no such request."))
    return number


@router.post("/{operator_id}/replan", dependencies=[DISPATCHERS])
def replan(
    operator_id: OperatorId,
    session: SessionDep,
    influx: InfluxDep,
    settings: SettingsDep,
    caller: PostCallerDep,
    scope: ScopeDep,
    now: Now,
    day: Annotated[str, Form(alias="date")] = "",
    request_id: Annotated[str, Form()] = "",
) -> Response:
    """Plan the day again, or insert one urgent request (the API's re-plan, as this user)."""
    _operator(scope, session, operator_id)
    when, urgent = _day(day, settings, now), _request_id(request_id)
    try:
        plans.replan(
            session, influx, operator_id, when, settings=settings, now=now,
            actor=caller.principal.actor, request_id=urgent,
        )  # fmt: skip
    except plans.DayNotPlannable:
        raise PageError(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            N_("Only today and the next %(days)s days can be planned."),
            days=str(plans.PLAN_AHEAD_DAYS),
        ) from None
    except plans.NoVehicles as exc:
        # The reason's English is its catalog msgid (core/reasons.py); its one argument is text.
        reason = exc.reason
        raise PageError(
            status.HTTP_422_UNPROCESSABLE_CONTENT, MESSAGES[reason.id].text, **reason.args
        ) from None
    except (NotFound, InvalidRequest):
        if urgent is None:
            raise  # a whole-day plan is refused only for want of vehicles (above)
        raise PageError(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            N_("Request %(id)s does not wait for a crew of this operator."),
            id=urgent,
        ) from None
    except SinkError:
        raise PageError(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            N_("The travel times cannot be read right now; the plan was not changed."),
        ) from None
    notice = "replanned" if urgent is None else "inserted"
    return RedirectResponse(
        f"{PREFIX}/dispatch/{operator_id}?date={when.isoformat()}&notice={notice}",
        status.HTTP_303_SEE_OTHER,
    )
