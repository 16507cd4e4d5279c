"""The console's pages (issue 15): the login, a user's sites, and a site's page with its bins,
open collection requests, the week's disputed ones and active alerts, refreshed in place every
LIVE_EVERY_S (3 s) by htmx.

Actions go through the API's own functions (api.routes.collections.open_manual,
api.routes.alerts.acknowledge_alert), so the audit trail, the scope and the state rules are the
same whether a person clicks or a machine calls; the actor recorded is the user."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import jinja2
from babel import Locale
from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from alerts import store as alert_store
from alerts.models import Alert
from api import queries
from api.auth import PUBLIC, Scope
from api.console import labels
from api.console.auth import (
    CONSOLE_EVERYONE,
    CONSOLE_PEOPLE,
    LOGIN_COOKIE,
    LOGIN_PATH,
    PREFIX,
    SESSION_COOKIE,
    Caller,
    CallerDep,
    PageError,
    PostCallerDep,
    ScopeDep,
    console_allow,
    login_nonce,
    set_cookie,
)
from api.console.i18n import LOCALES, N_, Formats, choose_locale, translations
from api.console.reasons import actor_namer, explainer
from api.deps import InfluxDep, SessionDep, SettingsDep, SiteId
from api.routes.alerts import AlertId, acknowledge_alert
from api.routes.collections import current_time, open_manual
from collection import store as collection_store
from collection.lifecycle import OPEN, Status
from collection.models import CollectionRequest
from core.errors import NotFound, SinkError
from core.influx import InfluxClient
from core.printable import control_character
from core.settings import Settings
from devices import registry
from devices.models import Area, Bin
from security.keys import ApiRole
from security.session_rules import csrf_matches, csrf_token
from security.throttle import LoginThrottle
from security.users import check_login, close_session, open_session, session_user, set_locale

router = APIRouter(prefix=PREFIX, include_in_schema=False)

_environments: dict[str, jinja2.Environment] = {}
NOTICES = {
    "requested": N_("Collection requested. The operator has been told."),
    "acknowledged": N_("Alert acknowledged."),
}
_MANAGERS = console_allow(ApiRole.admin, ApiRole.manager)
_RESPONDERS = console_allow(ApiRole.admin, ApiRole.manager, ApiRole.operator)  # as api.auth's
NOTE_MAX = 1000  # as the API's ManualRequest.reason
LIVE_EVERY_S = 3
"""How often a page's live part is fetched again: a new alert or request must show within 5 s,
so one interval plus ingest's batch (0.25 s) and the render must stay under it, with room for a
busy machine (tests/test_console_browser_checks.py measures it; 4 s left 0.5 s of room)."""
DISPUTED_SHOWN = timedelta(days=7)
DISPUTED_MAX = 20
"""The site page shows the disputed requests (reported emptied, the bin's readings say not)
raised in the last week, at most this many: enough to see a pattern, not an archive."""
CONSOLE_PAGE = re.compile(rf"{PREFIX}(/(?!\.+(/|$))[A-Za-z0-9_.-]+)*")
"""Where the language switch may send the user back to: a console page, never another site."""


PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # No page of another origin may frame the console and lay its own under the buttons
    # (disable a user, reset a password, re-plan a day): SameSite=Lax keeps the session out
    # of another site's frame, not out of another origin of the same site (another port of the
    # host, such as Grafana's). Both headers: old browsers read only the first.
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
}


def _environment(locale: str) -> jinja2.Environment:
    if locale not in _environments:
        environment = jinja2.Environment(
            loader=jinja2.PackageLoader("api.console", "templates"),
            autoescape=True,
            extensions=["jinja2.ext.i18n"],
            undefined=jinja2.StrictUndefined,
        )
        environment.install_gettext_translations(translations(locale), newstyle=True)  # type: ignore[attr-defined]
        _environments[locale] = environment
    return _environments[locale]


def render(
    request: Request,
    template: str,
    *,
    locale: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    other = next(other for other in LOCALES if other != locale)
    fmt = Formats(locale, ZoneInfo(settings.timezone))
    defaults = {
        "fmt": fmt,
        "explain": explainer(fmt, _area_namer(request)),
        "actor": actor_namer(locale),
        "labels": labels,
        "html_lang": locale.replace("_", "-"),
        "now": datetime.now(UTC),
        "live_every_s": LIVE_EVERY_S,
        "me": None,
        "path": request.url.path,
        "other_locale": other,
        "other_locale_name": Locale.parse(other).language_name,  # in its own language
    }
    page = _environment(locale).get_template(template).render(defaults | context)
    return HTMLResponse(page, status_code=status_code, headers=PAGE_HEADERS)


def _area_namer(request: Request) -> Callable[[str], str]:
    """An area's name by its id, the areas read once a page, and only when one of its reasons
    names an area (an escalation's: "no contact configured for community xiaoba"); its id
    when the registry cannot say, so that the page still shows."""
    names: dict[str, str] | None = None

    def name(area_id: str) -> str:
        nonlocal names
        if names is None:
            try:
                with request.app.state.sessions() as session:
                    areas = session.execute(select(Area.id, Area.name)).all()
                names = {area.id: area.name for area in areas}
            except SQLAlchemyError:
                names = {}
        return names.get(area_id, area_id)

    return name


def _locale(request: Request) -> str:
    """Before anyone logs in: the browser's language, else Chinese."""
    return choose_locale(None, request.headers.get("accept-language"))


async def page_error(request: Request, exc: Exception) -> Response:
    """A PageError as a page in the reader's language."""
    assert isinstance(exc, PageError)
    locale = getattr(request.state, "console_locale", None) or _locale(request)
    message = translations(locale).gettext(exc.message) % exc.values
    return render(
        request, "error.html", locale=locale, status_code=exc.status_code, message=message
    )


NUL_IN_TEXT = N_("The text may not contain the NUL character (U+0000). Remove it and send again.")


async def text_refused(request: Request, exc: Exception) -> Response:
    """Text the registry cannot hold (core.sql.refuse_nul_text) is the sender's to fix: on the
    console a page in the reader's language, elsewhere the API's JSON 422."""
    if wants_page(request):
        return await page_error(
            request, PageError(status.HTTP_422_UNPROCESSABLE_CONTENT, NUL_IN_TEXT)
        )
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


# What a person reads when the API's own handlers answer a console address (api/main.py): an
# address nothing serves, one whose figures or dates do not parse, a store that does not answer.
NO_SUCH_PAGE = N_("There is no such page. Check the address, or start again from your own page.")
PROBLEMS_BY_STATUS: dict[int, str] = {
    status.HTTP_404_NOT_FOUND: NO_SUCH_PAGE,
    status.HTTP_405_METHOD_NOT_ALLOWED: NO_SUCH_PAGE,
    status.HTTP_422_UNPROCESSABLE_CONTENT: N_(
        "This address has a value the console cannot read (a number, a date or a month)."
        " Go back and choose it with the page's own links and forms."
    ),
    status.HTTP_502_BAD_GATEWAY: N_(
        "This page's figures cannot be read right now. Try again in a minute; if it keeps"
        " happening, tell the city's administrator."
    ),
    status.HTTP_503_SERVICE_UNAVAILABLE: N_(
        "This page's figures cannot be read right now: a part of binwatch is busy or not"
        " answering. Try again in a minute; if it keeps happening, tell the city's administrator."
    ),
}


def wants_page(request: Request) -> bool:
    """A console address asked for by a browser (not a script asking for JSON: the crew's
    taps, api/console/static/crew.js)."""
    path = request.url.path
    console = path == PREFIX or path.startswith(f"{PREFIX}/")
    return console and "application/json" not in request.headers.get("accept", "")


def _session_locale(request: Request) -> str | None:
    """The language of the user whose live session the request carries; None without one, or
    when the registry cannot say (the page then follows the browser)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    settings: Settings = request.app.state.settings
    try:
        with request.app.state.sessions() as session:
            user = session_user(
                session,
                token,
                now=datetime.now(UTC),
                idle=settings.console.idle,
                max_age=settings.console.max_age,
            )
            return user.locale if user is not None else None
    except SQLAlchemyError:
        return None


async def as_page(request: Request, answer: Response) -> Response:
    """The API's answer to a console address as a console page in the reader's language (its
    status and Retry-After kept); other answers, and statuses without a page, as they are."""
    message = PROBLEMS_BY_STATUS.get(answer.status_code)
    if message is None or not wants_page(request):
        return answer
    if getattr(request.state, "console_locale", None) is None and answer.status_code < 500:
        # An address no route took, or whose values did not parse, ran no login check: the
        # user's own language, from their session, rather than the browser's.
        request.state.console_locale = await run_in_threadpool(_session_locale, request)
    page = await page_error(request, PageError(answer.status_code, message))
    if "retry-after" in answer.headers:
        page.headers["Retry-After"] = answer.headers["retry-after"]
    return page


@router.get("/login", dependencies=[PUBLIC])
def login_page(request: Request, settings: SettingsDep) -> Response:
    return _login_form(request, settings, status.HTTP_200_OK, problem=None)


def _login_form(
    request: Request, settings: Settings, status_code: int, problem: str | None, **values: object
) -> Response:
    locale = _locale(request)
    nonce = login_nonce(request)
    response = render(
        request,
        "login.html",
        locale=locale,
        status_code=status_code,
        csrf=csrf_token(nonce),
        problem=translations(locale).gettext(problem) % values if problem else None,
    )
    set_cookie(response, settings, LOGIN_COOKIE, nonce, max_age=3600)
    return response


@router.post("/login", dependencies=[PUBLIC])
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Open a session; the same answer for an unknown name and a wrong password."""
    nonce = request.cookies.get(LOGIN_COOKIE)
    if nonce is None or not csrf_matches(nonce, csrf):
        return _login_form(
            request,
            settings,
            status.HTTP_403_FORBIDDEN,
            N_("The login form expired. Please try again."),
        )
    throttle: LoginThrottle = request.app.state.login_throttle
    address = request.client.host if request.client else "unknown"
    now = datetime.now(UTC)
    account = username.strip().lower()
    wait = throttle.locked_for(account=account, address=address, now=now)
    if wait is not None:
        response = _login_form(
            request,
            settings,
            status.HTTP_429_TOO_MANY_REQUESTS,
            N_("Too many failed logins. Try again in %(minutes)d minutes."),
            minutes=max(1, -(-int(wait.total_seconds()) // 60)),
        )
        response.headers["Retry-After"] = str(max(1, int(wait.total_seconds())))
        return response
    user = check_login(session, account, password)
    if user is None:
        throttle.failed(account=account, address=address, now=now)
        return _login_form(
            request, settings, status.HTTP_401_UNAUTHORIZED, N_("Wrong user name or password.")
        )
    throttle.succeeded(account=account)
    opened = open_session(session, user, now=now)
    response = RedirectResponse(PREFIX, status.HTTP_303_SEE_OTHER)
    set_cookie(
        response,
        settings,
        SESSION_COOKIE,
        opened.token,
        max_age=int(settings.console.max_age.total_seconds()),
    )
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.post("/logout", dependencies=[CONSOLE_PEOPLE])
def logout(caller: PostCallerDep, session: SessionDep) -> Response:
    close_session(session, caller.token)
    response = RedirectResponse(LOGIN_PATH, status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


@router.post("/locale", dependencies=[CONSOLE_PEOPLE])
def choose_language(
    caller: PostCallerDep,
    session: SessionDep,
    locale: Annotated[str, Form()] = "",
    next_: Annotated[str, Form(alias="next")] = PREFIX,
) -> Response:
    """The user's language from now on; back to the page they were on (only a console page)."""
    if locale not in LOCALES:
        raise PageError(status.HTTP_422_UNPROCESSABLE_CONTENT, N_("There is no such language."))
    set_locale(session, caller.user.username, locale, now=current_time())
    back = next_ if CONSOLE_PAGE.fullmatch(next_) else PREFIX
    return RedirectResponse(back, status.HTTP_303_SEE_OTHER)


@router.get("", dependencies=[CONSOLE_PEOPLE])
def my_sites(request: Request, session: SessionDep, caller: CallerDep, scope: ScopeDep) -> Response:
    """The user's sites; a grid official starts at their area's figures instead, a crew at its
    stops of the day."""
    if caller.user.role == ApiRole.grid:
        return RedirectResponse(f"{PREFIX}/grid", status.HTTP_303_SEE_OTHER)
    if caller.user.role == ApiRole.crew:
        return RedirectResponse(f"{PREFIX}/crew", status.HTTP_303_SEE_OTHER)
    sites, _total, _more = registry.list_sites(
        session, site_type=None, community_id=None, limit=500, offset=0, visible=scope.sites
    )
    return render(request, "sites.html", locale=caller.user.locale, me=caller, sites=sites)


@dataclass(frozen=True, slots=True)
class BinRow:
    bin: Bin
    fill_pct: float | None
    battery_pct: float | None
    heard_at: datetime | None


def _live(session: Session, influx: InfluxClient, scope: Scope, site_id: str) -> dict[str, Any]:
    """What the site page shows and refreshes: bins with their latest reading, the requests
    still waiting for a crew (soonest deadline first), the active alerts."""
    try:
        scope.site(site_id)
        site = registry.get_site(session, site_id)
    except NotFound:
        raise PageError(status.HTTP_404_NOT_FOUND, N_("There is no such site.")) from None
    try:
        latest = queries.latest_by_bin(influx, site.id, [bin_.id for bin_ in site.bins])
        readings_missing = False
    except SinkError:
        latest, readings_missing = {}, True
    rows = []
    for bin_ in sorted(site.bins, key=lambda b: b.id):
        reading = latest.get(bin_.id)
        rows.append(
            BinRow(
                bin_,
                reading.fill_pct if reading else None,
                reading.battery_pct if reading else None,
                (reading.received_at or reading.time) if reading else None,
            )
        )
    requests: list[CollectionRequest] = []
    for status_ in OPEN:
        page, _total, _more = collection_store.list_requests(
            session, status=status_, site_id=site.id, visible_sites=scope.sites, limit=500
        )
        requests += page
    # Emptied by a crew's word, not by the bin's readings: the newest, from the last days.
    disputed, _total, _more = collection_store.list_requests(
        session,
        status=Status.disputed,
        site_id=site.id,
        visible_sites=scope.sites,
        start=datetime.now(UTC) - DISPUTED_SHOWN,
        limit=DISPUTED_MAX,
    )
    alerts: list[Alert]
    alerts, _total, _more = alert_store.list_alerts(
        session, state="active", site_id=site.id, visible_sites=scope.sites, limit=500
    )
    return {
        "site": site,
        "rows": rows,
        "readings_missing": readings_missing,
        "requests": sorted(requests, key=lambda r: r.due_at),
        "disputed": disputed,
        "alerts": alerts,
    }


@dataclass(frozen=True, slots=True)
class SiteView:
    """What rendering a site's page needs; the actions render it too, with what went wrong."""

    request: Request
    session: Session
    influx: InfluxClient
    caller: Caller
    scope: Scope

    def page(
        self,
        site_id: str,
        *,
        status_code: int = 200,
        notice: str | None = None,
        problem: str | None = None,
    ) -> Response:
        return render(
            self.request,
            "site.html",
            locale=self.caller.user.locale,
            status_code=status_code,
            me=self.caller,
            can_request=self.caller.user.role in (ApiRole.admin, ApiRole.manager),
            notice=NOTICES.get(notice or ""),
            problem=problem,
            **_live(self.session, self.influx, self.scope, site_id),
        )


def _done(site_id: str, notice: str) -> Response:
    """Back to the site's page after an action (so a reload does not repeat it)."""
    return RedirectResponse(f"{PREFIX}/sites/{site_id}?notice={notice}", status.HTTP_303_SEE_OTHER)


@router.get("/sites/{site_id}", dependencies=[CONSOLE_EVERYONE])
def site_page(
    site_id: SiteId,
    request: Request,
    session: SessionDep,
    influx: InfluxDep,
    caller: CallerDep,
    scope: ScopeDep,
    notice: str | None = None,
) -> Response:
    return SiteView(request, session, influx, caller, scope).page(site_id, notice=notice)


@router.get("/sites/{site_id}/live", dependencies=[CONSOLE_EVERYONE])
def site_live(
    site_id: SiteId,
    request: Request,
    session: SessionDep,
    influx: InfluxDep,
    caller: CallerDep,
    scope: ScopeDep,
) -> Response:
    """The part of a site's page that htmx swaps in every LIVE_EVERY_S."""
    live = _live(session, influx, scope, site_id)
    return render(request, "_live.html", locale=caller.user.locale, me=caller, **live)


@router.post("/sites/{site_id}/collections", dependencies=[_MANAGERS])
def request_collection(
    site_id: SiteId,
    request: Request,
    session: SessionDep,
    influx: InfluxDep,
    settings: SettingsDep,
    caller: PostCallerDep,
    scope: ScopeDep,
    bin_id: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    """Ask for a bin of this site to be emptied, with a note for the crew."""
    scope_error = PageError(status.HTTP_404_NOT_FOUND, N_("There is no such site."))
    if not scope.sees(site_id):
        raise scope_error
    problem = None
    if not note.strip():
        problem = N_("Write a note for the crew.")
    elif len(note.strip()) > NOTE_MAX:
        problem = N_("The note is too long: at most 1000 characters.")
    elif control_character(note):
        problem = N_("The note holds a control character; remove it and send it again.")
    elif bin_id not in {b.id for b in registry.get_site(session, site_id).bins}:
        problem = N_("Choose a bin of this site.")
    view = SiteView(request, session, influx, caller, scope)
    if problem is not None:
        return view.page(
            site_id, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, problem=problem
        )
    try:
        open_manual(session, settings, current_time(), scope, bin_id=bin_id, reason=note.strip())
    except HTTPException as exc:
        if exc.status_code != status.HTTP_409_CONFLICT:
            raise
        return view.page(
            site_id,
            status_code=status.HTTP_409_CONFLICT,
            problem=N_("This bin already has a collection request waiting for a crew."),
        )
    return _done(site_id, "requested")


@router.post("/alerts/{alert_id}/ack", dependencies=[_RESPONDERS])
def acknowledge(
    alert_id: AlertId,
    request: Request,
    session: SessionDep,
    influx: InfluxDep,
    caller: PostCallerDep,
    scope: ScopeDep,
) -> Response:
    """The user takes the alert on; it is recorded with them as the actor."""
    try:
        site_id = alert_store.get_alert(session, alert_id).site_id
        acknowledge_alert(session, alert_id, scope, note="", now=current_time())
    except NotFound:
        raise PageError(status.HTTP_404_NOT_FOUND, N_("There is no such alert.")) from None
    except HTTPException as exc:
        if exc.status_code != status.HTTP_409_CONFLICT:
            raise
        return SiteView(request, session, influx, caller, scope).page(
            site_id,
            status_code=status.HTTP_409_CONFLICT,
            problem=N_("This alert was already acknowledged, or has cleared."),
        )
    return _done(site_id, "acknowledged")
