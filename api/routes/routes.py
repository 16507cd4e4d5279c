"""An operator's planned routes of the day: all its vehicles', one vehicle's, and a re-plan on
request (the whole remaining day, or one urgent request inserted into the plan in force).

Scoped like the operator's compliance report: an operator key reads and re-plans only its own
company's routes (another's answer exactly as a missing one), admins any; a crew key reads
only its own vehicle's route (any other vehicle's, or another company's, answers as missing).
A new plan is stored here and published by the collector (MQTT, webhook) on its next tick.

A crew's tap on a stop (emptied, or could not empty with a reason) goes through
collection/crew.py, the same functions as the console's crew screen: a crew key taps only its
own vehicle's stops, an operator key (or admin) taps for any of the company's vehicles. Its
photo follows it in a PUT of the image itself (the tap stays plain JSON like every other body
here, and a photo the store could not take is sent again alone, the tap already recorded)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.auth import Scope, ScopeDep, allow
from api.deps import InfluxDep, PhotosDep, SessionDep, SettingsDep, release
from api.routes.collections import Now
from api.schemas import ID_REGEX
from collection import crew, plans
from collection.models import TAP_REASONS
from collection.proof import MEDIA_TYPES, PhotoRejected, keep_photo
from core.errors import NotFound
from core.settings import Settings
from devices.messages import RoutesPlanned
from devices.models import MAX_ROW_ID, Operator, Vehicle
from security.keys import ApiRole

router = APIRouter(prefix="/operators/{operator_id}/routes", tags=["routes"])

OperatorId = Annotated[str, Path(pattern=ID_REGEX, description="an operator id")]
VehicleId = Annotated[str, Path(pattern=ID_REGEX, description="a vehicle id")]
StopId = Annotated[
    int, Path(ge=1, le=MAX_ROW_ID, description="a stop of the vehicle's route (`stop_id`)")
]
Day = Annotated[
    date | None, Query(alias="date", description="the local day, YYYY-MM-DD (default: today)")
]
TapId = Annotated[UUID, Path(description="the tap's `tap_id`, as it was sent with the tap")]
PHOTO_PATH = "/{vehicle_id}/stops/{stop_id}/taps/{tap_id}/photo"
_OPERATORS = allow(ApiRole.admin, ApiRole.operator)
_VEHICLE_READERS = allow(ApiRole.admin, ApiRole.operator, ApiRole.crew)


class Replan(BaseModel):
    """Without `request_id`: plan the rest of the day again from the waiting requests. With
    it: insert that urgent request into the best vehicle's remaining route, leaving every
    stop already done or reached where it is."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"request_id": 42}]})
    request_id: int | None = Field(None, ge=1, le=MAX_ROW_ID)


class TapBody(BaseModel):
    """A crew's tap on a stop: `tap_id` is made by the phone (a UUID: a tap sent again with the
    same id is one action), `action` what was done, `reason` why not (could_not_empty only)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"tap_id": "5b0e7a52-8d5f-4e0b-9a3c-2f1d6c7e8a90", "action": "emptied"},
                {
                    "tap_id": "0c7f3f1e-1b7e-4f43-a5b2-7f4c9d2e6b15",
                    "action": "could_not_empty",
                    "reason": "blocked",
                },
            ]
        },
    )
    tap_id: UUID
    action: Literal["emptied", "could_not_empty"]
    reason: str | None = Field(
        None, description=f"with could_not_empty, one of: {', '.join(TAP_REASONS)}"
    )


class TapAnswer(BaseModel):
    """What the tap did: `completed` (its request, through the lifecycle), `reported` (could
    not empty: the dispatcher decides), `noted` (a stop without a request); `repeated` when
    this tap id was taken before and nothing was done again."""

    tap_id: UUID
    stop_id: int
    outcome: str
    repeated: bool


class PhotoAnswer(BaseModel):
    """The photo is the tap's; `repeated` when the same photo had been sent before."""

    tap_id: UUID
    repeated: bool


async def photo_body(request: Request) -> bytes:
    """The request body, whole: the photo itself (the size cap around the app bounds it)."""
    return await request.body()


# The body of the photo's PUT in the OpenAPI document: the image itself, no JSON around it.
_IMAGE_BODY = {
    "required": True,
    "content": {
        media: {"schema": {"type": "string", "format": "binary"}} for media in MEDIA_TYPES.values()
    },
}


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
        own_vehicle(caller, session, operator_id, vehicle_id)
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


@router.post(
    "/{vehicle_id}/stops/{stop_id}/taps",
    response_model=TapAnswer,
    dependencies=[_VEHICLE_READERS],
    responses={status.HTTP_409_CONFLICT: {"description": "the stop's request refused the tap"}},
)
def tap(
    operator_id: OperatorId,
    vehicle_id: VehicleId,
    stop_id: StopId,
    body: TapBody,
    caller: ScopeDep,
    session: SessionDep,
    settings: SettingsDep,
    now: Now,
) -> TapAnswer:
    """A crew's tap on a stop of today's route, as on the crew's screen: emptied completes the
    stop's request, could_not_empty (with a reason) reports it; a repeated tap_id answers what
    the first copy did (`repeated`), a tap the request's state refuses is a 409 (again too)."""
    crew_vehicle = own_vehicle(caller, session, operator_id, vehicle_id)
    taken = crew.Tap.of(
        str(body.tap_id),
        crew.NOT_EMPTIED if body.action == "could_not_empty" else crew.EMPTIED,
        body.reason or "",
    )
    stop = crew.crew_stop(session, crew_vehicle, stop_id, local_day(settings, now))
    tapped = crew.taken(session, taken, stop) or crew.take(
        session, taken, stop, crew_vehicle=crew_vehicle, actor_key=caller.principal.actor, now=now
    )
    row = tapped.tap
    if row.outcome == "refused":
        raise HTTPException(status.HTTP_409_CONFLICT, f"tap {row.id} refused: {row.refusal}")
    return TapAnswer(
        tap_id=UUID(row.id), stop_id=row.stop_id, outcome=row.outcome, repeated=tapped.repeated
    )


@router.put(
    PHOTO_PATH,
    response_model=PhotoAnswer,
    dependencies=[_VEHICLE_READERS],
    responses={status.HTTP_409_CONFLICT: {"description": "the tap has another photo already"}},
    openapi_extra={"requestBody": _IMAGE_BODY},
)
def tap_photo(
    operator_id: OperatorId,
    vehicle_id: VehicleId,
    stop_id: StopId,
    tap_id: TapId,
    photo: Annotated[bytes, Depends(photo_body)],
    caller: ScopeDep,
    session: SessionDep,
    settings: SettingsDep,
    photos: PhotosDep,
    now: Now,
) -> PhotoAnswer:
    """The proof-of-service photo of a tap taken before (JPEG or PNG, known by its bytes, at
    most BINWATCH_ROUTE_PHOTO_MAX_KB): kept once; the same photo again answers `repeated`,
    another one is a 409 (a tap's photo is its evidence, never replaced)."""
    row = crew.tap_on(
        session, tap_id, stop_id, own_vehicle(caller, session, operator_id, vehicle_id)
    )
    release(session)  # a slow store must not hold a registry connection
    if row.photo is None:
        crew.photo_by_its_taker(row, caller.principal.actor)
        crew.photo_in_time(row, now, late=timedelta(hours=settings.route.photo_late_h))
        try:
            key = keep_photo(
                photos, photo, tap_id=tap_id, day=local_day(settings, row.at),
                max_bytes=settings.route.photo_max_kb * 1024,
            )  # fmt: skip
        except PhotoRejected as exc:
            too_big = exc.code == "photo_too_big"
            code = status.HTTP_413_CONTENT_TOO_LARGE if too_big else 422
            raise HTTPException(code, str(exc)) from None
        if crew.attach_photo(session, row, key):
            return PhotoAnswer(tap_id=tap_id, repeated=False)
    if row.photo is None or photos.get(row.photo) != photo:
        raise HTTPException(status.HTTP_409_CONFLICT, f"tap {tap_id} has another photo already")
    return PhotoAnswer(tap_id=tap_id, repeated=True)


def own_vehicle(caller: Scope, session: Session, operator_id: str, vehicle_id: str) -> Vehicle:
    """The vehicle a crew key acts for (only its own), or an operator key or admin for (any of
    the company's); another vehicle or company answers as a missing operator, for a crew key."""
    if caller.principal.role is ApiRole.crew:
        mine = vehicle_id == caller.principal.vehicle_id
        found = session.get(Vehicle, vehicle_id) if mine else None
        if found is None or found.operator_id != operator_id:
            raise NotFound(f"no operator with id {operator_id!r}")
        return found
    own_operator(caller, session, operator_id)
    found = session.get(Vehicle, vehicle_id)
    if found is None or found.operator_id != operator_id:
        raise NotFound(f"no vehicle with id {vehicle_id!r}")
    return found
