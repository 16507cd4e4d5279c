"""Paging, the same on every list and readings route: a page holds at most a capped number of
rows, and `next` is the URL of the following page (null on the last one), the request's own
path and query with the cursor moved on, so every filter carries over. Offsets for registry
lists (ordered, counted); a time cursor for readings, whose next page starts at the first row
this one left out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query, Request
from starlette.datastructures import URL

from core.times import rfc3339

MAX_ROWS = 5000
"""Rows in one page of readings or buckets: bounds the API's memory per request (~1 KB a row
while it is built) whatever a bin wrote; bench/api.py measures RSS under 20 such requests."""

RowLimit = Annotated[
    int, Query(ge=1, le=MAX_ROWS, description=f"rows per page, at most {MAX_ROWS}; see `next`")
]


def _here(request: Request) -> URL:
    return URL(request.url.path + ("?" + request.url.query if request.url.query else ""))


def next_offset(request: Request, *, offset: int, limit: int, total: int) -> str | None:
    """The next page of an offset list, or None when this one reaches the end."""
    if offset + limit >= total:
        return None
    return str(_here(request).include_query_params(offset=offset + limit))


def next_start(request: Request, first_left_out: datetime) -> str:
    """The next page of a time series: the same request from the first row not sent."""
    return str(_here(request).include_query_params(start=rfc3339(first_left_out)))
