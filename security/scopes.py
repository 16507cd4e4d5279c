"""Who may see what, as stored on an API key or a console user: one list of roles and one rule
for the scope each role carries, so a person and a machine of the same role are scoped alike
(api.auth turns either into the same `Scope`)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidRequest, no_such
from devices.models import Area, Operator, Site, Vehicle

GRID_AREA_KINDS: Final = frozenset({"district", "street", "community"})


class Role(StrEnum):
    admin = "admin"  # city staff: everything
    manager = "manager"  # a property manager: their sites
    grid = "grid"  # a grid official: the sites of their district, street or community
    operator = "operator"  # an operator company: the sites it serves, its own requests
    crew = "crew"  # an operator's vehicle crew: that vehicle's stops of the day, nothing else


class ScopeError(InvalidRequest):
    """A scope that does not fit the role or names what does not exist; `code` and `values`
    let the console say it in the reader's language (the message is the CLI's and the API's)."""

    def __init__(self, message: str, code: str, **values: str) -> None:
        super().__init__(message)
        self.code, self.values = code, values


# Each role's kind of scope; admins have none (the whole city).
_WANTED: Final = {
    Role.manager: "site",
    Role.grid: "area",
    Role.operator: "operator",
    Role.crew: "vehicle",
}
_NOUN: Final = {
    "site": "a site",
    "area": "an area",
    "operator": "an operator",
    "vehicle": "a vehicle",
}
PEOPLE_WHO_READ: Final = (Role.admin, Role.grid, Role.manager, Role.operator)
"""The roles that read the registry's sites, bins, requests and figures (within their scope); a
crew sees only its vehicle's stops of the day (api/console/crew.py)."""


def check_scope(
    session: Session,
    role: Role,
    *,
    holder: str,
    site_ids: Sequence[str] = (),
    area_id: str | None = None,
    operator_id: str | None = None,
    vehicle_id: str | None = None,
) -> None:
    """Each role names exactly its own kind of scope, and it must exist; ScopeError otherwise.
    `holder` is what the message calls the scoped thing ("users", "keys")."""
    given = {
        "site": bool(site_ids),
        "area": area_id is not None,
        "operator": bool(operator_id),
        "vehicle": bool(vehicle_id),
    }
    for kind, present in given.items():
        if present and _WANTED.get(role) != kind:
            raise ScopeError(
                f"{role.value} {holder} are not scoped to {_NOUN[kind]}", "scope_not_" + kind
            )
        if not present and _WANTED.get(role) == kind:
            raise ScopeError(f"{role.value} {holder} need {_NOUN[kind]}", "scope_needs_" + kind)
    if site_ids:
        found = set(session.scalars(select(Site.id).where(Site.id.in_(site_ids))))
        if missing := set(site_ids) - found:
            raise ScopeError(no_such("site", missing), "no_site", ids=", ".join(sorted(missing)))
    if area_id is not None:
        area = session.get(Area, area_id)
        if area is None or area.kind not in GRID_AREA_KINDS:
            raise ScopeError(
                f"a grid official's area is a district, street or community: {area_id!r} is none",
                "no_area",
                ids=area_id,
            )
    if operator_id and session.get(Operator, operator_id) is None:
        raise ScopeError(no_such("operator", [operator_id]), "no_operator", ids=operator_id)
    if vehicle_id and session.get(Vehicle, vehicle_id) is None:
        raise ScopeError(no_such("vehicle", [vehicle_id]), "no_vehicle", ids=vehicle_id)
