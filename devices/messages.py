"""What collection sends to operators and to the grid, as wire models both sides use: the
collector serialises them and the simulator's crews parse them (so nobody writes this JSON by
hand). Times are RFC 3339 UTC strings with milliseconds (`core.times.UtcTime`), as the API's:
the routes the API answers are this same model.

They belong to the device contract, below the domains, so the simulator parses them without
collection's database models; `of` takes anything shaped like a request (`RequestFacts`), in
practice collection's `CollectionRequest`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from core.times import UtcTime


class RequestFacts(Protocol):
    """What a dispatch or an escalation says about a collection request."""

    @property
    def id(self) -> int: ...
    @property
    def bin_id(self) -> str: ...
    @property
    def site_id(self) -> str: ...
    @property
    def operator_id(self) -> str: ...
    @property
    def stream(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def trigger_fill_pct(self) -> float | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def due_at(self) -> datetime: ...


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dispatch(_Message):
    """On `{prefix}/operators/{operator_id}/dispatch` (QoS 1) and POSTed to the operator's
    webhook: empty this bin by `due_at`. May arrive more than once: key on `request_id`."""

    type: Literal["collection.dispatch"] = "collection.dispatch"
    request_id: int
    bin_id: str
    site_id: str
    operator_id: str
    stream: str
    rule: str
    reason: str
    fill_pct: float | None
    created_at: UtcTime
    due_at: UtcTime

    @classmethod
    def of(cls, request: RequestFacts) -> Dispatch:
        return cls(
            request_id=request.id,
            bin_id=request.bin_id,
            site_id=request.site_id,
            operator_id=request.operator_id,
            stream=request.stream,
            rule=request.rule,
            reason=request.reason,
            fill_pct=request.trigger_fill_pct,
            created_at=request.created_at,
            due_at=request.due_at,
        )


class Escalation(_Message):
    """To an area's contact when a request is overdue: level 1 the community, level 2 the
    street's city-management squad."""

    type: Literal["collection.escalation"] = "collection.escalation"
    level: int
    area_id: str
    request_id: int
    bin_id: str
    site_id: str
    operator_id: str
    status: str
    created_at: UtcTime
    due_at: UtcTime

    @classmethod
    def of(
        cls, request: RequestFacts, *, level: int, area_id: str, status: str | None = None
    ) -> Escalation:
        """`status`: the request's status when it escalated (a retried webhook sends the body
        of the first attempt), by default its status now."""
        return cls(
            level=level,
            area_id=area_id,
            request_id=request.id,
            bin_id=request.bin_id,
            site_id=request.site_id,
            operator_id=request.operator_id,
            status=status or request.status,
            created_at=request.created_at,
            due_at=request.due_at,
        )


class PlannedStop(_Message):
    """A stop of a vehicle's route: `kind` start, job (a bin to empty), break, unload (at the
    depot, ending load `trip`) or end; `load_l`/`load_kg` on board after it; `distance_m`
    driven since the start; `stop_id` is the stop's id, what a crew's tap names
    (`POST /api/v1/operators/{operator_id}/routes/{vehicle_id}/stops/{stop_id}/taps`)."""

    stop_id: int
    position: int
    trip: int
    kind: str
    request_id: int | None
    bin_id: str | None
    site_id: str | None
    stream: str | None
    lat: float
    lon: float
    arrival_at: UtcTime
    departure_at: UtcTime
    due_at: UtcTime | None
    distance_m: int
    load_l: float
    load_kg: float


class VehicleRoute(_Message):
    vehicle_id: str
    distance_m: int
    duration_s: int
    jobs: int
    stops: list[PlannedStop]


class UnassignedJob(_Message):
    """A request no route could take today, and why (it stays waiting for the next plan)."""

    request_id: int | None
    bin_id: str
    site_id: str
    stream: str
    reason: str


class RoutesPlanned(_Message):
    """On `{prefix}/operators/{operator_id}/routes` (QoS 1) and POSTed to the operator's
    webhook: the day's routes as planned (`version` grows with every re-plan of the day; the
    highest is in force). May arrive more than once: key on `day` and `version`."""

    type: Literal["collection.routes"] = "collection.routes"
    operator_id: str
    day: str
    version: int
    created_at: UtcTime
    note: str
    solver_ms: int
    vehicles: list[VehicleRoute]
    unassigned: list[UnassignedJob]
