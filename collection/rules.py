"""When a bin needs a crew, as pure functions of its numbers and a given "now": the threshold,
the kitchen daily clearing (日产日清), the forecast, the deadline, the escalation level due, and
whether the readings after a completion verify it. No I/O and no clock of their own, so every
boundary is tested by passing the moment in question."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from collection.lifecycle import Status
from core.reasons import Reason
from core.settings import CollectionSettings
from devices.contract import Stream


class Rule(StrEnum):
    """What raised a request; stored with it."""

    threshold = "threshold"
    kitchen_daily = "kitchen_daily"
    forecast = "forecast"
    manual = "manual"


def over_threshold(fill_pct: float, threshold_pct: float) -> bool:
    """Level-triggered: every reading at or over the bin's threshold asks for a request."""
    return fill_pct >= threshold_pct


# --- kitchen waste: cleared daily ------------------------------------------------------------


def last_local_hour(now: datetime, *, hour: int, timezone: str) -> datetime:
    """The latest local `hour`:00 at or before `now`; the kitchen clearing round `now` is in."""
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    moment = datetime.combine(local.date(), time(hour), tzinfo=zone)
    if moment > local:
        moment = datetime.combine(local.date() - timedelta(days=1), time(hour), tzinfo=zone)
    return moment.astimezone(UTC)


def next_local_hour(now: datetime, *, hour: int, timezone: str) -> datetime:
    """The first local `hour`:00 strictly after `now` (a local day, not 24 h, after the last)."""
    zone = ZoneInfo(timezone)
    last = last_local_hour(now, hour=hour, timezone=timezone).astimezone(zone)
    return datetime.combine(last.date() + timedelta(days=1), time(hour), tzinfo=zone).astimezone(
        UTC
    )


def kitchen_needs_clearing(
    *, last_deposit_at: datetime | None, last_emptied_at: datetime | None, round_at: datetime
) -> bool:
    """A kitchen bin is due in the round at `round_at` when something was thrown in after the
    previous round and by this one, and no emptying has taken it away since. `last_deposit_at`
    is the last deposit up to `round_at`: later ones belong to the next round."""
    if last_deposit_at is None:
        return False
    since = round_at - timedelta(days=1)
    if last_emptied_at is not None:
        since = max(since, last_emptied_at)
    return since < last_deposit_at <= round_at


# --- forecast: full before the crew's next working day --------------------------------------

# A fall of more than this between two points is an emptying: the fill rate is measured only
# since then. Smaller falls are sensor noise (compaction, a lid reading).
EMPTIED_DROP_PCT: Final = 5.0
# A straight line through fewer points has no residuals to measure its own error by.
MIN_FIT_POINTS: Final = 3
# A forecast whose hours-to-full is less sure than this (one standard error over the estimate)
# would send crews on a guess; the threshold rule still catches the bin when it gets there.
MAX_RELATIVE_ERROR: Final = 0.5
# How far a fill rate drifts from the fitted line over the hours a forecast looks ahead, as a
# share of those hours: the 68th percentile of |error| / hours-to-full that bench/forecast.py
# measured on the simulator's fill curves (seed 1, 7 days; docs/collection.md). Deposits follow
# the time of day, which a line through the last hours cannot see, so this term, not the
# scatter of the readings, dominates how sure a forecast can be.
RATE_DRIFT: Final = 1.05
# The next working day is never more than a day away: a bin full later than this cannot fire,
# and a near-zero rate would otherwise overflow a timedelta.
HORIZON: Final = timedelta(days=2)


@dataclass(frozen=True, slots=True, order=True)
class FillPoint:
    """A bin's mean fill over a bucket of `readings` readings, stamped with the bucket's start."""

    at: datetime
    fill_pct: float
    readings: int = 1


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a forecast must rest on, from the settings: history since the last emptying of at
    least `min_span` and `min_readings` readings, a fitted rate that is positive and not above
    `max_rate_pct_h` (faster is a sensor jump, not waste), and a time to full no further ahead
    than `max_reach` times the span it was fitted over (fill rates follow the time of day, so a
    line is trusted only about as far as it was measured; bench/forecast.py measured why).
    `day_margin` scales the last day's gain when a plan looks a day ahead (`daily_gain`): days
    vary, and a bin left off today's plan waits a whole day for the next."""

    min_span: timedelta
    min_readings: int
    max_rate_pct_h: float
    max_reach: float
    day_margin: float = 1.0

    @classmethod
    def of(cls, settings: CollectionSettings) -> Evidence:
        """From the collection group (`settings.collection`, BINWATCH_COLLECTION_FORECAST_*)."""
        return cls(
            min_span=timedelta(minutes=settings.forecast_min_span_min),
            min_readings=settings.forecast_min_readings,
            max_rate_pct_h=settings.forecast_max_rate_pct_h,
            max_reach=settings.forecast_max_reach,
            day_margin=settings.forecast_day_margin,
        )


@dataclass(frozen=True, slots=True)
class Forecast:
    """When a bin will be full, how sure that is, and what it rests on. `fit_error_h` is one
    standard error of the hours to full from the scatter of the points around the line;
    `error_h` adds the drift of the rate over the hours ahead (`RATE_DRIFT`): the band the
    simulated outcomes fell in about two times in three."""

    full_at: datetime
    hours_to_full: float
    error_h: float
    fit_error_h: float
    rate_pct_h: float
    span: timedelta
    readings: int

    def describe(self, timezone: str) -> Reason:
        """The request's reason: the forecast (in the city's time) with its error and its
        evidence."""
        return Reason.of(
            "request.forecast",
            at=self.full_at.astimezone(ZoneInfo(timezone)),
            hours=self.hours_to_full,
            error=self.error_h,
            rate=self.rate_pct_h,
            readings=self.readings,
            span=self.span.total_seconds() / 3600,
        )


def since_emptied(points: Sequence[FillPoint]) -> list[FillPoint]:
    """The points after the bin's last emptying (a fall of more than `EMPTIED_DROP_PCT`)."""
    ordered = sorted(points)
    start = len(ordered) - 1
    while start > 0 and ordered[start - 1].fill_pct <= ordered[start].fill_pct + EMPTIED_DROP_PCT:
        start -= 1
    return ordered[max(start, 0) :]


def forecast(points: Sequence[FillPoint], evidence: Evidence) -> Forecast | None:
    """A least-squares line through the points since the last emptying, extrapolated to 100 %;
    None when the evidence is too thin (span, readings, points), the rate implausible (not
    positive, over the maximum), the fit itself too unsure (`MAX_RELATIVE_ERROR`) or the bin not full
    within the evidence's reach (`max_reach` × span, and never beyond `HORIZON`)."""
    fit = since_emptied(points)
    readings = sum(p.readings for p in fit)
    if len(fit) < MIN_FIT_POINTS or readings < evidence.min_readings:
        return None
    span = fit[-1].at - fit[0].at
    if span < evidence.min_span:
        return None
    hours = [(p.at - fit[0].at).total_seconds() / 3600 for p in fit]
    fills = [p.fill_pct for p in fit]
    n = len(fit)
    mean_h, mean_fill = sum(hours) / n, sum(fills) / n
    sxx = sum((h - mean_h) ** 2 for h in hours)
    rate = sum((h - mean_h) * (f - mean_fill) for h, f in zip(hours, fills, strict=True)) / sxx
    if not 0 < rate <= evidence.max_rate_pct_h:
        return None
    now_fill = mean_fill + rate * (hours[-1] - mean_h)
    to_full = max(0.0, 100 - now_fill) / rate
    reach = min(evidence.max_reach * span, HORIZON)
    if to_full > reach.total_seconds() / 3600:
        return None
    residual = sum(
        (f - mean_fill - rate * (h - mean_h)) ** 2 for h, f in zip(hours, fills, strict=True)
    ) / (n - 2)
    # First-order propagation of the slope's and the fitted level's errors into the hours left.
    rate_var = residual / sxx
    level_var = residual * (1 / n + (hours[-1] - mean_h) ** 2 / sxx)
    fit_error_h = math.sqrt(level_var / rate**2 + to_full**2 * rate_var / rate**2)
    if fit_error_h > MAX_RELATIVE_ERROR * to_full:
        return None
    return Forecast(
        full_at=fit[-1].at + timedelta(hours=to_full),
        hours_to_full=to_full,
        error_h=math.hypot(fit_error_h, RATE_DRIFT * to_full),
        fit_error_h=fit_error_h,
        rate_pct_h=rate,
        span=span,
        readings=readings,
    )


# --- a day's gain: what a plan made before the day's deposits can see ------------------------

# A plan is made before the day's deposits begin (BINWATCH_ROUTE_PLAN_HOUR, at dawn), when the
# line through the last hours sees only the night's trickle. A day repeats the last one's rhythm
# of meals and office hours, so the fill a bin gained over the last day says what the next one
# will add. The day's points are hourly means; it needs most of a day of them.
DAY: Final = timedelta(days=1)
MIN_DAY_SPAN: Final = timedelta(hours=20)


def daily_gain(points: Sequence[FillPoint], now: datetime) -> float | None:
    """The fill (%) a bin gained over the day before `now`: the sum of the rises between
    consecutive points, so an emptying in between takes nothing away from what came before it;
    None when the points cover less than `MIN_DAY_SPAN` of that day."""
    day = sorted(p for p in points if now - DAY <= p.at < now)
    if len(day) < 2 or day[-1].at - day[0].at < MIN_DAY_SPAN:
        return None
    return sum(max(0.0, b.fill_pct - a.fill_pct) for a, b in itertools.pairwise(day))


def day_reaches(
    fill_pct: float, gain_pct: float, *, level_pct: float, now: datetime, margin: float
) -> datetime | None:
    """When a bin at `fill_pct` reaches `level_pct` if the next day adds `gain_pct` × `margin`,
    spread evenly over it; None when it adds nothing and is not there yet."""
    if fill_pct >= level_pct:
        return now
    rate = gain_pct * margin / 24
    if rate <= 0:
        return None
    return now + timedelta(hours=(level_pct - fill_pct) / rate)


def forecast_fires(
    points: Sequence[FillPoint],
    *,
    now: datetime,
    work_start_hour: int,
    timezone: str,
    evidence: Evidence,
) -> Forecast | None:
    """The forecast, when the evidence holds and the bin will be full before the operator's
    next working day starts (so waiting for the threshold would let it overflow); else None."""
    found = forecast(points, evidence)
    if found is None:
        return None
    next_day = next_local_hour(now, hour=work_start_hour, timezone=timezone)
    return found if found.full_at < next_day else None


# --- deadlines, escalation, verification ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """The collection settings as the rules use them."""

    deadlines: dict[Stream, timedelta]
    kitchen_daily: timedelta
    escalate_after: timedelta
    verify_window: timedelta
    emptied_pct: float

    @classmethod
    def of(cls, settings: CollectionSettings) -> Policy:
        """From the collection group (`settings.collection`, BINWATCH_COLLECTION_*)."""
        return cls(
            deadlines={
                stream: timedelta(hours=settings.deadline_h(stream.value)) for stream in Stream
            },
            kitchen_daily=timedelta(hours=settings.deadline_kitchen_daily_h),
            escalate_after=timedelta(hours=settings.escalate_after_h),
            verify_window=timedelta(minutes=settings.verify_window_min),
            emptied_pct=settings.emptied_pct,
        )

    def due_at(self, created_at: datetime, stream: str, rule: Rule | None = None) -> datetime:
        """The stream's deadline; the kitchen round's own for its requests. That round comes
        after the day's last meal, when the operators' day shifts are over, so its requests
        are due by the next round, not `deadline_kitchen_h` later (at dawn, before any crew
        works: every one of them would be overdue and escalated each morning). A kitchen bin
        that fills up still gets the stream's deadline from the threshold rule."""
        if rule is Rule.kitchen_daily:
            return created_at + self.kitchen_daily
        return created_at + self.deadlines[Stream(stream)]

    def escalation_level(self, *, due_at: datetime, now: datetime) -> int:
        """0 before the deadline; 1 (the community) from it; 2 (the street's squad) from
        `escalate_after` later."""
        if now < due_at:
            return 0
        return 1 if now < due_at + self.escalate_after else 2

    def verdict(
        self, *, lowest_fill_after: float | None, completed_at: datetime, now: datetime
    ) -> Status | None:
        """Verified as soon as a reading after the completion shows the bin emptied; disputed
        when the window closes without one (no reading at all included); else not yet."""
        if lowest_fill_after is not None and lowest_fill_after <= self.emptied_pct:
            return Status.verified
        if now >= completed_at + self.verify_window:
            return Status.disputed
        return None
