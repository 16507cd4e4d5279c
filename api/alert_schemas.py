"""What the alert routes accept and return (the OpenAPI contract of `/api/v1/alerts`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from alerts.rules import AlertType, Severity
from api.schemas import Page
from core.printable import check_text
from core.times import UtcTime

AlertState = Literal["active", "acknowledged", "cleared"]


class AckRequest(BaseModel):
    """A person taking an alert on. The alert records the calling key as who acknowledged it
    (role, key id and name); anything about the person or the plan goes into `note`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"note": "Wang from the crew checks the tilt sensor"}]},
    )

    note: Annotated[str, Field(max_length=1000), AfterValidator(check_text)] = ""


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AlertOut(_Out):
    id: int
    bin_id: str
    site_id: str
    type: AlertType
    severity: Severity
    state: AlertState
    detail: str
    started_at: UtcTime
    last_seen_at: UtcTime
    acknowledged_at: UtcTime | None
    acknowledged_by: str | None
    cleared_at: UtcTime | None
    duration_s: float | None


class AlertEventOut(_Out):
    at: UtcTime
    kind: Literal["raised", "acknowledged", "cleared"]
    actor: str
    note: str


class DeliveryOut(_Out):
    notice: str
    recipient: str
    channel: Literal["mqtt", "webhook"]
    target: str
    attempts: int
    delivered_at: UtcTime | None
    error: str | None


class NotificationOut(_Out):
    """A message to a person's channel (WeCom, DingTalk, e-mail): never its URL or secret."""

    notice: str
    recipient: str
    channel: Literal["wecom", "dingtalk", "email"]
    contact: str
    locale: str
    attempts: int
    delivered_at: UtcTime | None
    next_at: UtcTime | None
    error: str | None


class AlertDetail(AlertOut):
    """An alert with its history and what reached whom."""

    events: list[AlertEventOut]
    deliveries: list[DeliveryOut]
    notifications: list[NotificationOut]


class AlertPage(Page[AlertOut]):
    """A page of alerts."""
