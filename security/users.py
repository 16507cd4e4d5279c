"""The console's people and their sessions, in the registry database (issue 15).

A user has a role and a scope like an API key (managers: sites; grid officials: an area;
operators: their company; crews: their vehicle; admins: the city). A login opens a server-side session whose token
goes to the browser in a cookie; only the token's SHA-256 is stored, as for API keys, so the
table cannot be replayed. Nothing here logs a password or a token."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.errors import InvalidRequest, NotFound
from core.printable import control_character
from security import passwords
from security.hashing import new_secret, same_hash, token_hash
from security.models import LOCALES, ConsoleSession, User, UserEvent
from security.scopes import Role, check_scope
from security.session_rules import is_expired

USERNAME = re.compile(r"[a-z0-9][a-z0-9_.-]{1,63}")
SESSION_ID = re.compile(r"[0-9a-f]{16}")  # open_session's token_hex(8), before the "_"
DISPLAY_NAME_MAX = 200  # users.display_name
UserRole = Role  # people and keys share one list of roles (security.scopes)
COMMAND_LINE = "command line (binwatch users)"
"""The actor of what `binwatch users` does: whoever can run it on the server."""


def create_user(
    session: Session,
    *,
    username: str,
    display_name: str,
    password: str,
    role: UserRole,
    now: datetime,
    site_ids: Sequence[str] = (),
    area_id: str | None = None,
    operator_id: str | None = None,
    vehicle_id: str | None = None,
    locale: str = "zh_CN",
    actor: str = COMMAND_LINE,
) -> User:
    """A new user; InvalidRequest saying what to fix for a bad name, password, scope or locale
    (a ScopeError for the scope, UserError for the rest, each with a code for the console)."""
    if not USERNAME.fullmatch(username):  # match: '$' also matches before a final line break
        raise UserError(
            "a user name is 2–64 lower-case letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
            "bad_username",
        )
    if session.get(User, username) is not None:
        raise UserError(f"user {username!r} exists already", "exists")
    if len(display_name) > DISPLAY_NAME_MAX:
        raise UserError(f"a display name has at most {DISPLAY_NAME_MAX} characters", "long_name")
    if problem := control_character(display_name, lines=False):
        raise UserError(f"a display name {problem}", "bad_display_name")
    if locale not in LOCALES:
        raise InvalidRequest(f"locale must be one of {', '.join(LOCALES)}, not {locale!r}")
    check_scope(
        session,
        role,
        holder="users",
        site_ids=site_ids,
        area_id=area_id,
        operator_id=operator_id,
        vehicle_id=vehicle_id,
    )
    passwords.check_policy(password, username=username)
    user = User(
        username=username,
        display_name=display_name or username,
        password_hash=passwords.hash_password(password),
        role=role.value,
        site_ids=" ".join(sorted(set(site_ids))),
        area_id=area_id,
        operator_id=operator_id,
        vehicle_id=vehicle_id,
        locale=locale,
        disabled=False,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    _audit(session, user, "created", actor=actor, now=now)
    session.commit()
    return user


class UserError(InvalidRequest):
    """A user name that cannot be used; `code` lets the console say it in the reader's language."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def describe_scope(user: User) -> str:
    """The role and scope in words, for the audit trail and the CLI: `grid: area xiaoba`."""
    scope = (
        f"sites {user.site_ids.replace(' ', ', ')}"
        if user.site_ids
        else f"area {user.area_id}"
        if user.area_id
        else f"operator {user.operator_id}"
        if user.operator_id
        else f"vehicle {user.vehicle_id}"
        if user.vehicle_id
        else "the whole city"
    )
    return f"{user.role}: {scope}"


def _audit(session: Session, user: User, action: str, *, actor: str, now: datetime) -> None:
    session.add(
        UserEvent(
            at=now, username=user.username, action=action, actor=actor, note=describe_scope(user)
        )
    )


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def user_events(session: Session, username: str) -> list[UserEvent]:
    """A user's audit trail, newest first."""
    query = select(UserEvent).where(UserEvent.username == username)
    return list(session.scalars(query.order_by(UserEvent.id.desc())))


def set_scope(
    session: Session,
    username: str,
    *,
    now: datetime,
    site_ids: Sequence[str] = (),
    area_id: str | None = None,
    operator_id: str | None = None,
    vehicle_id: str | None = None,
    actor: str = COMMAND_LINE,
) -> User:
    """A new scope of the user's own kind (their role stays); it applies from their next page,
    since every request computes the scope afresh (api.auth.scope_of), so sessions go on."""
    user = get_user(session, username)
    role = Role(user.role)
    check_scope(
        session,
        role,
        holder="users",
        site_ids=site_ids,
        area_id=area_id,
        operator_id=operator_id,
        vehicle_id=vehicle_id,
    )
    user.site_ids = " ".join(sorted(set(site_ids)))
    user.area_id, user.operator_id, user.vehicle_id = area_id, operator_id, vehicle_id
    user.updated_at = now
    _audit(session, user, "scope_changed", actor=actor, now=now)
    session.commit()
    return user


def get_user(session: Session, username: str) -> User:
    user = session.get(User, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    return user


def disable_user(
    session: Session, username: str, *, now: datetime, actor: str = COMMAND_LINE
) -> User:
    """The user can no longer log in, and their open sessions end now."""
    user = get_user(session, username)
    user.disabled = True
    user.updated_at = now
    session.execute(delete(ConsoleSession).where(ConsoleSession.username == username))
    _audit(session, user, "disabled", actor=actor, now=now)
    session.commit()
    return user


def reset_password(
    session: Session, username: str, password: str, *, now: datetime, actor: str = COMMAND_LINE
) -> User:
    """A new password (checked against the policy); the user's open sessions end."""
    user = get_user(session, username)
    passwords.check_policy(password, username=username)
    user.password_hash = passwords.hash_password(password)
    user.updated_at = now
    session.execute(delete(ConsoleSession).where(ConsoleSession.username == username))
    _audit(session, user, "password_reset", actor=actor, now=now)
    session.commit()
    return user


def set_locale(session: Session, username: str, locale: str, *, now: datetime) -> User:
    """The language the console speaks to the user from now on."""
    if locale not in LOCALES:
        raise InvalidRequest(f"locale must be one of {', '.join(LOCALES)}, not {locale!r}")
    user = get_user(session, username)
    user.locale = locale
    user.updated_at = now
    session.commit()
    return user


def check_login(session: Session, username: str, password: str) -> User | None:
    """The user these credentials are for; None for an unknown name, a wrong password or a
    disabled account alike (an unknown name costs a hash too, so timing tells nothing)."""
    name = username.strip().lower()
    # A name no user can have (a NUL, 5,000 characters) is unknown without asking the database.
    user = session.get(User, name) if USERNAME.fullmatch(name) else None
    if user is None:
        passwords.verify(password, passwords.DUMMY_HASH)
        return None
    if not passwords.verify(password, user.password_hash) or user.disabled:
        return None
    return user


@dataclass(frozen=True, slots=True)
class OpenedSession:
    row: ConsoleSession
    token: str = field(repr=False)  # goes to the browser's cookie; only its hash is stored


def open_session(session: Session, user: User, *, now: datetime) -> OpenedSession:
    session_id = secrets.token_hex(8)
    token = f"{session_id}_{new_secret()}"
    row = ConsoleSession(
        id=session_id,
        token_hash=token_hash(token),
        username=user.username,
        created_at=now,
        last_seen_at=now,
    )
    session.add(row)
    session.commit()
    return OpenedSession(row, token)


def session_user(
    session: Session, token: str, *, now: datetime, idle: timedelta, max_age: timedelta
) -> User | None:
    """The user of a live session (its last-seen time moves to now); None for an unknown,
    forged or ended session, and for a user disabled since (an ended session is deleted)."""
    session_id, _, secret = token.partition("_")
    if not secret or not SESSION_ID.fullmatch(session_id):
        return None  # not a cookie we made: nothing of it goes to the database
    row = session.get(ConsoleSession, session_id)
    if row is None or not same_hash(token, row.token_hash):
        return None
    user = session.get(User, row.username)
    if (
        user is None
        or user.disabled
        or is_expired(
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            now=now,
            idle=idle,
            max_age=max_age,
        )
    ):
        session.delete(row)
        session.commit()
        return None
    row.last_seen_at = now
    session.commit()
    return user


def close_session(session: Session, token: str) -> None:
    """Logout: the session is gone (an unknown token is ignored)."""
    session_id = token.partition("_")[0]
    row = session.get(ConsoleSession, session_id) if SESSION_ID.fullmatch(session_id) else None
    if row is not None and same_hash(token, row.token_hash):
        session.delete(row)
        session.commit()
