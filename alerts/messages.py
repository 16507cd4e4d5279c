"""What alert deliveries carry: one JSON body per notice (raised, cleared), the same on MQTT
and to every webhook, so a recipient keys on `alert_id` + `notice` to drop a repeat."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from alerts.models import Alert
from devices.contract import Timestamp


def alert_topic(prefix: str, site_id: str) -> str:
    """`{prefix}/alerts/{site_id}`: everyone concerned with a site subscribes to one topic."""
    return f"{prefix}/alerts/{site_id}"


class AlertNotice(BaseModel):
    alert_id: int
    notice: Literal["raised", "acknowledged", "cleared"]
    type: str
    severity: str
    state: str
    bin_id: str
    site_id: str
    detail: str
    # The detail as a message id and its arguments (core/reasons.py); null for an alert raised
    # before details were structured, which only has `detail`.
    detail_msg: dict[str, Any] | None = None
    started_at: Timestamp
    cleared_at: Timestamp | None
    duration_s: float | None
    recipient: str

    @classmethod
    def of(cls, alert: Alert, *, notice: str, recipient: str) -> AlertNotice:
        return cls.model_validate(
            {
                "alert_id": alert.id,
                "notice": notice,
                "type": alert.type,
                "severity": alert.severity,
                "state": alert.state,
                "bin_id": alert.bin_id,
                "site_id": alert.site_id,
                "detail": alert.detail,
                "detail_msg": alert.detail_msg,
                "started_at": alert.started_at,
                "cleared_at": alert.cleared_at,
                "duration_s": alert.duration_s,
                "recipient": recipient,
            }
        )
