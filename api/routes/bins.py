"""Bins: one bin's registry entry, its latest reading and its time series."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api import queries
from api.auth import EVERYONE, ScopeDep
from api.deps import BinId, InfluxDep, SessionDep, WindowDep, release
from api.paging import MAX_ROWS, RowLimit, next_start
from api.schemas import BinDetail, ReadingSeries
from devices import registry

router = APIRouter(prefix="/bins", tags=["bins"])


@router.get("/{bin_id}", response_model=BinDetail, dependencies=[EVERYONE])
def get_bin(bin_id: BinId, session: SessionDep, influx: InfluxDep, scope: ScopeDep) -> BinDetail:
    """A bin, the site it stands at, and its latest reading (null if it never reported)."""
    bin_ = registry.get_bin(session, bin_id)
    scope.bin(bin_.site_id, bin_id)
    release(session)
    return BinDetail.of_bin(bin_, queries.latest_of_bin(influx, bin_.id))


@router.get("/{bin_id}/readings", response_model=ReadingSeries, dependencies=[EVERYONE])
def bin_readings(
    bin_id: BinId,
    window: WindowDep,
    session: SessionDep,
    influx: InfluxDep,
    scope: ScopeDep,
    request: Request,
    limit: RowLimit = MAX_ROWS,
) -> ReadingSeries:
    """A bin's readings from start to end: raw, or downsampled into buckets of `every`; at
    most `limit` rows a page, `next` the URL of the following page."""
    scope.bin(registry.get_bin(session, bin_id).site_id, bin_id)
    release(session)
    fetch = queries.buckets if window.every else queries.raw_readings
    rows = fetch(influx, bin_id, window, limit + 1)  # one more: is there a next page?
    return ReadingSeries(
        bin_id=bin_id,
        start=window.start,
        end=window.end,
        every=window.every,
        rows=rows[:limit],
        next=next_start(request, rows[limit].time) if len(rows) > limit else None,
    )
