"""Collection requests: raise one by hand, list and read them with their audit trail, and the
operator's acknowledge / complete (a 409 that says why when it is not the time).

Managers raise requests for their sites; an operator key acts only for its own company, on its
own requests (403 otherwise); admins may act for anyone. The audit trail records the key too."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from sqlalchemy.orm import Session

from api.auth import ADMIN, EVERYONE, Scope, ScopeDep, allow
from api.collection_schemas import (
    CancelAction,
    CollectionDetail,
    CollectionOut,
    CollectionPage,
    ManualRequest,
    OperatorAction,
)
from api.deps import SessionDep, SettingsDep
from api.paging import After, next_after, read_cursor
from api.schemas import ID_REGEX, TimeParam
from collection import store
from collection.lifecycle import Actor, Role, Status, TransitionRefused
from collection.models import CollectionRequest
from collection.rules import Policy, Rule
from core.errors import InvalidRequest, NotAllowed, NotFound
from core.settings import Settings
from devices import registry
from devices.models import MAX_ROW_ID
from security.keys import ApiRole

router = APIRouter(prefix="/collections", tags=["collections"])

MAX_PAGE = 500
MAX_OFFSET = 1_000_000_000  # as for sites: beyond any fleet, inside every integer column


def current_time() -> datetime:
    """The API's clock, to the millisecond its answers show (so a time read back from a
    response is the stored one); tests override this dependency to drive time."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


Now = Annotated[datetime, Depends(current_time)]
RequestId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="a collection request id")]
_CONFLICT: dict[int | str, dict[str, Any]] = {
    status.HTTP_409_CONFLICT: {"description": "the wrong state for this action"}
}
_OPERATORS = allow(ApiRole.admin, ApiRole.operator)


@router.post(
    "",
    response_model=CollectionDetail,
    status_code=status.HTTP_201_CREATED,
    responses=_CONFLICT,
    dependencies=[allow(ApiRole.admin, ApiRole.manager)],
)
def create(
    body: ManualRequest, session: SessionDep, settings: SettingsDep, now: Now, caller: ScopeDep
) -> CollectionDetail:
    """Ask for a bin to be emptied; 409 when the bin already has a request waiting for a crew."""
    opened = open_manual(session, settings, now, caller, bin_id=body.bin_id, reason=body.reason)
    return CollectionDetail.of_request(store.get_request(session, opened.id))


def open_manual(
    session: Session, settings: Settings, now: datetime, caller: Scope, *, bin_id: str, reason: str
) -> CollectionRequest:
    """A request raised by a person (the API's and the console's): NotAllowed outside the
    caller's scope, 409 when the bin already has one waiting for a crew."""
    try:
        site_id = registry.get_bin(session, bin_id).site_id
    except NotFound:
        if caller.is_admin:
            raise
        site_id = None  # to anyone else an unknown bin is just one outside their scope
    if site_id is None or not caller.sees(site_id):
        raise NotAllowed(f"bin {bin_id!r} is not in this key's scope")
    opened = store.open_request(
        session,
        bin_id=bin_id,
        rule=Rule.manual,
        reason=reason,
        now=now,
        policy=Policy.of(settings.collection),
        actor=_caller(caller, Role.admin if caller.is_admin else Role.manager),
    )
    if not opened.created:
        existing = opened.request
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"bin {bin_id!r} already has request {existing.id} ({existing.status})",
        )
    return opened.request


@router.get("", response_model=CollectionPage, dependencies=[EVERYONE])
def list_requests(
    session: SessionDep,
    caller: ScopeDep,
    request: Request,
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
    after: After = None,
) -> CollectionPage:
    """A page of the caller's requests, newest first, with the total matching the filters."""
    if start is not None and end is not None and start >= end:
        raise InvalidRequest("start must be before end")
    past = read_cursor(after, offset, int)
    page = store.list_requests(
        session,
        status=status_,
        site_id=site_id,
        operator_id=operator_id,
        bin_id=bin_id,
        start=start,
        end=end,
        visible_sites=caller.sites,
        limit=limit,
        offset=offset,
        after=past,
        count=past is None,
    )
    items = [CollectionOut.of(row) for row in page.rows]
    last = page.rows[-1] if page.rows else None
    return CollectionPage(
        items=items,
        total=page.total,
        limit=limit,
        offset=offset,
        next=next_after(request, page.more, last.id) if last else None,
    )


@router.get("/{request_id}", response_model=CollectionDetail, dependencies=[EVERYONE])
def get_request(request_id: RequestId, session: SessionDep, caller: ScopeDep) -> CollectionDetail:
    """A request with its audit trail (every transition and escalation, with time and actor)."""
    request = store.get_request(session, request_id)
    if not caller.sees(request.site_id):
        raise NotFound(f"no collection request with id {request_id}")
    return CollectionDetail.of_request(request)


@router.post(
    "/{request_id}/ack",
    response_model=CollectionDetail,
    responses=_CONFLICT,
    dependencies=[_OPERATORS],
)
def acknowledge(
    request_id: RequestId, body: OperatorAction, session: SessionDep, now: Now, caller: ScopeDep
) -> CollectionDetail:
    """The operator has the request and a crew will come."""
    actor = _operator(session, request_id, body.operator_id, caller)
    return _move(session, request_id, Status.acknowledged, actor, now, body.note)


@router.post(
    "/{request_id}/complete",
    response_model=CollectionDetail,
    responses=_CONFLICT,
    dependencies=[_OPERATORS],
)
def complete(
    request_id: RequestId, body: OperatorAction, session: SessionDep, now: Now, caller: ScopeDep
) -> CollectionDetail:
    """The crew emptied the bin; the next readings verify it (or dispute it)."""
    actor = _operator(session, request_id, body.operator_id, caller)
    with _conflict():
        store.complete(session, request_id, actor=actor, now=now, note=body.note)
    return CollectionDetail.of_request(store.get_request(session, request_id))


@router.post(
    "/{request_id}/cancel",
    response_model=CollectionDetail,
    responses=_CONFLICT,
    dependencies=[ADMIN],
)
def cancel(
    request_id: RequestId, body: CancelAction, session: SessionDep, now: Now, caller: ScopeDep
) -> CollectionDetail:
    """City staff withdraw a request that still waits for a crew."""
    actor = _caller(caller, Role.admin)
    return _move(session, request_id, Status.cancelled, actor, now, body.note)


def _caller(caller: Scope, role: Role, name: str | None = None) -> Actor:
    """The calling key as the actor (the audit trail names it: role, key id, name); `name` is
    who the state machine checks, for an operator its company."""
    principal = caller.principal
    return Actor(role, name or principal.name, key=principal.actor)


def _operator(session: Session, request_id: int, operator_id: str, caller: Scope) -> Actor:
    """The operator acting; an operator key acts only as its own company, on its own requests
    (403, even for a request that does not exist: an action reveals nothing either)."""
    if caller.is_admin:
        return _caller(caller, Role.operator, operator_id)
    own = caller.principal.operator_id
    if operator_id != own:
        raise NotAllowed(f"this key acts for operator {own!r}, not {operator_id!r}")
    request = session.get(CollectionRequest, request_id)
    if request is None or request.operator_id != own:
        raise NotAllowed(f"collection request {request_id} is not assigned to operator {own!r}")
    return _caller(caller, Role.operator, operator_id)


def _move(
    session: Session,
    request_id: int,
    to: Status,
    actor: Actor,
    now: datetime,
    note: str,
) -> CollectionDetail:
    with _conflict():
        store.transition(session, request_id, to, actor=actor, now=now, note=note)
    return CollectionDetail.of_request(store.get_request(session, request_id))


@contextmanager
def _conflict() -> Iterator[None]:
    """A transition the state machine refuses, as a 409 that says why."""
    try:
        yield
    except TransitionRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
