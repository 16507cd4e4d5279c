"""What the collection routes accept and return (the OpenAPI contract of `/api/v1/collections`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.schemas import ID_REGEX, Page
from collection.lifecycle import Status
from collection.models import CollectionRequest
from collection.rules import Rule
from core.printable import check_text
from core.times import UtcTime
from devices.contract import Stream

Id = Annotated[str, Field(pattern=ID_REGEX)]
Note = Annotated[str, Field(max_length=1000), AfterValidator(check_text)]


class ManualRequest(BaseModel):
    """Ask for a bin to be emptied, e.g. a property manager who sees what the sensor does not.
    The audit trail names the calling key; `reason` is the note."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"bin_id": "b-17", "reason": "bags beside the bin"}]},
    )

    bin_id: Id
    reason: Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(check_text)]


class OperatorAction(BaseModel):
    """An operator acknowledging or completing its own request. An operator's API key acts only
    as its own company (`operator_id` must be the key's operator, and the request assigned to it:
    403 otherwise); an admin key may act for any operator. The audit trail names the calling key."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"operator_id": "op-green", "note": "crew 3 on the way"}]},
    )

    operator_id: Id
    note: Note = ""


class CancelAction(BaseModel):
    """City staff withdrawing a request; the audit trail names the calling key, `note` why."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"note": "raised twice by mistake"}]}
    )

    note: Note = ""


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class EventOut(_Out):
    """One entry of the audit trail; `from_status` is null for the creation. On an escalation,
    `webhook_*` say whether the area contact's webhook got it: attempts so far, when it was
    delivered, and when the next attempt is due (null once delivered or given up; the note
    says which). Transitions, and escalations without a webhook, have 0 and nulls. A `report`
    is a crew's word that changes no status: it could not empty the bin, and why (`note`)."""

    at: UtcTime
    actor: str
    kind: Literal["transition", "escalation", "report"]
    from_status: Status | None
    to_status: Status
    escalation_level: int | None
    note: str
    webhook_attempts: int
    webhook_delivered_at: UtcTime | None
    webhook_next_at: UtcTime | None


class Delivery(_Out):
    """How the dispatch reached the operator: the broker's PUBACK, webhook attempts and the
    last error (`gave up after …` once the webhook attempts are spent)."""

    published_at: UtcTime | None
    webhook_attempts: int
    webhook_delivered_at: UtcTime | None
    webhook_next_at: UtcTime | None
    error: str | None


class CollectionOut(_Out):
    id: int
    bin_id: str
    site_id: str
    operator_id: str
    stream: Stream
    rule: Rule
    reason: str
    status: Status
    created_at: UtcTime
    due_at: UtcTime
    updated_at: UtcTime
    trigger_fill_pct: float | None
    completed_at: UtcTime | None
    completed_fill_pct: float | None
    escalation_level: int
    escalated_at: UtcTime | None
    delivery: Delivery

    @classmethod
    def of(cls, request: CollectionRequest) -> CollectionOut:
        return cls.model_validate(_fields(request))


class CollectionDetail(CollectionOut):
    """A request with its whole audit trail, and the escalations among it on their own."""

    events: list[EventOut]
    escalations: list[EventOut]

    @classmethod
    def of_request(cls, request: CollectionRequest) -> CollectionDetail:
        events = [EventOut.model_validate(e) for e in request.events]
        return cls.model_validate(
            {
                **_fields(request),
                "events": events,
                "escalations": [e for e in events if e.kind == "escalation"],
            }
        )


class CollectionPage(Page[CollectionOut]):
    """A page of collection requests."""


def _fields(request: CollectionRequest) -> dict[str, object]:
    columns = {c.key: getattr(request, c.key) for c in request.__table__.columns}
    columns["delivery"] = Delivery(
        published_at=request.published_at,
        webhook_attempts=request.webhook_attempts,
        webhook_delivered_at=request.webhook_delivered_at,
        webhook_next_at=request.webhook_next_at,
        error=request.dispatch_error,
    )
    return columns
