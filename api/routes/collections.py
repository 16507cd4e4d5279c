"""Collection requests: raise one by hand, list and read them with their audit trail, and the
operator's acknowledge / complete (a 409 that says why when it is not theirs or not the time).

Roles arrive with issue 7: until then the actor is whoever the body names, and it is recorded
as given."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from sqlalchemy.orm import Session

from api.collection_schemas import (
    CancelAction,
    CollectionDetail,
    CollectionOut,
    CollectionPage,
    ManualRequest,
    OperatorAction,
)
from api.deps import SessionDep, SettingsDep
from api.schemas import ID_REGEX, TimeParam
from binwatch.errors import InvalidRequest
from collection import store
from collection.lifecycle import Actor, Role, Status, TransitionRefused
from collection.rules import Policy, Rule

router = APIRouter(prefix="/collections", tags=["collections"])

MAX_PAGE = 500
MAX_OFFSET = 1_000_000_000  # as for sites: beyond any fleet, inside every integer column


def current_time() -> datetime:
    """The API's clock, to the millisecond its answers show (so a time read back from a
    response is the stored one); tests override this dependency to drive time."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


Now = Annotated[datetime, Depends(current_time)]
RequestId = Annotated[int, Path(ge=1, le=2**62, description="a collection request id")]
_CONFLICT: dict[int | str, dict[str, Any]] = {
    status.HTTP_409_CONFLICT: {"description": "not this operator's, or the wrong state"}
}


@router.post(
    "",
    response_model=CollectionDetail,
    status_code=status.HTTP_201_CREATED,
    responses=_CONFLICT,
)
def create(
    body: ManualRequest, session: SessionDep, settings: SettingsDep, now: Now
) -> CollectionDetail:
    """Ask for a bin to be emptied; 409 when the bin already has a request waiting for a crew."""
    opened = store.open_request(
        session,
        bin_id=body.bin_id,
        rule=Rule.manual,
        reason=body.reason,
        now=now,
        policy=Policy.of(settings),
        actor=Actor(Role.admin, body.requested_by),
    )
    if not opened.created:
        existing = opened.request
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"bin {body.bin_id!r} already has request {existing.id} ({existing.status})",
        )
    return CollectionDetail.of_request(store.get_request(session, opened.request.id))


@router.get("", response_model=CollectionPage)
def list_requests(
    session: SessionDep,
    status_: Annotated[Status | None, Query(alias="status", description="only this status")] = None,
    site_id: Annotated[str | None, Query(pattern=ID_REGEX, description="only this site")] = None,
    operator_id: Annotated[
        str | None, Query(pattern=ID_REGEX, description="only this operator's")
    ] = None,
    bin_id: Annotated[str | None, Query(pattern=ID_REGEX, description="only this bin")] = None,
    start: Annotated[TimeParam, Query(description="created at or after (RFC 3339)")] = None,
    end: Annotated[TimeParam, Query(description="created before (RFC 3339)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="requests to skip")] = 0,
) -> CollectionPage:
    """A page of requests, newest first, with the total matching the filters."""
    if start is not None and end is not None and start >= end:
        raise InvalidRequest("start must be before end")
    page, total = store.list_requests(
        session,
        status=status_,
        site_id=site_id,
        operator_id=operator_id,
        bin_id=bin_id,
        start=start,
        end=end,
        limit=limit,
        offset=offset,
    )
    items = [CollectionOut.of(request) for request in page]
    return CollectionPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{request_id}", response_model=CollectionDetail)
def get_request(request_id: RequestId, session: SessionDep) -> CollectionDetail:
    """A request with its audit trail (every transition and escalation, with time and actor)."""
    return CollectionDetail.of_request(store.get_request(session, request_id))


@router.post("/{request_id}/ack", response_model=CollectionDetail, responses=_CONFLICT)
def acknowledge(
    request_id: RequestId, body: OperatorAction, session: SessionDep, now: Now
) -> CollectionDetail:
    """The operator has the request and a crew will come."""
    actor = Actor(Role.operator, body.operator_id)
    return _move(session, request_id, Status.acknowledged, actor, now, body.note)


@router.post("/{request_id}/complete", response_model=CollectionDetail, responses=_CONFLICT)
def complete(
    request_id: RequestId, body: OperatorAction, session: SessionDep, now: Now
) -> CollectionDetail:
    """The crew emptied the bin; the next readings verify it (or dispute it)."""
    actor = Actor(Role.operator, body.operator_id)
    return _move(session, request_id, Status.completed, actor, now, body.note, completed_at=now)


@router.post("/{request_id}/cancel", response_model=CollectionDetail, responses=_CONFLICT)
def cancel(
    request_id: RequestId, body: CancelAction, session: SessionDep, now: Now
) -> CollectionDetail:
    """City staff withdraw a request that still waits for a crew."""
    return _move(
        session, request_id, Status.cancelled, Actor(Role.admin, body.actor), now, body.note
    )


def _move(
    session: Session,
    request_id: int,
    to: Status,
    actor: Actor,
    now: datetime,
    note: str,
    **changes: object,
) -> CollectionDetail:
    try:
        store.transition(session, request_id, to, actor=actor, now=now, note=note, **changes)
    except TransitionRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return CollectionDetail.of_request(store.get_request(session, request_id))
