"""Who is calling and what they may see, decided in one place.

Every route declares a `Require` policy (the roles that may call it at all); a route without one
fails tests/test_security_api.py. The caller's scope (`Scope`) is computed once per request from
its key: admins see everything, managers the sites on their key, operators the sites their
company serves, grid officials the sites of their district, street or community (and the
areas at or under it), crews no site (only their vehicle's route of the day). Outside the scope
an id gets exactly the answer of an id that does not exist (no existence oracle;
tests/test_api_hardening.py walks every route with an id)."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import SessionDep, SettingsDep, release
from core.errors import NotAllowed, NotFound
from devices import registry
from devices.models import Site
from security.hashing import token_hash
from security.keys import ApiRole, Principal, Verified, authenticate
from security.scopes import PEOPLE_WHO_READ

_bearer = HTTPBearer(auto_error=False, description="an API key: `binwatch keys create`")
_UNAUTHENTICATED = "a valid API key is required: Authorization: Bearer <key>"


class RateLimiter:
    """A token bucket per API key, in this process's memory: with several API replicas each
    enforces its own, so a key gets up to replicas × the rate (put a shared limiter in the load
    balancer if that matters)."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self._rate, self._burst = rate_per_s, float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> float:
        """0 when `key` may go ahead now (and takes a token), else seconds until it may."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self._rate


class KeyCache:
    """Keys verified in the last `ttl_s` seconds, by the SHA-256 of their token (never the token
    itself), in this process's memory: a request whose key is here skips the registry read
    (issue 18's profile: one SQL read per request). A key revoked meanwhile still works until its
    entry ages out, `BINWATCH_API_KEY_CACHE_S` at most; its expiry is checked at every request
    all the same. Only valid keys are kept, so a wrong token is always looked up; at most
    `size` entries (the oldest go first)."""

    def __init__(self, ttl_s: float, size: int = 10_000) -> None:
        self._ttl, self._size = ttl_s, size
        self._entries: dict[str, tuple[float, Verified]] = {}
        self._lock = threading.Lock()

    def known(self, token: str) -> tuple[bool, Principal | None]:
        """(True, its principal) for a key verified less than `ttl_s` ago, the principal None
        once the key has expired; (False, None) when it must be looked up (`principal`).
        No I/O, so the API asks on the event loop."""
        with self._lock:
            entry = self._entries.get(token_hash(token))
        if entry is None or time.monotonic() >= entry[0]:
            return False, None
        expires_at = entry[1].expires_at
        valid = expires_at is None or datetime.now(UTC) < expires_at
        return True, entry[1].principal if valid else None

    def principal(
        self, session: Session, token: str, *, admin_token: str | None
    ) -> Principal | None:
        """The principal of `token` as `security.keys.authenticate` finds it, from memory when
        it was verified less than `ttl_s` ago."""
        known, principal = self.known(token)
        if known:
            return principal
        verified = authenticate(session, token, now=datetime.now(UTC), admin_token=admin_token)
        digest = token_hash(token)
        with self._lock:
            if verified is None or self._ttl <= 0:
                self._entries.pop(digest, None)
                return verified.principal if verified is not None else None
            if len(self._entries) >= self._size:
                del self._entries[next(iter(self._entries))]
            self._entries[digest] = (time.monotonic() + self._ttl, verified)
        return verified.principal


async def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The authenticated caller (401 otherwise), within its rate (429 with Retry-After). A key
    remembered by the KeyCache is answered on the event loop; only one to look up goes to a
    route thread (a registry read), and its read transaction ends there: each thread hop costs
    the event loop a round trip (docs/performance.md)."""
    keys: KeyCache = request.app.state.keys
    principal = None
    if credentials is not None:
        known, principal = keys.known(credentials.credentials)
        if not known:
            admin = settings.admin_token.get_secret_value() if settings.admin_token else None
            principal = await run_in_threadpool(
                _looked_up, keys, session, credentials.credentials, admin
            )
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            _UNAUTHENTICATED,
            headers={"WWW-Authenticate": "Bearer"},
        )
    limiter: RateLimiter = request.app.state.limiter
    wait = limiter.retry_after(principal.key_id)
    if wait > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"rate limit of {settings.api.rate_per_s:g} requests/s for this key exceeded",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    return principal


def _looked_up(
    keys: KeyCache, session: Session, token: str, admin_token: str | None
) -> Principal | None:
    principal = keys.principal(session, token, admin_token=admin_token)
    release(session)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


class Policy:
    """A route's policy, given as `dependencies=[allow(...)]`: the roles that may call it at all
    (403 with a message for the others). tests/test_security_api.py finds it on every route.
    The roles are keys' (ApiRole) here, people's (security.users.UserRole) on the console."""

    def __init__(self, roles: frozenset[StrEnum]) -> None:
        self.roles = roles

    async def __call__(self, principal: PrincipalDep) -> None:  # no I/O: no thread hop
        if principal.role not in self.roles:
            raise NotAllowed(f"a {principal.role.value} key may not use this endpoint")


class PublicPolicy(Policy):
    """No key needed: only for `/health`, which load balancers and compose health gates poll."""

    def __init__(self) -> None:
        super().__init__(frozenset(ApiRole))

    async def __call__(self) -> None:  # type: ignore[override]
        return None


def allow(*roles: ApiRole) -> Any:
    """The dependency declaring who may call a route."""
    return Depends(Policy(frozenset(roles)))


PUBLIC: Any = Depends(PublicPolicy())
# Everyone who reads the registry within their scope; a crew key is not among them (it reads
# only its vehicle's route: api/routes/routes.py, api/console/crew.py).
EVERYONE: Any = allow(*PEOPLE_WHO_READ)
ADMIN: Any = allow(ApiRole.admin)
# Those who answer for a site's bins and may take an alert on; a grid official oversees (reads)
# but does not handle devices, so an acknowledgement never hides an alert from the manager.
RESPONDERS: Any = allow(ApiRole.admin, ApiRole.manager, ApiRole.operator)


@dataclass(frozen=True, slots=True)
class Scope:
    """The caller, the sites it may see (`sites` None: every site) and the grid areas whose
    figures it may see (`areas` None: every area; a grid official's area and those under it;
    nobody else's)."""

    principal: Principal
    sites: frozenset[str] | None
    areas: frozenset[str] | None = frozenset()

    @property
    def is_admin(self) -> bool:
        return self.principal.role is ApiRole.admin

    def sees(self, site_id: str) -> bool:
        return self.sites is None or site_id in self.sites

    def sees_area(self, area_id: str) -> bool:
        return self.areas is None or area_id in self.areas

    def area(self, area_id: str) -> None:
        """Reading an area: NotFound, word for word as for a missing one, when out of scope."""
        if not self.sees_area(area_id):
            raise NotFound(f"no area with id {area_id!r}")

    def site(self, site_id: str) -> None:
        """Reading a site: NotFound, word for word as for a missing one, when out of scope."""
        if not self.sees(site_id):
            raise NotFound(f"no site with id {site_id!r}")

    def bin(self, bin_site_id: str, bin_id: str) -> None:
        if not self.sees(bin_site_id):
            raise NotFound(f"no bin with id {bin_id!r}")


async def get_scope(principal: PrincipalDep, session: SessionDep) -> Scope:
    """The caller's scope: a grid official's and an operator's are read from the registry on a
    route thread; the others need no I/O (the session holds no connection after
    `get_principal`) and are made on the event loop."""
    if principal.role in (ApiRole.grid, ApiRole.operator):
        return await run_in_threadpool(scope_of, principal, session)
    return scope_of(principal, session)


def scope_of(principal: Principal, session: Session) -> Scope:
    """What `principal` may see; the console's people get theirs here too (api.console). A grid
    official's sites are those the registry places in their area now, so a site moved out of
    it drops out of their scope at once."""
    if principal.role is ApiRole.admin:
        release(session)
        return Scope(principal, None, None)
    if principal.role is ApiRole.grid:
        areas = registry.grid(session).under(principal.area_id or "")
        sites = registry.site_ids_in(session, areas)
        release(session)
        return Scope(principal, sites, areas)
    if principal.role is ApiRole.manager:
        release(session)
        return Scope(principal, principal.site_ids)
    if principal.role is ApiRole.crew:  # no site: its vehicle's stops come with the route
        release(session)
        return Scope(principal, frozenset())
    served = frozenset(
        session.scalars(select(Site.id).where(Site.operator_id == principal.operator_id))
    )
    release(session)
    return Scope(principal, served)


ScopeDep = Annotated[Scope, Depends(get_scope)]
