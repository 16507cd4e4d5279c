"""What the compliance routes accept and return: the report window with its checks, and the
response models (part of the OpenAPI contract). The definitions behind every number are in
docs/metrics.md; the arithmetic is in compliance/figures.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from pydantic import BaseModel

from compliance.rollups import Segment, Tier, plan
from core.coverage import Coverage
from core.errors import InvalidRequest
from core.telemetry import MAX_RAW_RANGE
from core.times import UtcTime, rfc3339
from devices.contract import SiteType

Every = Literal["1d", "1w", "1mo"]
SourceParam = Literal["auto", "raw", "hourly", "daily"]
Source = Literal["raw", "hourly", "daily"]
SubjectKind = Literal["site", "community", "street", "district", "city", "operator"]
PartName = Literal["accuracy", "overflow", "device_health", "collection"]

HOUR: Final = timedelta(hours=1)
DEFAULT_REPORT_RANGE: Final = timedelta(days=7)
MAX_REPORT_RANGE: Final = timedelta(days=366)
# `source=auto` reads raw readings up to a day: one bin-day is ~1,440 readings at one a minute
# but 24 hourly points, and 1/6 of a site-day point, so beyond a day the rollups (daily where
# whole settled days allow, hourly elsewhere) answer far faster for the same figures.
AUTO_RAW_UP_TO: Final = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class ReportSpan:
    """A report's checked range [start, end) on whole hours, its breakdown and the source that
    will answer it: everything the client chose, nothing read yet. Two requests with the same
    span (and subject) ask for the same report, so the API's report cache keys on it."""

    start: datetime
    end: datetime
    every: Every | None
    source: Source

    @classmethod
    def check(
        cls,
        *,
        start: datetime | None,
        end: datetime | None,
        every: Every | None,
        source: SourceParam,
        now: datetime,
    ) -> ReportSpan:
        """Defaults (the 7 days up to the last whole hour) and the checks that need more than one
        parameter; InvalidRequest (422) says what to send instead."""
        end = end or now.replace(minute=0, second=0, microsecond=0)
        start = start or end - DEFAULT_REPORT_RANGE
        if start >= end:
            raise InvalidRequest("start must be before end")
        for name, moment in (("end", end), ("start", start)):  # the default start follows end
            if moment != moment.replace(minute=0, second=0, microsecond=0):
                raise InvalidRequest(
                    f"{name} must be on a whole hour (reports add up hourly rollups), "
                    f"e.g. {rfc3339(moment.replace(minute=0, second=0, microsecond=0))}"
                )
        span = end - start
        if span > MAX_REPORT_RANGE:
            raise InvalidRequest(
                f"start..end spans {span / timedelta(days=1):.1f} days; reports cover at most 366"
            )
        if source == "raw" and span > MAX_RAW_RANGE:
            raise InvalidRequest(
                "source=raw covers at most 7 days: narrow start/end or use source=auto"
            )
        chosen: Source = (
            source if source != "auto" else ("raw" if span <= AUTO_RAW_UP_TO else "daily")
        )
        return cls(start, end, every, chosen)

    def window(
        self, *, now: datetime, timezone: str, coverage: Callable[[datetime, datetime], Coverage]
    ) -> ReportWindow:
        """The window, planned: `coverage(start, end)` says what the rollups hold of it
        (core.coverage.read_coverage)."""
        held = coverage(self.start, self.end)
        segments = plan(
            self.start, self.end, tier=self.source, timezone=timezone, now=now, coverage=held
        )
        return ReportWindow(
            self.start, self.end, self.every, self.source, timezone, segments, now, held
        )


@dataclass(frozen=True, slots=True)
class ReportWindow:
    """A checked report range [start, end) on whole hours, the source that will answer it (and
    which tier answers which part of it, given what the rollups cover at `now`), and the
    optional period breakdown."""

    start: datetime
    end: datetime
    every: Every | None
    source: Source
    timezone: str
    segments: tuple[Segment, ...]
    now: datetime
    coverage: Coverage

    def per_bin(self, start: datetime) -> tuple[Segment, ...]:
        """[start, end) from tiers that keep bins (the site tiers sum them away)."""
        tier: Tier = "hourly" if self.source == "daily" else self.source
        return plan(
            start, self.end, tier=tier, timezone=self.timezone, now=self.now, coverage=self.coverage
        )

    @property
    def hours(self) -> int:
        return (self.end - self.start) // HOUR


class Metrics(BaseModel):
    """The compliance figures of one group of bins over one period (docs/metrics.md)."""

    deposits: int
    contaminated: int
    checked_deposits: int
    accuracy: float | None
    deposits_per_day: float
    deposits_per_bin_day: float | None
    overflow_minutes: float
    over90_minutes: float
    overflow_share: float | None
    bins: int
    reported_bin_hours: int
    reporting_coverage: float | None
    bins_offline: int | None
    bins_low_battery: int | None
    # Collection: the requests created in the period, followed to what the registry knows now.
    requests: int
    requests_completed: int
    requests_on_time: int
    requests_missed: int
    response_median_minutes: float | None
    response_p90_minutes: float | None
    completed_within_deadline: float | None
    disputes: int
    escalations: int


class ScorePart(BaseModel):
    """One part of the cleanliness score: its value (0–100), its documented weight, the weight
    it carries once unavailable parts are left out, and the points it adds to the score."""

    name: PartName
    value: float | None
    weight: float
    effective_weight: float | None
    points: float | None


class Score(BaseModel):
    value: float | None
    parts: list[ScorePart]


class Subject(BaseModel):
    kind: SubjectKind
    id: str
    name: str


class Period(BaseModel):
    """A local day, week (Monday first) or month, cut to the report window."""

    start: UtcTime
    end: UtcTime
    metrics: Metrics
    score: Score


class NotRanked(BaseModel):
    """Why a site is listed apart from the ranking: too few checked deposits in the window to
    judge its sorting (compliance/ranking.py)."""

    reason: Literal["too_few_checked_deposits"] = "too_few_checked_deposits"
    checked_deposits: int
    min_checked_deposits: int


class RankingRule(BaseModel):
    """The evidence a site needs to be ranked over the window, and the precision of ties."""

    min_checked_deposits_per_day: int
    min_checked_deposits: int
    score_decimals: int


class SiteRow(BaseModel):
    rank: int | None  # None: not ranked, `not_ranked` says why
    id: str
    name: str
    site_type: SiteType
    community_id: str
    score: Score
    metrics: Metrics
    not_ranked: NotRanked | None = None


class ComplianceReport(BaseModel):
    """A site's, area's or operator's compliance over [start, end); `sites` ranks the sites of
    an area or operator (empty for a site report; those without enough evidence last, rank
    None), `periods` is there when `every` was asked."""

    subject: Subject
    start: UtcTime
    end: UtcTime
    timezone: str
    source: Source
    every: Every | None
    metrics: Metrics
    score: Score
    periods: list[Period] | None
    sites: list[SiteRow]


class Ranking(BaseModel):
    """Sites of one type with enough evidence, cleanest first (ties: docs/metrics.md), and
    those without, apart, each with its reason."""

    site_type: SiteType
    start: UtcTime
    end: UtcTime
    timezone: str
    source: Source
    rule: RankingRule
    items: list[SiteRow]
    not_ranked: list[SiteRow]
