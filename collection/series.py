"""The InfluxDB side of collection: the readings its rules and its verification look at, and
the `collections` measurement it writes, one point per lifecycle event.

The points also carry what Grafana needs to answer "now" and "how fast" in one InfluxQL query
each (dashboards/README.md): the request's status is a tag, so each status is a series of its
own and InfluxQL cannot take a request's latest one. `open` and `overdue` are therefore fields,
written on every point that starts, continues or ends the wait for a crew; a bin has at most one
request waiting at a time (the partial unique index), so the latest `open` of a bin says whether
it has one now. The completion point carries `within_deadline`, and its `age_s` is the response
time.

Verification compares the time ingest *received* a reading (`received_ms`, the platform's
clock) with the completion time (the platform's clock too), never the bin's own `ts`: a bin
whose clock is wrong, or a simulator replaying yesterday, must not make a reading taken after
the emptying look as if it came before it (or the other way round).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from collection.lifecycle import OPEN, Status
from collection.models import CollectionEvent, CollectionRequest
from collection.rules import FillPoint
from core.influx import InfluxClient
from core.lineprotocol import FieldValue, point, tag_set
from core.telemetry import MEASUREMENT as TELEMETRY
from core.times import epoch_ms, epoch_ns, from_epoch_ms
from devices.registry import BinTags

MEASUREMENT: Final = "collections"
# A reading's `ts` may lag its receipt by this much and still count for verification: covers the
# simulator's one-day replay and any device clock that is wrong by less than a day; the bound
# keeps the query to a few days of one bin's series rather than its whole retention.
TS_SLACK: Final = timedelta(days=2)
# The forecast reads this much history, averaged in buckets of this width: enough to see a
# trend, few enough rows for the whole fleet in one query.
FORECAST_HISTORY: Final = timedelta(hours=3)
FORECAST_BUCKET: Final = "15m"
# A route plan also reads the last day in hourly means (`collection.rules.daily_gain`).
DAY_HISTORY: Final = timedelta(hours=25)
DAY_BUCKET: Final = "1h"


def lowest_fill_after(
    influx: InfluxClient, bin_id: str, *, completed_at: datetime, until: datetime
) -> float | None:
    """The lowest fill a bin reported among the readings received from `completed_at` up to
    `until`; None when none arrived."""
    series = influx.query(
        f"SELECT min(fill_pct) FROM {TELEMETRY} WHERE bin = $bin AND time >= $since "
        "AND received_ms >= $after AND received_ms < $until",
        params={
            "bin": bin_id,
            "since": epoch_ns(completed_at - TS_SLACK),
            "after": epoch_ms(completed_at),
            "until": epoch_ms(until),
        },
    )
    values = [row[1] for s in series for row in s.values if row[1] is not None]
    return float(values[0]) if values else None


def last_kitchen_deposits(
    influx: InfluxClient, *, since: datetime, until: datetime
) -> dict[str, datetime]:
    """When each kitchen bin last reported deposits in (since, until], for bins that did."""
    series = influx.query(
        f"SELECT last(deposits) FROM {TELEMETRY} WHERE stream = 'kitchen' AND deposits > 0 "
        "AND time > $since AND time <= $until GROUP BY bin",
        params={"since": epoch_ns(since), "until": epoch_ns(until)},
    )
    return {s.tags["bin"]: from_epoch_ms(s.values[0][0]) for s in series if s.values}


def recent_fill(
    influx: InfluxClient,
    now: datetime,
    *,
    history: timedelta = FORECAST_HISTORY,
    bucket: str = FORECAST_BUCKET,
) -> dict[str, list[FillPoint]]:
    """Every bin's mean fill per bucket over the `history` before `now`, with the number of
    readings behind each mean, by bin."""
    series = influx.query(
        f"SELECT mean(fill_pct), count(fill_pct) FROM {TELEMETRY} WHERE time >= $since "
        f"AND time < $now "
        "GROUP BY time($every), bin fill(none)",
        params={
            "since": epoch_ns(now - history),
            "now": epoch_ns(now),
            "every": {"duration": bucket},
        },
    )
    return {
        s.tags["bin"]: [FillPoint(from_epoch_ms(t), float(v), int(n)) for t, v, n in s.values]
        for s in series
    }


def event_point(event: CollectionEvent, request: CollectionRequest, tags: BinTags | None) -> str:
    """One `collections` point: the grid tags of the bin (as ingest writes them), the rule,
    the status the event left the request in, and what happened (`event`: transition,
    escalation_1 / escalation_2, or report: a crew could not empty the bin). Time = the event's
    time, so re-exporting rewrites it.

    Fields: `request_id`; `age_s` since the request was created; `deadline_s`, the time it was
    given (its stream's deadline); `escalation_level` on escalations. While it waits for a crew
    (open, dispatched, acknowledged) `open` = 1 and `overdue` = 1 once the deadline has passed;
    completing or cancelling it writes both as 0. Verification (verified, disputed) writes
    neither: the wait had already ended, and a bin's next request may have begun meanwhile.
    An overdue request is escalated at its deadline, so its latest point says `overdue` = 1
    even when no crew acts on it. The completion also writes `within_deadline` (1 or 0)."""
    # The request's own bin, site, stream and operator; the rest of the grid as it is now.
    grid = (tags.as_tags() if tags is not None else {}) | {
        "bin": request.bin_id,
        "site": request.site_id,
        "stream": request.stream,
        "operator": request.operator_id,
    }
    what = event.kind if event.kind != "escalation" else f"escalation_{event.escalation_level}"
    labels = tag_set({**grid, "rule": request.rule, "status": event.to_status, "event": what})
    status = Status(event.to_status)
    deadline = request.due_at - request.created_at
    fields: dict[str, FieldValue | None] = {
        "request_id": request.id,
        "age_s": (event.at - request.created_at).total_seconds(),
        "deadline_s": deadline.total_seconds(),
        "escalation_level": event.escalation_level,
    }
    if status in OPEN:
        fields |= {"open": 1, "overdue": int(event.at >= request.due_at)}
    elif status in (Status.completed, Status.cancelled):
        fields |= {"open": 0, "overdue": 0}
    if status is Status.completed:
        fields["within_deadline"] = int(event.at <= request.due_at)
    return point(MEASUREMENT, labels, fields, epoch_ms(event.at))
