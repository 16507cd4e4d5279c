"""Paging, the same on every list and readings route: a page holds at most a capped number of
rows, and `next` is the URL of the following page (null on the last one), the request's own
path and query with the cursor moved on, so every filter carries over. A keyset cursor for
registry lists (`after`: the sort key of the page's last row; counted on a first page only), an
offset for a site's bins; a time cursor for readings, whose next page starts at the first row
this one left out."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query, Request
from starlette.datastructures import URL

from api.schemas import EARLIEST, ID_REGEX, LATEST
from core.errors import InvalidRequest
from core.times import rfc3339
from devices.models import MAX_ROW_ID

MAX_ROWS = 5000
"""Rows in one page of readings or buckets: bounds the API's memory per request (~1 KB a row
while it is built) whatever a bin wrote; bench/api.py measures RSS under 20 such requests."""

RowLimit = Annotated[
    int, Query(ge=1, le=MAX_ROWS, description=f"rows per page, at most {MAX_ROWS}; see `next`")
]


def _here(request: Request) -> URL:
    return URL(request.url.path + ("?" + request.url.query if request.url.query else ""))


AFTER_MAX = 200
After = Annotated[
    str | None,
    Query(
        max_length=AFTER_MAX,
        description="where the page starts: the cursor that `next` carries (opaque); "
        "instead of `offset`",
    ),
]


def cursor(*values: str | int | datetime) -> str:
    """The `after` cursor of a row: its sort key values, as URL-safe base64 of a JSON list."""
    # Times to the microsecond (rfc3339 keeps milliseconds: rows within one would be skipped).
    plain = [v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def read_cursor(text: str | None, offset: int, *kinds: type) -> tuple[Any, ...] | None:
    """The sort key values in an `after` cursor, each of the type in `kinds` (None without
    one); InvalidRequest (422) for a cursor this list did not make, or with an offset."""
    if text is None:
        return None
    if offset:
        raise InvalidRequest("give either offset or after, not both")
    try:
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError(text)
        return tuple(_typed(value, kind) for value, kind in zip(values, kinds, strict=True))
    except ValueError as error:  # binascii.Error and JSONDecodeError are ValueErrors
        raise InvalidRequest(
            "after is not a cursor of this list: use the next URL of a page as given"
        ) from error


def _typed(value: object, kind: type) -> Any:
    if kind is datetime and isinstance(value, str):
        # Only what cursor() writes: an aware time in the API's range (TimeParam's), in UTC. A
        # forged 0001-01-01T00:00:00+14:00 was a 500: UTC has no such moment (OverflowError).
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None or not EARLIEST <= moment < LATEST:
            raise ValueError(value)
        return moment.astimezone(UTC)
    if kind is int and type(value) is int and 0 <= value <= MAX_ROW_ID:
        return value
    if kind is str and isinstance(value, str) and re.fullmatch(ID_REGEX, value):
        return value
    raise ValueError(value)


def next_after(request: Request, more: bool, *values: str | int | datetime) -> str | None:
    """The next page of a keyset list (the key `values` of this page's last row), or None
    when nothing follows: the same request with `after` set and `offset` dropped."""
    if not more:
        return None
    here = _here(request).remove_query_params("offset")
    return str(here.include_query_params(after=cursor(*values)))


def next_offset(request: Request, *, offset: int, limit: int, total: int) -> str | None:
    """The next page of an offset list, or None when this one reaches the end."""
    if offset + limit >= total:
        return None
    return str(_here(request).include_query_params(offset=offset + limit))


def next_start(request: Request, first_left_out: datetime) -> str:
    """The next page of a time series: the same request from the first row not sent."""
    return str(_here(request).include_query_params(start=rfc3339(first_left_out)))
