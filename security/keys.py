"""API keys: issued with a role and a scope, stored as hashes, revocable, with an expiry.

A token reads `bw_<key id>_<secret>`: the id finds the row without scanning, the hash of the
whole token proves it. `BINWATCH_ADMIN_TOKEN`, when set, is an admin key that lives only in the
environment: enough to create the first real keys on a fresh install, and gone once unset."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidRequest, NotFound
from security.hashing import new_secret, same_hash, token_hash
from security.models import ApiKey
from security.scopes import Role, check_scope

TOKEN_PREFIX = "bw_"
BOOTSTRAP_KEY_ID = "bootstrap-admin"
ACTOR_MAX = 100
"""Characters of the registry's actor columns (audit trails of collection requests and alerts)."""


ApiRole = Role  # keys and people share one list of roles (security.scopes)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, its role and what it was scoped to when issued (a manager's
    sites, an operator's company, a grid official's area); or a person logged in to the
    console (`kind` "user", `key_id` their user name)."""

    key_id: str
    role: ApiRole
    site_ids: frozenset[str] = frozenset()
    operator_id: str | None = None
    name: str = ""
    kind: str = "key"
    area_id: str | None = None
    vehicle_id: str | None = None

    @property
    def actor(self) -> str:
        """How an audit trail names this caller: role, key id (or user name) and the name,
        within the 100 characters an actor column holds (a long name is cut; the id identifies)."""
        head = f"{self.role.value} {self.kind} {self.key_id} ("
        room = ACTOR_MAX - len(head) - 1
        name = self.name if len(self.name) <= room else self.name[: room - 1] + "…"
        return f"{head}{name})"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    token: str  # shown once: only its hash is stored


def create_key(
    session: Session,
    *,
    name: str,
    role: ApiRole,
    now: datetime,
    site_ids: Sequence[str] = (),
    operator_id: str | None = None,
    area_id: str | None = None,
    vehicle_id: str | None = None,
    expires_at: datetime | None = None,
) -> IssuedKey:
    """A new key; its scope must fit its role (security.scopes.check_scope): registered sites
    (manager), an operator (operator), a district, street or community (grid), a vehicle (crew)."""
    check_scope(
        session,
        role,
        holder="keys",
        site_ids=site_ids,
        area_id=area_id,
        operator_id=operator_id,
        vehicle_id=vehicle_id,
    )
    if expires_at is not None and expires_at <= now:
        raise InvalidRequest("the expiry must be in the future")
    key_id = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}{key_id}_{new_secret()}"
    key = ApiKey(
        id=key_id,
        token_hash=token_hash(token),
        name=name,
        role=role.value,
        site_ids=" ".join(sorted(set(site_ids))),
        operator_id=operator_id,
        area_id=area_id,
        vehicle_id=vehicle_id,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(key)
    session.commit()
    return IssuedKey(key, token)


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def revoke_key(session: Session, key_id: str, *, now: datetime) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key with id {key_id!r}")
    if key.revoked_at is None:
        key.revoked_at = now
        session.commit()
    return key


@dataclass(frozen=True, slots=True)
class Verified:
    """A key found valid: who it stands for and until when (None: no expiry)."""

    principal: Principal
    expires_at: datetime | None


def authenticate(
    session: Session, token: str, *, now: datetime, admin_token: str | None
) -> Verified | None:
    """Who a bearer token stands for, and the key's expiry (api.auth.KeyCache remembers it a
    while and must stop honouring the key at its expiry); None for an unknown, wrong, revoked
    or expired one (the caller gets one answer for all four, so a probe learns nothing)."""
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Verified(
            Principal(BOOTSTRAP_KEY_ID, ApiRole.admin, name="BINWATCH_ADMIN_TOKEN"), None
        )
    key_id, _, secret = token.removeprefix(TOKEN_PREFIX).partition("_")
    if not token.startswith(TOKEN_PREFIX) or not secret:
        return None
    key = session.get(ApiKey, key_id)
    if key is None or not same_hash(token, key.token_hash):
        return None
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        return None
    principal = Principal(
        key.id,
        ApiRole(key.role),
        frozenset(key.site_ids.split()),
        key.operator_id,
        key.name,
        area_id=key.area_id,
        vehicle_id=key.vehicle_id,
    )
    return Verified(principal, key.expires_at)
