"""The city admin's user screens (issue 15): list the console's users, create one (role and
scope), change a scope, disable, reset a password. Each action is a form with the session's
CSRF token and goes through security.users, the very functions `binwatch users` calls: the same
checks, the same audit trail (`user_events`, the admin as actor), and the user's sessions end
where the command ends them (disable, reset). A new or reset password is generated and shown
once, on the answer to the form; only its hash is kept."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from api.console import labels
from api.console.auth import PREFIX, Caller, CallerDep, PageError, PostCallerDep, console_allow
from api.console.i18n import LOCALES, N_
from api.console.pages import render
from api.deps import SessionDep
from api.routes.collections import current_time
from api.schemas import ID_REGEX
from core.errors import InvalidRequest, NotFound
from devices import registry
from devices.grid import Place
from security import passwords
from security.keys import ApiRole
from security.models import User
from security.scopes import GRID_AREA_KINDS, ScopeError
from security.users import (
    UserError,
    create_user,
    disable_user,
    get_user,
    list_users,
    reset_password,
    set_scope,
    user_events,
)

router = APIRouter(prefix=f"{PREFIX}/users", include_in_schema=False)

ADMINS = console_allow(ApiRole.admin)
Username = Annotated[str, Path(pattern=ID_REGEX)]
NOTICES = {
    "scope": N_("The scope was changed. It applies from the user's next page."),
    "disabled": N_("The user was disabled and logged out."),
}
# What security.users and security.scopes refuse, as the console says it (their `code`).
PROBLEMS = {
    "bad_username": N_(
        "A user name is 2–64 lower-case letters, digits, '_', '.' or '-', "
        "starting with a letter or digit."
    ),
    "exists": N_("There is already a user with this name."),
    "long_name": N_("The name is too long: at most 200 characters."),
    "bad_display_name": N_("The name holds a control character; write it on one line."),
    "scope_needs_site": N_("Choose at least one site for a property manager."),
    "scope_needs_area": N_("Choose the grid official's area."),
    "scope_needs_operator": N_("Choose the operator company."),
    "scope_needs_vehicle": N_("Choose the crew's vehicle."),
    "no_site": N_("There is no such site: %(ids)s"),
    "no_area": N_("A grid official's area is a district, street or community: %(ids)s is none."),
    "no_operator": N_("There is no such operator: %(ids)s"),
    "no_vehicle": N_("There is no such vehicle: %(ids)s"),
}
NO_SUCH_USER = N_("There is no such user.")


@dataclass(frozen=True, slots=True)
class ScopeForm:
    """The scope fields of a form, of which only the role's own kind is kept."""

    site_ids: list[str]
    area_id: str
    operator_id: str
    vehicle_id: str = ""

    def of(self, role: str) -> dict[str, Any]:
        if role == ApiRole.manager:
            return {"site_ids": self.site_ids}
        if role == ApiRole.grid:
            return {"area_id": self.area_id or None}
        if role == ApiRole.operator:
            return {"operator_id": self.operator_id or None}
        if role == ApiRole.crew:
            return {"vehicle_id": self.vehicle_id or None}
        return {}


def _choices(session: Session) -> dict[str, Any]:
    """What the scope fields offer: every site, the grid's districts, streets and communities
    (named by their path, "district › street › community"), every operator."""
    grid = registry.grid(session)
    areas: list[tuple[str, str]] = []
    for place in sorted(grid.places.values(), key=lambda p: _path_name(grid.path(p.id))):
        if place.kind in GRID_AREA_KINDS:
            areas.append((place.id, _path_name(grid.path(place.id))))
    return {
        "site_names": registry.site_names(session),
        "area_names": dict(areas),
        "operator_names": {o.id: o.name for o in registry.operators(session)},
        "vehicle_names": {v.id: v.name for v in registry.vehicles(session)},
        "roles": list(ApiRole),
        "locales": LOCALES,
    }


@dataclass(frozen=True, slots=True)
class ScopeNote:
    """A user event's note read back (`security.users.describe_scope` writes it for the
    audit trail and the command line: `grid: area xiaoba`), shaped like a user so the page
    names the role and the scope in the admin's language, as the list of users does."""

    role: str
    site_ids: str = ""
    area_id: str | None = None
    operator_id: str | None = None
    vehicle_id: str | None = None


_SCOPE_NOTE = re.compile(
    r"(?P<role>\w+): (?:sites (?P<sites>.+)|area (?P<area>\S+)|operator (?P<operator>\S+)"
    r"|vehicle (?P<vehicle>\S+)|the whole city)"
)


def scope_note(note: str) -> ScopeNote | None:
    """The note as a role and a scope; None for a note of another shape (shown as stored)."""
    found = _SCOPE_NOTE.fullmatch(note)
    if found is None or found["role"] not in labels.USER_ROLES:
        return None
    return ScopeNote(
        found["role"],
        site_ids=" ".join((found["sites"] or "").split(", ")),
        area_id=found["area"],
        operator_id=found["operator"],
        vehicle_id=found["vehicle"],
    )


def _path_name(path: list[Place] | None) -> str:
    """An area named by its path below the city."""
    return " › ".join(place.name for place in (path or []) if place.kind != "city")


def _problem(exc: InvalidRequest) -> tuple[str, dict[str, str]]:
    if isinstance(exc, ScopeError) and exc.code in PROBLEMS:
        return PROBLEMS[exc.code], exc.values
    if isinstance(exc, UserError) and exc.code in PROBLEMS:
        return PROBLEMS[exc.code], {}
    raise exc  # nothing the form can send reaches here; a bug is better loud than mistranslated


def _list_page(
    request: Request,
    session: Session,
    caller: Caller,
    *,
    status_code: int = 200,
    problem: str | None = None,
    values: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    return render(
        request,
        "users.html",
        locale=caller.user.locale,
        status_code=status_code,
        me=caller,
        users=list_users(session),
        problem=problem,
        problem_values=values or {},
        form=form or {},
        **_choices(session),
    )


@router.get("", dependencies=[ADMINS])
def users_page(request: Request, session: SessionDep, caller: CallerDep) -> Response:
    """Every user, and the form to create one."""
    return _list_page(request, session, caller)


@router.post("", dependencies=[ADMINS])
def create(
    request: Request,
    session: SessionDep,
    caller: PostCallerDep,
    username: Annotated[str, Form()] = "",
    display_name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    locale: Annotated[str, Form()] = "zh_CN",
    site_ids: Annotated[list[str] | None, Form()] = None,
    area_id: Annotated[str, Form()] = "",
    operator_id: Annotated[str, Form()] = "",
    vehicle_id: Annotated[str, Form()] = "",
) -> Response:
    """A new user with a generated password, shown once on the answer."""
    form = {"username": username, "display_name": display_name, "role": role, "locale": locale}
    scope = ScopeForm(site_ids or [], area_id, operator_id, vehicle_id)
    if role not in {r.value for r in ApiRole} or locale not in LOCALES:
        return _list_page(
            request,
            session,
            caller,
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            problem=N_("Choose a role and a language from the lists."),
            form=form,
        )
    name = username.strip().lower()
    password = passwords.generate(name)
    try:
        user = create_user(
            session,
            username=name,
            display_name=display_name.strip(),
            password=password,
            role=ApiRole(role),
            now=current_time(),
            locale=locale,
            actor=caller.principal.actor,
            **scope.of(role),
        )
    except InvalidRequest as exc:
        session.rollback()
        problem, values = _problem(exc)
        return _list_page(
            request,
            session,
            caller,
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            problem=problem,
            values=values,
            form=form,
        )
    return _password_page(request, caller, user, password, created=True)


def _password_page(
    request: Request, caller: Caller, user: User, password: str, *, created: bool
) -> Response:
    """The one time a password is shown: on the answer to the form (no-store, never logged)."""
    return render(
        request,
        "user_password.html",
        locale=caller.user.locale,
        status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        me=caller,
        user=user,
        password=password,
        created=created,
    )


def _user(session: Session, username: str) -> User:
    try:
        return get_user(session, username)
    except NotFound:
        raise PageError(status.HTTP_404_NOT_FOUND, NO_SUCH_USER) from None


def _user_page(
    request: Request,
    session: Session,
    caller: Caller,
    username: str,
    *,
    status_code: int = 200,
    notice: str | None = None,
    problem: str | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "user.html",
        locale=caller.user.locale,
        status_code=status_code,
        me=caller,
        user=_user(session, username),
        events=user_events(session, username),
        scope_note=scope_note,
        notice=NOTICES.get(notice or ""),
        problem=problem,
        problem_values=values or {},
        **_choices(session),
    )


@router.get("/{username}", dependencies=[ADMINS])
def user_page(
    username: Username,
    request: Request,
    session: SessionDep,
    caller: CallerDep,
    notice: str | None = None,
) -> Response:
    """A user: role, scope, state, the actions, and their account's audit trail."""
    return _user_page(request, session, caller, username, notice=notice)


@router.post("/{username}/scope", dependencies=[ADMINS])
def change_scope(
    username: Username,
    request: Request,
    session: SessionDep,
    caller: PostCallerDep,
    site_ids: Annotated[list[str] | None, Form()] = None,
    area_id: Annotated[str, Form()] = "",
    operator_id: Annotated[str, Form()] = "",
    vehicle_id: Annotated[str, Form()] = "",
) -> Response:
    """A new scope of the user's own kind."""
    user = _user(session, username)
    scope = ScopeForm(site_ids or [], area_id, operator_id, vehicle_id)
    try:
        set_scope(
            session,
            user.username,
            now=current_time(),
            actor=caller.principal.actor,
            **scope.of(user.role),
        )
    except InvalidRequest as exc:
        session.rollback()
        problem, values = _problem(exc)
        return _user_page(
            request,
            session,
            caller,
            username,
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            problem=problem,
            values=values,
        )
    return _done(username, "scope")


@router.post("/{username}/disable", dependencies=[ADMINS])
def disable(
    username: Username,
    request: Request,
    session: SessionDep,
    caller: PostCallerDep,
    confirm: Annotated[str, Form()] = "",
) -> Response:
    """The user can no longer log in; their sessions end now (not the admin's own account:
    the last admin would lock the city out). For good (no command enables an account again),
    so only with the form's box ticked."""
    _user(session, username)
    if username == caller.user.username:
        return _user_page(
            request,
            session,
            caller,
            username,
            status_code=status.HTTP_409_CONFLICT,
            problem=N_("You cannot disable your own account."),
        )
    if confirm != "yes":
        return _user_page(
            request,
            session,
            caller,
            username,
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            problem=N_("Nothing was changed. Tick the box to confirm: disabling cannot be undone."),
        )
    disable_user(session, username, now=current_time(), actor=caller.principal.actor)
    return _done(username, "disabled")


@router.post("/{username}/password", dependencies=[ADMINS])
def new_password(
    username: Username, request: Request, session: SessionDep, caller: PostCallerDep
) -> Response:
    """A generated password, shown once; the user's sessions end."""
    user = _user(session, username)
    password = passwords.generate(user.username)
    user = reset_password(
        session, user.username, password, now=current_time(), actor=caller.principal.actor
    )
    return _password_page(request, caller, user, password, created=False)


def _done(username: str, notice: str) -> Response:
    """Back to the user's page after an action (so a reload does not repeat it)."""
    return RedirectResponse(f"{PREFIX}/users/{username}?notice={notice}", status.HTTP_303_SEE_OTHER)
