"""Alerts: list them by state, severity, site and type; read one with its history and
deliveries; acknowledge one (a 409 that says why when it is already acknowledged or cleared)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from sqlalchemy.orm import Session

from alerts import store
from alerts.rules import AlertType, Severity
from api.alert_schemas import AckRequest, AlertDetail, AlertOut, AlertPage, AlertState
from api.auth import EVERYONE, RESPONDERS, Scope, ScopeDep
from api.deps import SessionDep
from api.paging import After, next_after, read_cursor
from api.routes.collections import Now
from api.schemas import ID_REGEX
from core.errors import NotFound
from devices.models import MAX_ROW_ID

router = APIRouter(prefix="/alerts", tags=["alerts"])

MAX_PAGE = 500
MAX_OFFSET = 1_000_000_000
AlertId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="an alert id")]
_CONFLICT: dict[int | str, dict[str, Any]] = {
    status.HTTP_409_CONFLICT: {"description": "already acknowledged, or cleared"}
}


@router.get("", response_model=AlertPage, dependencies=[EVERYONE])
def list_alerts(
    session: SessionDep,
    caller: ScopeDep,
    request: Request,
    state: Annotated[AlertState | None, Query(description="only this state")] = None,
    severity: Annotated[Severity | None, Query(description="only this severity")] = None,
    site_id: Annotated[str | None, Query(pattern=ID_REGEX, description="only this site")] = None,
    type_: Annotated[AlertType | None, Query(alias="type", description="only this type")] = None,
    bin_id: Annotated[str | None, Query(pattern=ID_REGEX, description="only this bin")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="alerts to skip")] = 0,
    after: After = None,
) -> AlertPage:
    """A page of alerts, newest first, with the total matching the filters."""
    start = read_cursor(after, offset, datetime, int)
    page = store.list_alerts(
        session,
        state=state,
        severity=severity,
        site_id=site_id,
        kind=type_,
        bin_id=bin_id,
        visible_sites=caller.sites,
        limit=limit,
        offset=offset,
        after=start,
        count=start is None,
    )
    items = [AlertOut.model_validate(alert) for alert in page.rows]
    last = page.rows[-1] if page.rows else None
    return AlertPage(
        items=items,
        total=page.total,
        limit=limit,
        offset=offset,
        next=next_after(request, page.more, last.started_at, last.id) if last else None,
    )


@router.get("/{alert_id}", response_model=AlertDetail, dependencies=[EVERYONE])
def get_alert(alert_id: AlertId, session: SessionDep, caller: ScopeDep) -> AlertDetail:
    """An alert with its history (raised, acknowledged, cleared) and its deliveries."""
    if not caller.sees(store.get_alert(session, alert_id).site_id):
        raise NotFound(f"no alert with id {alert_id}")  # word for word as for a missing one
    return _detail(session, alert_id)


@router.post(
    "/{alert_id}/ack", response_model=AlertDetail, responses=_CONFLICT, dependencies=[RESPONDERS]
)
def acknowledge(
    alert_id: AlertId, body: AckRequest, session: SessionDep, now: Now, caller: ScopeDep
) -> AlertDetail:
    """Someone has taken the alert on; it stays until its condition ends."""
    acknowledge_alert(session, alert_id, caller, note=body.note, now=now)
    session.expire_all()
    return _detail(session, alert_id)


def acknowledge_alert(
    session: Session, alert_id: int, caller: Scope, *, note: str, now: datetime
) -> None:
    """A person acknowledges (the API's and the console's): NotFound outside the caller's
    scope, word for word as for a missing alert; 409 saying why when it is not active."""
    existing = store.get_alert(session, alert_id)
    if not caller.sees(existing.site_id):
        raise NotFound(f"no alert with id {alert_id}")  # word for word as for a missing one
    if store.acknowledge(session, alert_id, by=caller.principal.actor, note=note, now=now) is None:
        session.refresh(existing)
        why = f"by {existing.acknowledged_by}" if existing.state == "acknowledged" else ""
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"alert {alert_id} is already {existing.state} {why}".strip()
        )


def _detail(session: SessionDep, alert_id: int) -> AlertDetail:
    alert = store.get_alert(session, alert_id)
    out = AlertOut.model_validate(alert).model_dump()
    return AlertDetail.model_validate(
        out
        | {
            "events": list(alert.events),
            "deliveries": store.deliveries_of(session, alert_id),
            "notifications": store.notifications_of(session, alert_id),
        }
    )
