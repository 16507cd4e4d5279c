"""A collection request's and an alert's history on the console: every transition, escalation,
crew report, acknowledgement and clearing, with its time in the city's zone, who made it, and its
note in the reader's language (the structured reasons of core/reasons.py). The API answers the
same trail as JSON (`GET /api/v1/collections/{id}`, `GET /api/v1/alerts/{id}`); here it is for
the people who asked "why was this bin emptied, and who said so". Scoped like the site it belongs
to: a request or alert of a site the caller does not see is the same 404 as a missing one."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from fastapi import APIRouter, Request, status
from fastapi.responses import Response
from sqlalchemy.orm import Session

from alerts import store as alert_store
from alerts.models import Alert
from api.auth import Scope
from api.console.auth import CONSOLE_EVERYONE, PREFIX, Caller, CallerDep, PageError, ScopeDep
from api.console.i18n import N_
from api.console.pages import render
from api.deps import PhotosDep, SessionDep, release
from api.routes.alerts import AlertId
from api.routes.collections import RequestId
from collection import crew
from collection import store as collection_store
from collection.models import CollectionRequest
from collection.proof import MEDIA_TYPES
from core.errors import NotFound, StoreUnavailable
from devices import registry

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _page(
    request: Request,
    session: Session,
    caller: Caller,
    scope: Scope,
    load: Callable[[], CollectionRequest | Alert],
    missing: str,
) -> Response:
    """The history of what `load` finds; a missing one, or one of a site the caller does not
    see, is the same 404 (`missing`)."""
    try:
        subject = load()
    except NotFound:
        raise PageError(status.HTTP_404_NOT_FOUND, missing) from None
    if not scope.sees(subject.site_id):
        raise PageError(status.HTTP_404_NOT_FOUND, missing)
    is_request = isinstance(subject, CollectionRequest)
    return render(
        request,
        "history.html",
        locale=caller.user.locale,
        me=caller,
        site=registry.get_site(session, subject.site_id),
        collection=subject if is_request else None,
        alert=None if is_request else subject,
        events=sorted(subject.events, key=lambda event: (event.at, event.id)),
        photos=crew.photos_of(session, subject.id) if is_request else [],
        vehicle_names={v.id: v.name for v in registry.vehicles(session)} if is_request else {},
    )


@router.get("/requests/{request_id}", dependencies=[CONSOLE_EVERYONE])
def request_history(
    request_id: RequestId, request: Request, session: SessionDep, caller: CallerDep, scope: ScopeDep
) -> Response:
    def load() -> CollectionRequest:
        return collection_store.get_request(session, request_id)

    return _page(request, session, caller, scope, load, N_("There is no such collection request."))


@router.get("/alerts/{alert_id}", dependencies=[CONSOLE_EVERYONE])
def alert_history(
    alert_id: AlertId, request: Request, session: SessionDep, caller: CallerDep, scope: ScopeDep
) -> Response:
    def load() -> Alert:
        return alert_store.get_alert(session, alert_id)

    return _page(request, session, caller, scope, load, N_("There is no such alert."))


# A photo is the crew's evidence, not a page: no other site may frame it, the browser may keep it
# for the user alone (a tap's photo never changes), and it is shown only as the image it is.
_PHOTO_HEADERS = {
    "Cache-Control": "private, max-age=86400",
    "Content-Security-Policy": "default-src 'none'",
    "X-Content-Type-Options": "nosniff",
}


@router.get("/photos/{tap_id}", dependencies=[CONSOLE_EVERYONE])
def tap_photo(tap_id: UUID, session: SessionDep, photos: PhotosDep, scope: ScopeDep) -> Response:
    """A crew's proof-of-service photo, for whoever sees the site it was taken at."""
    missing = PageError(status.HTTP_404_NOT_FOUND, N_("There is no such photo."))
    try:
        found = crew.photo(session, tap_id)
        if not scope.sees(found.site_id):
            raise missing
        key = str(found.tap.photo)
        release(session)  # a slow store must not hold a registry connection
        data = photos.get(key)
    except NotFound:
        raise missing from None
    except StoreUnavailable:
        down = N_("The photo cannot be shown just now. Try again in a moment.")
        raise PageError(status.HTTP_503_SERVICE_UNAVAILABLE, down) from None
    media_type = MEDIA_TYPES.get(key.rpartition(".")[2], "application/octet-stream")
    return Response(data, media_type=media_type, headers=_PHOTO_HEADERS)
