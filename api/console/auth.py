"""Who is at the console: the session cookie → the user → the same `Scope` the API computes
(api.auth.scope_of), so one policy decides what a person and a key see.

The cookie is HttpOnly (no script reads it), SameSite=Lax (another site's form cannot post
with it) and Secure behind https (`BINWATCH_CONSOLE_SECURE_COOKIE`); every POST must carry the
session's CSRF token too (security.session_rules). The login form, before any session, uses a
random value in a cookie of its own and its token in the form. No token or password is logged:
they travel only in cookies and form bodies, which nothing here writes anywhere."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Form, HTTPException, Request, Response, status

from api.auth import Policy, Scope, scope_of
from api.console.i18n import N_
from api.deps import SessionDep, SettingsDep
from core.settings import Settings
from security.keys import ApiRole, Principal
from security.models import User
from security.scopes import PEOPLE_WHO_READ
from security.session_rules import csrf_matches, csrf_token
from security.users import UserRole, session_user

SESSION_COOKIE = "binwatch_session"
LOGIN_COOKIE = "binwatch_login"
PREFIX = "/console"
LOGIN_PATH = f"{PREFIX}/login"


class PageError(Exception):
    """An answer the console renders as a page in the reader's language: `message` is a
    catalog msgid (marked with N_ where it is written)."""

    def __init__(self, status_code: int, message: str, **values: object) -> None:
        super().__init__(message)
        self.status_code, self.message, self.values = status_code, message, values


@dataclass(frozen=True, slots=True)
class Caller:
    user: User
    token: str = field(repr=False)  # the session's, for its CSRF token; never shown or logged

    @property
    def csrf(self) -> str:
        return csrf_token(self.token)

    @property
    def principal(self) -> Principal:
        user = self.user
        return Principal(
            user.username,
            ApiRole(user.role),
            frozenset(user.site_ids.split()),
            user.operator_id,
            user.display_name,
            kind="user",
            area_id=user.area_id,
            vehicle_id=user.vehicle_id,
        )


def current_caller(request: Request, session: SessionDep, settings: SettingsDep) -> Caller:
    """The logged-in user; otherwise to the login page."""
    token = request.cookies.get(SESSION_COOKIE)
    user = (
        session_user(
            session,
            token,
            now=datetime.now(UTC),
            idle=settings.console.idle,
            max_age=settings.console.max_age,
        )
        if token
        else None
    )
    if token is None or user is None:
        if request.headers.get("HX-Request"):
            # htmx's XMLHttpRequest would follow a redirect and swap the login page into the
            # part it refreshes; with HX-Redirect it loads the login page instead (204: no
            # content to swap, and no failed request in the browser's console).
            raise HTTPException(status.HTTP_204_NO_CONTENT, headers={"HX-Redirect": LOGIN_PATH})
        raise HTTPException(
            status.HTTP_303_SEE_OTHER, "log in first", headers={"Location": LOGIN_PATH}
        )
    request.state.console_locale = user.locale  # for error pages too (api.console.pages)
    return Caller(user, token)


CallerDep = Annotated[Caller, Depends(current_caller)]


class ConsolePolicy(Policy):
    """A console route's policy: the user roles that may use it (403 page for the others).
    tests/test_security_api.py lists it with the API's."""

    """A console route's policy: the user roles that may use it (a grid official's come from
    security.users.UserRole). tests/test_security_api.py lists it with the API's."""

    def __call__(self, caller: CallerDep) -> None:  # type: ignore[override]
        if caller.user.role not in {role.value for role in self.roles}:
            raise PageError(status.HTTP_403_FORBIDDEN, N_("This page is not for your role."))


def console_allow(*roles: ApiRole | UserRole) -> Any:
    return Depends(ConsolePolicy(frozenset(roles)))


# Everyone who reads sites (a crew has only its own screen: api/console/crew.py).
CONSOLE_EVERYONE: Any = console_allow(*PEOPLE_WHO_READ)
# What every person logged in may do wherever they are: log out, change language.
CONSOLE_PEOPLE: Any = console_allow(*UserRole)
# The reports and rankings (api/console/reports.py): grid officials for their area, the city's
# admins for every area.
CONSOLE_GRID: Any = console_allow(UserRole.grid, UserRole.admin)


def caller_scope(caller: CallerDep, session: SessionDep) -> Scope:
    return scope_of(caller.principal, session)


ScopeDep = Annotated[Scope, Depends(caller_scope)]


def checked_csrf(caller: CallerDep, csrf: Annotated[str, Form()] = "") -> Caller:
    """The caller of a POST that carries its session's CSRF token; 403 otherwise."""
    if not csrf_matches(caller.token, csrf):
        raise PageError(
            status.HTTP_403_FORBIDDEN, N_("This form has expired. Reload the page and try again.")
        )
    return caller


PostCallerDep = Annotated[Caller, Depends(checked_csrf)]


def login_nonce(request: Request) -> str:
    """The login form's cookie value: the one the browser has, or a new one."""
    return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)


def set_cookie(response: Response, settings: Settings, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=settings.console.secure_cookie,
    )
