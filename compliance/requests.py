"""The registry reads behind a report's collection figures (docs/metrics.md, "Collection").

One query per report, whatever its length and breakdown: one row per request, keyed by site
and period, with its verdicts computed in SQL (each request judged against its deadline, as a
few bits) and, once completed, its minutes to completion for the percentiles. Python counts
the bits; no ORM object, not even a Row, is made: a district's year may hold ~100k requests. The arithmetic is compliance/figures.py's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import ColumnElement, Executable, case, extract, func, literal, select
from sqlalchemy.orm import Session

from collection.lifecycle import OPEN, Status
from collection.models import CollectionRequest
from compliance.figures import RequestSums

Key = tuple[str, int]  # (site id, period index)

_R = CollectionRequest

# A request's verdicts, as bits of one small integer per row (two may be set at once).
ON_TIME, MISSED, DISPUTED, ESCALATED = 1, 2, 4, 8


def request_sums(
    session: Session,
    site_ids: Sequence[str],
    *,
    start: datetime,
    end: datetime,
    as_of: datetime,
    splits: Sequence[datetime] = (),
    operator_id: str | None = None,
) -> dict[Key, RequestSums]:
    """The requests created in [start, end) at these sites (and, for an operator's report,
    assigned to `operator_id`), by (site, period): period i runs from splits[i - 1] to
    splits[i] (ascending instants inside the window; none: one period, 0). An open request is
    judged at `as_of`: missed once its deadline has come, else not judged yet. Keys without
    requests are left out."""
    if not site_ids:
        return {}
    conditions = [_R.site_id.in_(list(site_ids)), _R.created_at >= start, _R.created_at < end]
    if operator_id is not None:
        conditions.append(_R.operator_id == operator_id)
    # Without splits every request is in period 0: no CASE to evaluate, no column to read.
    keys = (_R.site_id, _period(splits)) if splits else (_R.site_id,)
    rows = _tuples(session, select(*keys, _verdicts(as_of), _minutes(session)).where(*conditions))
    # Whatever their order, the rows are gathered by key in one pass over runs of equal keys
    # (long ones: SQLite, reading the site_id index, returns each site's rows together), each
    # key keeping its rows in the order they came.
    requests: dict[Key, list[tuple[Any, ...]]] = {}
    for key, run in groupby(rows, itemgetter(0, 1) if splits else itemgetter(0)):
        requests.setdefault(key if splits else (key, 0), []).extend(run)
    # In (site, period) order, as a GROUP BY would return them.
    return {
        (site_id, int(index)): _sums(requests[site_id, index])
        for site_id, index in sorted(requests)
    }


def _sums(rows: list[tuple[Any, ...]]) -> RequestSums:
    """One key's figures from its rows (…, verdict bits, minutes or None)."""
    verdicts = Counter(map(itemgetter(-2), rows))  # a handful of distinct values

    def having(bit: int) -> int:
        return sum(count for bits, count in verdicts.items() if bits & bit)

    return RequestSums(
        requests=len(rows),
        on_time=having(ON_TIME),
        missed=having(MISSED),
        disputes=having(DISPUTED),
        escalations=having(ESCALATED),
        response_minutes=tuple(row[-1] for row in rows if row[-1] is not None),
    )


def _tuples(session: Session, statement: Executable) -> Sequence[tuple[Any, ...]]:
    """The statement's rows as the driver returns them: plain tuples, unconverted (none of the
    columns read here has a result type to apply). Row objects would double the cost of a
    year's ~100k rows, mostly in the garbage collector, which walks them again and again as
    they pile up, whereas tuples of numbers and strings drop out of its sight. Pending changes
    are flushed first, as Session.execute() would."""
    if session.autoflush:
        session.flush()
    result = session.connection().execute(statement)
    try:
        rows: Sequence[tuple[Any, ...]] = result.cursor.fetchall()
    finally:
        result.close()
    return rows


def _verdicts(as_of: datetime) -> ColumnElement[int]:
    """A request's verdict bits: ON_TIME when completed by its deadline; MISSED when completed
    after it, or open with its deadline come by `as_of`; DISPUTED, ESCALATED."""
    completed = _R.completed_at.is_not(None)
    return (
        case((completed & (_R.completed_at <= _R.due_at), ON_TIME), else_=0)
        + case(
            (completed & (_R.completed_at > _R.due_at), MISSED),
            (_R.status.in_([s.value for s in OPEN]) & (_R.due_at <= as_of), MISSED),
            else_=0,
        )
        + case((_R.status == Status.disputed.value, DISPUTED), else_=0)
        + case((_R.escalation_level > 0, ESCALATED), else_=0)
    )


def _period(splits: Sequence[datetime], low: int = 0, high: int | None = None) -> Any:
    """The index of the period a request's creation falls in, among periods low..high: a
    binary search written as nested CASEs, so a year by day costs each row 9 comparisons, not
    up to 366."""
    high = len(splits) if high is None else high
    if low == high:
        return literal(low)
    middle = (low + high) // 2  # splits[middle] ends period `middle`
    return case(
        (_R.created_at < splits[middle], _period(splits, low, middle)),
        else_=_period(splits, middle + 1, high),
    )


def _minutes(session: Session) -> ColumnElement[Any]:
    """Minutes from creation to completion (NULL until completed), to the millisecond, computed
    by the database (SQLite and PostgreSQL, the two the registry runs on: docs/deployment.md).
    Rounded there because SQLite's julianday() carries a few microseconds of noise."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":  # timestamps are text there; julianday() reads them
        ms = (func.julianday(_R.completed_at) - func.julianday(_R.created_at)) * 86_400_000.0
    elif dialect == "postgresql":
        ms = extract("epoch", _R.completed_at - _R.created_at) * 1000.0
    else:
        raise NotImplementedError(f"collection figures need SQLite or PostgreSQL, not {dialect}")
    return func.round(ms) / 60_000.0
