"""The routes benchmark's tiled city (bench/routes.py, `city`): each copy's sites name their
depot in their own copy, as a fleet file of the whole city would, so each depot's part of the
day is its own copy's bins, where by nearest depot the copies' edges went to their neighbours'
(docs/performance.md, "where the city's kilometres go"). No servers."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bench.routes import city, shifts
from collection.planning import Job
from collection.routing import _by_depot
from devices.contract import Stream

OPERATOR = "op-jiejing"  # the operator whose bins lie nearer other copies' depots


def test_each_copys_sites_name_their_operators_depot_in_their_own_copy() -> None:
    town = city(4)
    own = {
        (vehicle.id.split("-")[0], operator): depot for operator, vehicle, depot in town.vehicles
    }
    assert len(set(own.values())) == 8  # 4 copies × 2 operators, a depot each
    for tags in town.bins:
        copy = tags.bin.split("-")[0]  # "c0-…"
        assert town.depots[tags.bin] == own[copy, tags.operator], tags.bin


def test_the_citys_depots_take_their_own_copys_bins_where_nearest_took_the_neighbours() -> None:
    town = city(23)
    (vehicles,) = [
        v for o, v in shifts(town, datetime(2026, 11, 23), ZoneInfo("Asia/Shanghai")).items()
        if o == OPERATOR
    ]  # fmt: skip
    bins = [t for t in town.bins if t.operator == OPERATOR]
    per_copy = Counter(t.bin.split("-")[0] for t in bins)
    sizes = {}
    for named in (True, False):
        jobs = [
            Job(t.bin, t.bin, t.site, Stream(t.stream), town.places[t.bin], town.capacity[t.bin],
                timedelta(minutes=2), depot=town.depots[t.bin] if named else None)
            for t in bins
        ]  # fmt: skip
        parts, left = _by_depot(jobs, vehicles)
        assert left == []
        copies = [{j.id.split("-")[0] for j in part} for _vehicles, part in parts]
        if named:
            assert all(len(found) == 1 for found in copies)  # one copy's bins each
            mine = {vs[0].id.split("-")[0]: len(part) for vs, part in parts}
            assert mine == dict(per_copy)  # and all of them, at the copy's own depot
        sizes[named] = sorted(len(part) for _vehicles, part in parts)
    assert sizes[True][0] == sizes[True][-1] == 244  # the pilot's op-jiejing bins, every copy
    assert sizes[False][-1] > 244 > sizes[False][0]  # by nearest: a depot amid others takes more
