"""When a bin needs a crew, as pure functions of its numbers and a given "now": the threshold,
the kitchen daily clearing (日产日清), the forecast, the deadline, the escalation level due, and
whether the readings after a completion verify it. No I/O and no clock of their own, so every
boundary is tested by passing the moment in question."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from collection.lifecycle import Status
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
# Less history than this gives a rate that is mostly noise.
MIN_RATE_SPAN: Final = timedelta(minutes=30)
# A bin that takes longer than this to fill has no forecast worth stating.
MAX_HORIZON: Final = timedelta(days=366)


@dataclass(frozen=True, slots=True, order=True)
class FillPoint:
    at: datetime
    fill_pct: float


def full_at(points: Sequence[FillPoint]) -> datetime | None:
    """When the bin reaches 100 % at its fill rate since it was last emptied; None when it is not
    filling or there is too little history to say."""
    ordered = sorted(points)
    if not ordered:
        return None
    start = len(ordered) - 1
    while start > 0 and ordered[start - 1].fill_pct <= ordered[start].fill_pct + EMPTIED_DROP_PCT:
        start -= 1
    first, last = ordered[start], ordered[-1]
    span = last.at - first.at
    if span < MIN_RATE_SPAN or last.fill_pct <= first.fill_pct:
        return None
    per_second = (last.fill_pct - first.fill_pct) / span.total_seconds()
    seconds_to_full = max(0.0, 100 - last.fill_pct) / per_second
    if seconds_to_full > MAX_HORIZON.total_seconds():
        return None  # a near-zero rate: no date at all (timedelta would overflow)
    return last.at + timedelta(seconds=seconds_to_full)


def forecast_fires(
    points: Sequence[FillPoint], *, now: datetime, work_start_hour: int, timezone: str
) -> datetime | None:
    """The time the bin will be full, when that is before the operator's next working day
    starts (so waiting for the threshold would let it overflow); otherwise None."""
    full = full_at(points)
    if full is None:
        return None
    return full if full < next_local_hour(now, hour=work_start_hour, timezone=timezone) else None


# --- deadlines, escalation, verification ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """The collection settings as the rules use them."""

    deadlines: dict[Stream, timedelta]
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
            escalate_after=timedelta(hours=settings.escalate_after_h),
            verify_window=timedelta(minutes=settings.verify_window_min),
            emptied_pct=settings.emptied_pct,
        )

    def due_at(self, created_at: datetime, stream: str) -> datetime:
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
