"""What collection sends to operators and to the grid, as wire models both sides use: the
collector serialises them and the simulator's crews parse them (so nobody writes this JSON by
hand). Times are RFC 3339 UTC strings."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from collection.models import CollectionRequest


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
    created_at: datetime
    due_at: datetime

    @classmethod
    def of(cls, request: CollectionRequest) -> Dispatch:
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
    created_at: datetime
    due_at: datetime

    @classmethod
    def of(
        cls, request: CollectionRequest, *, level: int, area_id: str, status: str | None = None
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
