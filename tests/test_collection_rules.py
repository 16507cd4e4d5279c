"""The collection rules as pure functions, each at its boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collection.lifecycle import Status
from collection.rules import (
    FillPoint,
    Policy,
    forecast_fires,
    full_at,
    kitchen_needs_clearing,
    last_local_hour,
    next_local_hour,
    over_threshold,
)
from core.settings import Settings
from devices.contract import Stream

TZ = "Asia/Shanghai"  # UTC+8, no daylight saving
# 2026-11-27 18:00 in Shanghai is 10:00 UTC.
ROUND = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def test_threshold_is_inclusive() -> None:
    assert over_threshold(75.0, 75.0)
    assert not over_threshold(74.9, 75.0)


def test_kitchen_round_starts_at_the_local_hour() -> None:
    assert last_local_hour(ROUND, hour=18, timezone=TZ) == ROUND
    assert last_local_hour(ROUND - SECOND, hour=18, timezone=TZ) == ROUND - timedelta(days=1)
    assert last_local_hour(ROUND + timedelta(hours=23), hour=18, timezone=TZ) == ROUND


def test_next_local_hour_is_strictly_after() -> None:
    assert next_local_hour(ROUND, hour=18, timezone=TZ) == ROUND + timedelta(days=1)
    assert next_local_hour(ROUND - SECOND, hour=18, timezone=TZ) == ROUND


def test_next_local_hour_is_a_local_day_across_daylight_saving() -> None:
    # Berlin springs forward on 2026-03-29: 07:00 to 07:00 is 23 hours.
    before = datetime(2026, 3, 28, 7, 0, tzinfo=UTC)  # 08:00 CET
    assert next_local_hour(before, hour=7, timezone="Europe/Berlin") == datetime(
        2026, 3, 29, 5, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("deposit", "emptied", "due"),
    [
        (None, None, False),  # no deposits at all
        (ROUND - timedelta(hours=1), None, True),
        (ROUND - timedelta(days=1), None, False),  # exactly at the previous round: that one's
        (ROUND - timedelta(days=1) + SECOND, None, True),
        (ROUND - timedelta(hours=2), ROUND - timedelta(hours=1), False),  # emptied since
        (ROUND - timedelta(hours=1), ROUND - timedelta(hours=2), True),  # thrown in after
        (ROUND - timedelta(hours=1), ROUND - timedelta(hours=1), False),  # same moment
        (ROUND, None, True),  # thrown in at the round: this round's
        (ROUND + SECOND, None, False),  # after it: the next round's
    ],
)
def test_kitchen_daily(deposit: datetime | None, emptied: datetime | None, due: bool) -> None:
    assert (
        kitchen_needs_clearing(last_deposit_at=deposit, last_emptied_at=emptied, round_at=ROUND)
        is due
    )


def _rising(start: datetime, fills: list[float], every: timedelta) -> list[FillPoint]:
    return [FillPoint(start + i * every, fill) for i, fill in enumerate(fills)]


def test_full_at_extrapolates_the_rate_since_the_last_emptying() -> None:
    t0 = ROUND
    points = _rising(t0, [90, 95, 10, 20, 30], timedelta(minutes=15))
    # 10 → 30 over 30 min: 40 %/h; 70 % more from the last point takes 105 minutes.
    assert full_at(points) == t0 + timedelta(minutes=60 + 105)


@pytest.mark.parametrize(
    "fills",
    [[], [50.0], [50.0, 50.0, 50.0], [60.0, 55.0, 50.0]],
)
def test_full_at_needs_a_rising_history(fills: list[float]) -> None:
    assert full_at(_rising(ROUND, fills, timedelta(minutes=15))) is None


def test_full_at_needs_half_an_hour_of_history() -> None:
    assert full_at(_rising(ROUND, [10, 20], timedelta(minutes=29))) is None
    assert full_at(_rising(ROUND, [10, 20], timedelta(minutes=30))) is not None


def test_full_at_of_a_near_zero_rate_is_none_not_an_overflow() -> None:
    """A bin creeping up by 1e-12 % over an hour would be full in ~10^10 years: timedelta
    cannot hold that (it raised OverflowError for the whole fleet's forecast); no date."""
    points = [FillPoint(ROUND, 40.0), FillPoint(ROUND + timedelta(hours=1), 40.0 + 1e-12)]
    assert full_at(points) is None
    slow = _rising(ROUND, [10, 10.1], timedelta(hours=1))  # 900 h to full: still a date
    assert full_at(slow) is not None


def test_forecast_fires_only_before_the_next_working_day() -> None:
    # At 18:00 local the next working day starts at 07:00 tomorrow: 13 hours away.
    every = timedelta(hours=1)
    now = ROUND
    start = now - 2 * every
    # 10 %/h from 70 at `now`: full in 3 h, well before 07:00.
    assert forecast_fires(
        _rising(start, [50, 60, 70], every), now=now, work_start_hour=7, timezone=TZ
    ) == now + timedelta(hours=3)
    # 1 %/h from 70: full in 30 h, after 07:00 tomorrow.
    slow = _rising(start, [68, 69, 70], every)
    assert forecast_fires(slow, now=now, work_start_hour=7, timezone=TZ) is None


def test_forecast_boundary_is_strict() -> None:
    every = timedelta(hours=1)
    now = ROUND  # next working day: 13 h from now
    # 30 % left at 30/13 %/h reaches 100 exactly at 07:00: the crew can still come then.
    rate = 30 / 13
    exact = _rising(now - every, [70 - rate, 70], every)
    assert full_at(exact) == now + timedelta(hours=13)
    assert forecast_fires(exact, now=now, work_start_hour=7, timezone=TZ) is None
    earlier = _rising(now - every, [70 - rate * 1.01, 70], every)
    assert forecast_fires(earlier, now=now, work_start_hour=7, timezone=TZ) is not None


def _policy() -> Policy:
    return Policy.of(
        Settings(
            collection_deadline_kitchen_h=12,
            collection_deadline_recyclable_h=48,
            collection_escalate_after_h=4,
            collection_verify_window_min=60,
            collection_emptied_pct=20,
        ).collection
    )


def test_deadlines_by_stream() -> None:
    policy = _policy()
    assert policy.due_at(ROUND, Stream.kitchen) == ROUND + timedelta(hours=12)
    assert policy.due_at(ROUND, "recyclable") == ROUND + timedelta(hours=48)


def test_escalation_levels_at_their_times() -> None:
    policy = _policy()
    due = ROUND
    assert policy.escalation_level(due_at=due, now=due - SECOND) == 0
    assert policy.escalation_level(due_at=due, now=due) == 1
    assert policy.escalation_level(due_at=due, now=due + timedelta(hours=4) - SECOND) == 1
    assert policy.escalation_level(due_at=due, now=due + timedelta(hours=4)) == 2


def test_verdict() -> None:
    policy = _policy()
    done = ROUND
    inside, after = done + timedelta(minutes=59), done + timedelta(minutes=60)
    assert policy.verdict(lowest_fill_after=20.0, completed_at=done, now=inside) is Status.verified
    assert policy.verdict(lowest_fill_after=20.1, completed_at=done, now=inside) is None
    assert policy.verdict(lowest_fill_after=None, completed_at=done, now=inside) is None
    assert policy.verdict(lowest_fill_after=80.0, completed_at=done, now=after) is Status.disputed
    assert policy.verdict(lowest_fill_after=None, completed_at=done, now=after) is Status.disputed
