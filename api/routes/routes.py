"""An operator's planned routes of the day: all its vehicles', one vehicle's, and a re-plan on
request (the whole remaining day, or one urgent request inserted into the plan in force).

Scoped like the operator's compliance report: an operator key reads and re-plans only its own
company's routes (another's answer exactly as a missing one), admins any; a crew key reads
only its own vehicle's route (any other vehicle's, or another company's, answers as missing).
A new plan is stored here and published by the collector (MQTT, webhook) on its next tick."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.auth import Scope, ScopeDep, allow
from api.deps import InfluxDep, SessionDep, SettingsDep
from api.routes.collections import Now
from api.schemas import ID_REGEX
from collection import plans
from core.errors import NotFound
from core.settings import Settings
from devices.messages import RoutesPlanned
from devices.models import MAX_ROW_ID, Operator, Vehicle
from security.keys import ApiRole

router = APIRouter(prefix="/operators/{operator_id}/routes", tags=["routes"])

OperatorId = Annotated[str, Path(pattern=ID_REGEX, description="an operator id")]
VehicleId = Annotated[str, Path(pattern=ID_REGEX, description="a vehicle id")]
Day = Annotated[
    date | None, Query(alias="date", description="the local day, YYYY-MM-DD (default: today)")
]
_OPERATORS = allow(ApiRole.admin, ApiRole.operator)
_VEHICLE_READERS = allow(ApiRole.admin, ApiRole.operator, ApiRole.crew)


class Replan(BaseModel):
    """Without `request_id`: plan the rest of the day again from the waiting requests. With
    it: insert that urgent request into the best vehicle's remaining route, leaving every
    stop already done or reached where it is."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"request_id": 42}]})
    request_id: int | None = Field(None, ge=1, le=MAX_ROW_ID)


def own_operator(caller: Scope, session: Session, operator_id: str) -> None:
    """Another company's routes answer as a missing operator's (the console's too)."""
    mine = caller.is_admin or caller.principal.operator_id == operator_id
    if not mine or session.get(Operator, operator_id) is None:
        raise NotFound(f"no operator with id {operator_id!r}")


def _day(day: date | None, settings: SettingsDep, now: datetime) -> date:
    return day or local_day(settings, now)


def local_day(settings: Settings, now: datetime) -> date:
    """Today in the city's zone: the day a plan is for unless one is asked for."""
    return now.astimezone(ZoneInfo(settings.timezone)).date()


@router.get("", response_model=RoutesPlanned, dependencies=[_OPERATORS])
def day_routes(
    operator_id: OperatorId,
    caller: ScopeDep,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    day: Day = None,
) -> RoutesPlanned:
    """The plan in force for the day: every vehicle's stops, and the requests that fit no route."""
    own_operator(caller, session, operator_id)
    plan = plans.plan_or_404(session, operator_id, _day(day, settings, now))
    return plans.routes_message(plan)


@router.get("/{vehicle_id}", response_model=RoutesPlanned, dependencies=[_VEHICLE_READERS])
def vehicle_route(
    operator_id: OperatorId,
    vehicle_id: VehicleId,
    caller: ScopeDep,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
    day: Day = None,
) -> RoutesPlanned:
    """One vehicle's stops in the plan in force for the day."""
    if caller.principal.role is ApiRole.crew:
        crews = (
            session.get(Vehicle, vehicle_id) if vehicle_id == caller.principal.vehicle_id else None
        )
        if crews is None or crews.operator_id != operator_id:
            raise NotFound(f"no operator with id {operator_id!r}")
    else:
        own_operator(caller, session, operator_id)
    plan = plans.plan_or_404(session, operator_id, _day(day, settings, now))
    plans.vehicle_stops(plan, vehicle_id)
    return plans.routes_message(plan, vehicle_id)


@router.post(
    "",
    response_model=RoutesPlanned,
    status_code=status.HTTP_201_CREATED,
    dependencies=[_OPERATORS],
)
def replan(
    operator_id: OperatorId,
    body: Replan,
    caller: ScopeDep,
    session: SessionDep,
    settings: SettingsDep,
    influx: InfluxDep,
    now: Now,
    day: Day = None,
) -> RoutesPlanned:
    """Plan the day again (from now: waiting requests, and bins forecast over their threshold
    before the next shift), or insert one urgent request; the new version is in force."""
    own_operator(caller, session, operator_id)
    plan = plans.replan(
        session, influx, operator_id, _day(day, settings, now), settings=settings, now=now,
        actor=caller.principal.actor, request_id=body.request_id,
    )  # fmt: skip
    return plans.routes_message(plan)
