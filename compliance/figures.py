"""The arithmetic of compliance, with no I/O: from hourly sums to metrics, the cleanliness score,
local-time periods and CSV (the ranking rule is compliance/ranking.py). docs/metrics.md defines every figure; this module is
the one place that computes them, so the JSON, the CSV, the raw and the rollup paths agree."""

from __future__ import annotations

import csv
import io
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import chain
from typing import Final
from zoneinfo import ZoneInfo

from compliance.rollups import local_midnight
from compliance.schemas import (
    HOUR,
    ComplianceReport,
    Every,
    Metrics,
    PartName,
    Ranking,
    Score,
    ScorePart,
    SiteRow,
)
from core.times import rfc3339

DAY: Final = timedelta(days=1)
# Weights of the cleanliness score's parts (docs/metrics.md); parts without data are left out
# and the others renormalised (the weights need not add up to 1: only their ratios count).
WEIGHTS: Final[Mapping[PartName, float]] = {
    "accuracy": 0.5,
    "overflow": 0.3,
    "device_health": 0.2,
    "collection": 0.25,
}
# A group whose reporting bins spent this share of their time at or over 100 % scores 0 on
# overflow; 10 % is about 2.4 h a day, far past what a serviced bin should ever show.
OVERFLOW_SHARE_AT_ZERO: Final = 0.10
LOW_BATTERY_PCT: Final = 20.0
OFFLINE_AFTER: Final = timedelta(hours=2)  # no reading in the window's last 2 hours
BATTERY_LOOKBACK: Final = timedelta(hours=24)  # battery judged on the window's last day


def accuracy(*, checked_deposits: int | None, contaminated: int | None) -> float | None:
    """1 − Σcontaminated / Σchecked_deposits (ingest's derived field: the deposits of readings
    that carry a contamination count, so a bin that cannot check sorting does not dilute the
    ratio); undefined (None) without checked deposits, rather than a flattering 100 %."""
    if not checked_deposits or contaminated is None:
        return None
    return 1 - contaminated / checked_deposits


@dataclass(frozen=True, slots=True)
class Sums:
    """Additive totals of hourly rollup points (or of raw readings rolled up on the fly): they
    add across bins, sites and hours, which is what lets one query serve any group."""

    deposits: int = 0
    contaminated: int = 0
    checked_deposits: int = 0
    overflow_minutes: float = 0.0
    over90_minutes: float = 0.0
    bin_hours: int = 0  # bin-hours with at least one reading

    def __add__(self, other: Sums) -> Sums:
        return Sums(
            deposits=self.deposits + other.deposits,
            contaminated=self.contaminated + other.contaminated,
            checked_deposits=self.checked_deposits + other.checked_deposits,
            overflow_minutes=self.overflow_minutes + other.overflow_minutes,
            over90_minutes=self.over90_minutes + other.over90_minutes,
            bin_hours=self.bin_hours + other.bin_hours,
        )


def total(sums: Iterable[Sums]) -> Sums:
    result = Sums()
    for item in sums:
        result += item
    return result


@dataclass(frozen=True, slots=True)
class DeviceCounts:
    offline: int
    low_battery: int

    def __add__(self, other: DeviceCounts) -> DeviceCounts:
        return DeviceCounts(self.offline + other.offline, self.low_battery + other.low_battery)


def device_counts(
    bins: Iterable[str], *, recent: set[str], battery: Mapping[str, float]
) -> DeviceCounts:
    """Of the registered `bins`: those with no reading in the last OFFLINE_AFTER (`recent` holds
    the bins that did report) and those whose lowest battery over the last BATTERY_LOOKBACK is
    under LOW_BATTERY_PCT. A bin that never reported is offline, not low on battery."""
    ids = list(bins)
    return DeviceCounts(
        offline=sum(1 for b in ids if b not in recent),
        low_battery=sum(1 for b in ids if battery.get(b, 100.0) < LOW_BATTERY_PCT),
    )


@dataclass(frozen=True, slots=True)
class RequestSums:
    """The collection requests created in a period for a group of bins, as counts that add
    across sites and periods (compliance/requests.py reads them per site and period).
    Each request was judged against its deadline when it was read: `on_time` were completed by
    `due_at`; `missed` were completed after it or are still open past it; the rest (open and
    not yet due, cancelled) have no verdict. `response_minutes` holds, in no order, the time
    from creation to completion of every completed request, for the percentiles."""

    requests: int = 0
    on_time: int = 0
    missed: int = 0
    disputes: int = 0
    escalations: int = 0
    response_minutes: tuple[float, ...] = ()

    def __add__(self, other: RequestSums) -> RequestSums:
        return request_total((self, other))


NO_REQUESTS: Final = RequestSums()


def request_total(items: Iterable[RequestSums]) -> RequestSums:
    """The sum of request figures; the response times are joined once, not pair by pair (a
    district's year holds ~100k of them)."""
    parts = list(items)
    return RequestSums(
        requests=sum(p.requests for p in parts),
        on_time=sum(p.on_time for p in parts),
        missed=sum(p.missed for p in parts),
        disputes=sum(p.disputes for p in parts),
        escalations=sum(p.escalations for p in parts),
        response_minutes=tuple(chain.from_iterable(p.response_minutes for p in parts)),
    )


def nearest_rank(ordered: Sequence[float], percent: int) -> float | None:
    """The nearest-rank percentile of values sorted ascending: the value at rank
    ⌈percent / 100 × n⌉ (1-based), always one of the values; None without values. The median
    of an even count is the lower of the two middle values."""
    if not ordered:
        return None
    rank = -(-percent * len(ordered) // 100)  # ceil in integers: no float rounding at n × 0.9
    return ordered[max(rank, 1) - 1]


def within_deadline(requests: RequestSums) -> float | None:
    """The share of judged requests that were completed by their deadline; None when none of
    the requests has a verdict yet."""
    judged = requests.on_time + requests.missed
    return requests.on_time / judged if judged else None


def metrics(
    sums: Sums,
    *,
    bins: int,
    start: datetime,
    end: datetime,
    devices: DeviceCounts | None,
    requests: RequestSums = NO_REQUESTS,
) -> Metrics:
    """The figures of a group of `bins` registered bins over [start, end) (whole hours), with
    the collection requests created in that time."""
    days = (end - start) / DAY
    times = sorted(requests.response_minutes)
    expected_bin_hours = bins * ((end - start) // HOUR)
    reported_minutes = sums.bin_hours * 60
    return Metrics(
        deposits=sums.deposits,
        contaminated=sums.contaminated,
        checked_deposits=sums.checked_deposits,
        accuracy=accuracy(checked_deposits=sums.checked_deposits, contaminated=sums.contaminated),
        deposits_per_day=sums.deposits / days,
        deposits_per_bin_day=sums.deposits / (bins * days) if bins else None,
        overflow_minutes=round(sums.overflow_minutes, 6),
        over90_minutes=round(sums.over90_minutes, 6),
        overflow_share=sums.overflow_minutes / reported_minutes if reported_minutes else None,
        bins=bins,
        reported_bin_hours=sums.bin_hours,
        # A bin moved in from another site can report more hours than it was expected here.
        reporting_coverage=(
            min(1.0, sums.bin_hours / expected_bin_hours) if expected_bin_hours else None
        ),
        bins_offline=devices.offline if devices else None,
        bins_low_battery=devices.low_battery if devices else None,
        requests=requests.requests,
        requests_completed=len(times),
        requests_on_time=requests.on_time,
        requests_missed=requests.missed,
        response_median_minutes=nearest_rank(times, 50),
        response_p90_minutes=nearest_rank(times, 90),
        completed_within_deadline=within_deadline(requests),
        disputes=requests.disputes,
        escalations=requests.escalations,
    )


def score(figures: Metrics) -> Score:
    """The cleanliness score (0–100): the weighted mean of the parts that have data."""
    values: dict[PartName, float | None] = {
        "accuracy": None if figures.accuracy is None else 100 * figures.accuracy,
        "overflow": (
            None
            if figures.overflow_share is None
            else 100 * max(0.0, 1 - figures.overflow_share / OVERFLOW_SHARE_AT_ZERO)
        ),
        "device_health": (
            None if figures.reporting_coverage is None else 100 * figures.reporting_coverage
        ),
        "collection": (
            None
            if figures.completed_within_deadline is None
            else 100 * figures.completed_within_deadline
        ),
    }
    available = sum(WEIGHTS[name] for name, value in values.items() if value is not None)
    parts = []
    for name, value in values.items():
        share = WEIGHTS[name] / available if value is not None else None
        parts.append(
            ScorePart(
                name=name,
                value=value,
                weight=WEIGHTS[name],
                effective_weight=share,
                points=value * share if value is not None and share is not None else None,
            )
        )
    points = [part.points for part in parts if part.points is not None]
    return Score(value=sum(points) if points else None, parts=parts)


# --- periods in local time ---------------------------------------------------------------------


def period_start(day: date, every: Every) -> date:
    """The local calendar day, ISO week (from Monday) or month that `day` belongs to."""
    if every == "1w":
        return day - timedelta(days=day.weekday())
    if every == "1mo":
        return day.replace(day=1)
    return day


def _next_period(first: date, every: Every) -> date:
    if every == "1w":
        return first + timedelta(days=7)
    if every == "1mo":
        return (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first + timedelta(days=1)


def periods(
    days: Iterable[tuple[datetime, Sums]],
    *,
    every: Every,
    start: datetime,
    end: datetime,
    timezone: str,
) -> list[tuple[datetime, datetime, Sums]]:
    """Group local-day sums (each keyed by any moment of its day, as InfluxDB's GROUP BY
    time(1d) tz() gives the day's local midnight) into the periods of `period_bounds`, each cut
    to [start, end). Periods without data are left out, as in the readings API."""
    bounds = period_bounds(every=every, start=start, end=end, timezone=timezone)
    begins = [begin for begin, _ in bounds]
    grouped: dict[int, Sums] = {}
    for moment, sums in days:
        # The first period may begin at `start`, after its first day's midnight.
        index = max(0, bisect_right(begins, moment) - 1)
        grouped[index] = grouped.get(index, Sums()) + sums
    return [(*bounds[index], grouped[index]) for index in sorted(grouped)]


def period_bounds(
    *, every: Every, start: datetime, end: datetime, timezone: str
) -> list[tuple[datetime, datetime]]:
    """Every local day, week or month that [start, end) touches, in order, each cut to the
    window, whether or not they hold data."""
    zone = ZoneInfo(timezone)
    first = period_start(start.astimezone(zone).date(), every)
    result = []
    while (begin := local_midnight(first, zone)) < end:
        following = _next_period(first, every)
        result.append((max(begin, start), min(local_midnight(following, zone), end)))
        first = following
    return result


# --- CSV -------------------------------------------------------------------------------------

_METRIC_COLUMNS: Final = tuple(Metrics.model_fields)
_PART_COLUMNS: Final = tuple(f"{name}_points" for name in WEIGHTS)


def _figures(figures: Metrics, result: Score) -> dict[str, object]:
    row: dict[str, object] = figures.model_dump()
    row["score"] = result.value
    for part in result.parts:
        row[f"{part.name}_points"] = part.points
    return row


def report_csv(report: ComplianceReport) -> Iterator[str]:
    """The report as one table: the subject's total, then each period, then each site (rank
    order), with the same numbers as the JSON."""
    start, end = rfc3339(report.start), rfc3339(report.end)
    subject = report.subject
    rows = [
        {"row": "total", "kind": subject.kind, "id": subject.id, "name": subject.name,
         "start": start, "end": end, **_figures(report.metrics, report.score)}
    ]  # fmt: skip
    for period in report.periods or []:
        rows.append(
            {"row": "period", "kind": subject.kind, "id": subject.id, "name": subject.name,
             "start": rfc3339(period.start), "end": rfc3339(period.end),
             **_figures(period.metrics, period.score)}
        )  # fmt: skip
    for site in report.sites:
        rows.append(
            {"row": "site", "rank": site.rank, "kind": "site", "id": site.id, "name": site.name,
             "start": start, "end": end, "not_ranked": _not_ranked(site),
             **_figures(site.metrics, site.score)}
        )  # fmt: skip
    columns = ("row", "rank", "kind", "id", "name", "start", "end", "not_ranked")
    return _csv((*columns, "score", *_PART_COLUMNS, *_METRIC_COLUMNS), rows)


def _not_ranked(site: SiteRow) -> str | None:
    return site.not_ranked.reason if site.not_ranked else None


def ranking_csv(ranking: Ranking) -> Iterator[str]:
    """One line per site, in rank order, then the sites not ranked (empty rank, the reason)."""
    start, end = rfc3339(ranking.start), rfc3339(ranking.end)
    rows = [
        {"rank": site.rank, "id": site.id, "name": site.name, "site_type": site.site_type.value,
         "community_id": site.community_id, "start": start, "end": end,
         "not_ranked": _not_ranked(site), **_figures(site.metrics, site.score)}
        for site in (*ranking.items, *ranking.not_ranked)
    ]  # fmt: skip
    columns = ("rank", "id", "name", "site_type", "community_id", "start", "end", "not_ranked")
    return _csv((*columns, "score", *_PART_COLUMNS, *_METRIC_COLUMNS), rows)


# A spreadsheet reads a cell that starts with one of these as a formula (OWASP, "CSV Injection").
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """What a CSV cell holds: None an empty cell, a text that a spreadsheet would run as a
    formula behind a `'` (a site named `=HYPERLINK(...)` in the fleet file stays a name when a
    grid official opens the report in Excel), anything else as it is."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _csv(columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> Iterator[str]:
    """RFC 4180 CSV in pieces of about 64 KiB (the API streams it); floats keep Python's
    shortest repr, which is what the JSON carries too; each cell as `csv_cell` writes it."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: csv_cell(value) for key, value in row.items()})
        if out.tell() >= 65536:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()
