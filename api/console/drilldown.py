"""The grid drill-down's rules, pure: where a grid official (or the admin) starts, the
breadcrumbs down to an area, and which overdue collection requests wait for an area's level.

The escalation path is the pilot's: a request still waiting at its deadline escalates to level
1, "the community blows the whistle", and 4 hours later to level 2, "the street's squad reports
for duty" (docs/collection.md). So a community's officials answer for its requests at level 1
or more, a street's for those at level 2; districts and the city see every overdue request."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Final

from collection.models import CollectionRequest
from devices.grid import Grid, Place

# The escalation level at which a request waits for an area of this kind (docs/collection.md).
WAITING_LEVEL: Final = {"community": 1, "street": 2}
REPORT_DAYS: Final = (1, 7, 30)  # the periods a grid page offers; 7, the API's default, first
DEFAULT_DAYS: Final = 7


def home(grid: Grid, area_id: str | None) -> Place | None:
    """Where the drill-down starts: the official's own area; for the admin (no area) the city.
    None when there is no such area (a registry without a grid)."""
    if area_id is not None:
        return grid.places.get(area_id)
    roots = grid.roots()
    return roots[0] if roots else None


def crumbs(grid: Grid, area_id: str, *, top: str) -> list[Place] | None:
    """The areas from the caller's `top` down to `area_id` (both included); None when the area
    is not under `top`, which the page answers like an area that does not exist."""
    return grid.path(area_id, top=top)


def overdue(requests: Iterable[CollectionRequest], now: datetime) -> list[CollectionRequest]:
    """The requests still waiting for a crew at or after their deadline, the longest overdue
    first (the caller passes only open, dispatched and acknowledged requests)."""
    return sorted((r for r in requests if r.due_at <= now), key=lambda r: (r.due_at, r.id))


def waiting_for(kind: str, requests: Iterable[CollectionRequest]) -> list[CollectionRequest] | None:
    """Of overdue `requests`, those escalated to an area of this kind's level; None for the kinds
    no escalation goes to (district, city)."""
    level = WAITING_LEVEL.get(kind)
    if level is None:
        return None
    return [r for r in requests if r.escalation_level >= level]


def report_days(asked: int | None) -> int:
    """The period asked for, when the page offers it; else the default."""
    return asked if asked in REPORT_DAYS else DEFAULT_DAYS
