"""The console's people and their sessions, in the registry database (issue 15).

A user has a role and a scope like an API key (managers: sites; grid officials: an area;
operators: their company; admins: the city). A login opens a server-side session whose token
goes to the browser in a cookie; only the token's SHA-256 is stored, as for API keys, so the
table cannot be replayed. Nothing here logs a password or a token."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.errors import InvalidRequest, NotFound, no_such
from devices.models import Area, Operator, Site
from security import passwords
from security.hashing import new_secret, same_hash, token_hash
from security.models import LOCALES, ConsoleSession, User
from security.session_rules import is_expired

USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,63}$")
GRID_AREA_KINDS = frozenset({"district", "street", "community"})


class UserRole(StrEnum):
    admin = "admin"  # city staff: everything
    manager = "manager"  # a property manager: their sites
    grid = "grid"  # a grid official: the sites of their district, street or community
    operator = "operator"  # an operator company's staff: the sites it serves


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
    locale: str = "zh_CN",
) -> User:
    """A new user; InvalidRequest saying what to fix for a bad name, password, scope or locale."""
    if not USERNAME.match(username):
        raise InvalidRequest(
            "a user name is 2–64 lower-case letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    if session.get(User, username) is not None:
        raise InvalidRequest(f"user {username!r} exists already")
    if locale not in LOCALES:
        raise InvalidRequest(f"locale must be one of {', '.join(LOCALES)}, not {locale!r}")
    _check_scope(session, role, site_ids, area_id, operator_id)
    passwords.check_policy(password, username=username)
    user = User(
        username=username,
        display_name=display_name or username,
        password_hash=passwords.hash_password(password),
        role=role.value,
        site_ids=" ".join(sorted(set(site_ids))),
        area_id=area_id,
        operator_id=operator_id,
        locale=locale,
        disabled=False,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    session.commit()
    return user


def _check_scope(
    session: Session,
    role: UserRole,
    site_ids: Sequence[str],
    area_id: str | None,
    operator_id: str | None,
) -> None:
    """Each role names exactly its own kind of scope, and it must exist."""
    wanted = {UserRole.manager: "site", UserRole.grid: "area", UserRole.operator: "operator"}
    given = {
        "site": bool(site_ids),
        "area": area_id is not None,
        "operator": operator_id is not None,
    }
    noun = {"site": "a site", "area": "an area", "operator": "an operator"}
    for kind, present in given.items():
        if present and wanted.get(role) != kind:
            raise InvalidRequest(f"{role.value} users are not scoped to {noun[kind]}")
        if not present and wanted.get(role) == kind:
            raise InvalidRequest(f"{role.value} users need {noun[kind]}")
    if site_ids:
        found = set(session.scalars(select(Site.id).where(Site.id.in_(site_ids))))
        if missing := set(site_ids) - found:
            raise InvalidRequest(no_such("site", missing))
    if area_id is not None:
        area = session.get(Area, area_id)
        if area is None or area.kind not in GRID_AREA_KINDS:
            raise InvalidRequest(
                f"a grid official's area is a district, street or community: {area_id!r} is none"
            )
    if operator_id is not None and session.get(Operator, operator_id) is None:
        raise InvalidRequest(no_such("operator", [operator_id]))


def get_user(session: Session, username: str) -> User:
    user = session.get(User, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    return user


def disable_user(session: Session, username: str, *, now: datetime) -> User:
    """The user can no longer log in, and their open sessions end now."""
    user = get_user(session, username)
    user.disabled = True
    user.updated_at = now
    session.execute(delete(ConsoleSession).where(ConsoleSession.username == username))
    session.commit()
    return user


def reset_password(session: Session, username: str, password: str, *, now: datetime) -> User:
    """A new password (checked against the policy); the user's open sessions end."""
    user = get_user(session, username)
    passwords.check_policy(password, username=username)
    user.password_hash = passwords.hash_password(password)
    user.updated_at = now
    session.execute(delete(ConsoleSession).where(ConsoleSession.username == username))
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
    user = session.get(User, username.strip().lower())
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
    if not secret:
        return None
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
    row = session.get(ConsoleSession, session_id)
    if row is not None and same_hash(token, row.token_hash):
        session.delete(row)
        session.commit()
