"""The crew's screen (issue 16): a phone's page of the day's stops of the crew's vehicle in
driving order (site, address, bin, stream, ETA in the city's time), with one tap per stop:
emptied, or could not empty with a reason, and an optional photo.

The taps go through collection/crew.py (emptied completes the request as the API's complete
does; the bin's next readings verify or dispute it). api/console/static/crew.js sends each tap
with an id it made, keeps taps made offline in localStorage and sends them when the phone is
back online; the server answers a repeated id with what the first copy did. Every POST carries
the session's CSRF token, as every console form does. Without JavaScript the forms still work
(a page comes back instead of JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import uuid4

from fastapi import APIRouter, File, Form, Request, UploadFile, status
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, RedirectResponse, Response

from api.console.auth import PREFIX, CallerDep, PageError, PostCallerDep, console_allow
from api.console.i18n import N_, translations
from api.console.pages import render
from api.deps import PhotosDep, SessionDep, SettingsDep, release
from api.routes.collections import Now, current_time
from api.routes.routes import local_day
from collection import crew, plans
from collection.models import TAP_REASONS
from collection.photo_store import PhotoStore
from collection.proof import PhotoRejected, keep_photo
from core.errors import NotFound, StoreUnavailable
from core.settings import Settings
from devices.models import MAX_ROW_ID
from security.keys import ApiRole

router = APIRouter(prefix=f"{PREFIX}/crew", include_in_schema=False)
StopId = Annotated[int, PathParam(ge=1, le=MAX_ROW_ID, description="a stop of the crew's route")]

CREW = console_allow(ApiRole.crew)
REASONS = {
    "blocked": N_("Blocked"),
    "bin_damaged": N_("Bin damaged"),
    "contaminated_refused": N_("Contaminated load refused"),
    "no_access": N_("No access"),
}
assert set(REASONS) == set(TAP_REASONS)
OUTCOMES = {
    "completed": N_("Emptied: the bin's next readings will confirm it."),
    "reported": N_("Reported: the dispatcher will decide."),
    "noted": N_("Recorded."),
    "pending": N_("Recorded."),
    "refused": N_("Not recorded: this request no longer waits for a crew."),
}
# What collection/crew.py and collection/proof.py refuse, as the crew reads it (their `code`).
PROBLEMS = {
    "bad_tap_id": N_("This tap could not be read. Reload the page and tap again."),
    "bad_action": N_("This tap could not be read. Reload the page and tap again."),
    "bad_reason": N_("Choose why the bin could not be emptied."),
    "tap_elsewhere": N_("This tap was already used for another stop."),
    "photo_empty": N_("The photo is empty."),
    "photo_too_big": N_("The photo is too big: at most %(kb)s KB."),
    "photo_not_image": N_("The photo must be a JPEG or PNG image."),
}
# A photo store that cannot take the photo leaves the tap unrecorded: crew.js keeps it queued,
# photo and all, and sends it again; a form without JavaScript is sent again by the crew.
PHOTOS_DOWN_QUEUED = N_(
    "The photo cannot be stored just now. The tap waits on this phone and will be sent again."
)
PHOTOS_DOWN = N_("The photo cannot be stored just now, so the tap was not recorded. Try again.")
NO_STOP = N_("There is no such stop on your route today.")
NO_VEHICLE = N_("Your vehicle is not in the fleet any more. Ask the dispatcher.")
PHOTO_PATHS = f"{PREFIX}/crew/stops/"
"""Where a request body may carry a photo: the body cap there is the photo's (api/main.py)."""


def _screen(
    template: str,
    request: Request,
    session: SessionDep,
    settings: Settings,
    caller: CallerDep,
    now: datetime,
) -> Response:
    """The page, or its list alone: the day's stops of the crew's vehicle with their taps."""
    try:
        vehicle = crew.vehicle(session, caller.user.vehicle_id)
    except NotFound:
        raise PageError(status.HTTP_404_NOT_FOUND, NO_VEHICLE) from None
    day = local_day(settings, now)
    stops = crew.day_stops(session, vehicle, day)
    # No stop today says why and what comes next, never a blank list.
    empty = (
        None
        if stops
        else plans.no_routes(
            session,
            vehicle.operator_id,
            day,
            plans.latest_plan(session, vehicle.operator_id, day),
            settings=settings,
            now=now,
            vehicle=vehicle,
        )
    )
    return render(
        request,
        template,
        locale=caller.user.locale,
        me=caller,
        vehicle=vehicle,
        stops=stops,
        empty=empty,
        now=now,
        reasons=REASONS,
        outcomes=OUTCOMES,
        new_tap_id=lambda: str(uuid4()),  # without JavaScript; crew.js makes its own
        photo_max_kb=settings.route.photo_max_kb,
    )


@router.get("", dependencies=[CREW])
def crew_page(
    request: Request, session: SessionDep, settings: SettingsDep, caller: CallerDep, now: Now
) -> Response:
    """The day's stops of the crew's vehicle, with the taps."""
    return _screen("crew.html", request, session, settings, caller, now)


@router.get("/stops", dependencies=[CREW])
def crew_stops(
    request: Request, session: SessionDep, settings: SettingsDep, caller: CallerDep, now: Now
) -> Response:
    """The list alone, which crew.js fetches again after a tap and every while online."""
    return _screen("_crew_stops.html", request, session, settings, caller, now)


@router.post("/stops/{stop_id}/tap", dependencies=[CREW])
def tap(
    stop_id: StopId,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    caller: PostCallerDep,
    photos: PhotosDep,
    tap_id: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    photo: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """One tap on a stop: emptied, or could not empty with a reason; a photo if given. A tap
    whose id was taken before answers what it did then, and does nothing again. The photo is
    stored first: a store that cannot take it (503) leaves the tap untaken, for the phone to
    send again whole, rather than a tap whose photo is lost."""
    gettext = translations(caller.user.locale).gettext
    wants_json = "application/json" in request.headers.get("accept", "")
    now = current_time()
    try:
        taken = crew.Tap.of(tap_id, action, reason)
        vehicle = crew.vehicle(session, caller.user.vehicle_id)
        stop = crew.crew_stop(session, vehicle, stop_id, local_day(settings, now))
        tapped = crew.taken(session, taken, stop)
        if tapped is None:
            release(session)  # a slow store must not hold a registry connection
            stored = _kept_photo(photo, photos, settings, taken, now)
            tapped = crew.take(
                session,
                taken,
                stop,
                crew_vehicle=vehicle,
                actor_key=caller.principal.actor,
                now=now,
                photo=stored,
            )
    except NotFound:
        raise PageError(status.HTTP_404_NOT_FOUND, NO_STOP) from None
    except StoreUnavailable:
        unavailable = status.HTTP_503_SERVICE_UNAVAILABLE
        if wants_json:
            said = {"error": "photo_store_unavailable", "message": gettext(PHOTOS_DOWN_QUEUED)}
            return JSONResponse(said, status_code=unavailable)
        raise PageError(unavailable, PHOTOS_DOWN) from None
    except (crew.TapError, PhotoRejected) as exc:
        code = status.HTTP_413_CONTENT_TOO_LARGE if exc.code == "photo_too_big" else 422
        message = gettext(PROBLEMS[exc.code]) % {"kb": settings.route.photo_max_kb}
        if wants_json:
            return JSONResponse({"error": exc.code, "message": message}, status_code=code)
        raise PageError(code, PROBLEMS[exc.code], kb=settings.route.photo_max_kb) from None
    row = tapped.tap
    code = status.HTTP_409_CONFLICT if row.outcome == "refused" else status.HTTP_200_OK
    if not wants_json:
        if code != status.HTTP_200_OK:
            raise PageError(code, OUTCOMES[row.outcome])
        return RedirectResponse(f"{PREFIX}/crew", status.HTTP_303_SEE_OTHER)
    answer = {
        "tap_id": row.id,
        "stop_id": row.stop_id,
        "outcome": row.outcome,
        "repeated": tapped.repeated,
        "message": gettext(OUTCOMES[row.outcome]),
    }
    return JSONResponse(answer, status_code=code)


def _kept_photo(
    photo: UploadFile | None, photos: PhotoStore, settings: Settings, taken: crew.Tap, now: datetime
) -> str | None:
    """The tap's photo checked and kept in the photo store (its key there); None without one
    (a form without JavaScript sends an empty file part when none was chosen)."""
    limit = settings.route.photo_max_kb * 1024
    data = photo.file.read(limit + 1) if photo is not None else b""
    if photo is None or not (data or photo.filename):
        return None
    return keep_photo(photos, data, tap_id=taken.id, day=local_day(settings, now), max_bytes=limit)
