"""The grid drill-down's rules and the area scope, without a server: the tree walk, where each
caller starts, breadcrumbs that stop at the caller's own area, overdue requests and the
escalation level each kind of area answers for, and `Scope` on areas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.auth import Scope
from api.console.drilldown import (
    DEFAULT_DAYS,
    REPORT_DAYS,
    crumbs,
    home,
    overdue,
    report_days,
    waiting_for,
)
from api.console.labels import REPORT_PERIODS
from collection.models import CollectionRequest
from core.errors import NotFound
from devices.grid import Grid, Place
from security.keys import ApiRole, Principal

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
GRID = Grid.of(
    [
        Place("city", "City", "city", None),
        Place("d1", "District 1", "district", "city"),
        Place("d2", "District 2", "district", "city"),
        Place("s1", "Street 1", "street", "d1"),
        Place("s2", "Street 2", "street", "d1"),
        Place("s3", "Street 3", "street", "d2"),
        Place("c1", "Community 1", "community", "s1"),
        Place("c2", "Community 2", "community", "s1"),
        Place("c3", "Community 3", "community", "s3"),
    ]
)


def test_under_an_area_are_itself_and_everything_below_it() -> None:
    assert GRID.under("d1") == {"d1", "s1", "s2", "c1", "c2"}
    assert GRID.under("c3") == {"c3"}
    assert GRID.under("city") == set(GRID.places)
    assert GRID.under("nowhere") == frozenset()
    assert [p.id for p in GRID.children("s1")] == ["c1", "c2"]
    assert GRID.children("c1") == []


def test_a_cycle_in_the_registry_does_not_hang_the_walk() -> None:
    looped = Grid.of([Place("a", "A", "street", "b"), Place("b", "B", "community", "a")])
    assert looped.under("a") == {"a", "b"}
    assert looped.path("a", top="x") is None


@pytest.mark.parametrize(
    ("area_id", "top", "expected"),
    [
        ("c1", "city", ["city", "d1", "s1", "c1"]),
        ("c1", "d1", ["d1", "s1", "c1"]),
        ("c1", "c1", ["c1"]),
        ("s1", "c1", None),  # a community official may not go up to their street
        ("c3", "d1", None),  # nor a district official into another district
        ("nowhere", "city", None),
    ],
)
def test_breadcrumbs_run_from_the_callers_own_area_down(
    area_id: str, top: str, expected: list[str] | None
) -> None:
    path = crumbs(GRID, area_id, top=top)
    assert (None if path is None else [p.id for p in path]) == expected


def test_the_admin_starts_at_the_city_and_an_official_at_their_area() -> None:
    assert home(GRID, None) == GRID.places["city"]
    assert home(GRID, "s3") == GRID.places["s3"]
    assert home(GRID, "gone") is None
    assert home(Grid.of([]), None) is None


def _request(n: int, *, due_in_h: float, level: int = 0) -> CollectionRequest:
    return CollectionRequest(id=n, due_at=NOW + timedelta(hours=due_in_h), escalation_level=level)


def test_overdue_requests_are_those_past_their_deadline_longest_overdue_first() -> None:
    requests = [
        _request(1, due_in_h=-1),
        _request(2, due_in_h=1),
        _request(3, due_in_h=-30, level=2),
        _request(4, due_in_h=0),  # due this very moment: overdue, as the collector escalates
    ]
    assert [r.id for r in overdue(requests, NOW)] == [3, 1, 4]


def test_a_community_answers_from_level_1_a_street_at_level_2_nobody_else_has_a_level() -> None:
    late = [_request(1, due_in_h=-1), _request(2, due_in_h=-5, level=1)]
    late.append(_request(3, due_in_h=-9, level=2))
    assert [r.id for r in waiting_for("community", late) or []] == [2, 3]
    assert [r.id for r in waiting_for("street", late) or []] == [3]
    assert waiting_for("district", late) is None
    assert waiting_for("city", late) is None


def test_report_periods_offered_are_named_and_anything_else_falls_back() -> None:
    assert set(REPORT_DAYS) == set(REPORT_PERIODS)
    assert DEFAULT_DAYS in REPORT_DAYS
    assert report_days(30) == 30
    assert report_days(None) == report_days(5) == report_days(-1) == DEFAULT_DAYS


def test_scope_on_areas_admin_all_grid_their_subtree_others_none() -> None:
    official = Scope(
        Principal("g", ApiRole.grid, area_id="s1"), frozenset({"site"}), GRID.under("s1")
    )
    assert official.sees_area("c2") and not official.sees_area("d1")
    official.area("s1")
    with pytest.raises(NotFound, match=r"^no area with id 'd1'$"):
        official.area("d1")
    assert Scope(Principal("a", ApiRole.admin), None, None).sees_area("anything")
    manager = Scope(Principal("m", ApiRole.manager, frozenset({"x"})), frozenset({"x"}))
    assert not manager.sees_area("c1")
