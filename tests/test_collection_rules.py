"""The collection rules as pure functions, each at its boundaries."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from collection import rules
from collection.lifecycle import Status
from collection.rules import (
    RATE_DRIFT,
    Evidence,
    FillPoint,
    Forecast,
    Policy,
    Rule,
    forecast,
    forecast_fires,
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


# The shipped defaults (1 h since the emptying, 6 readings, at most 50 %/h, twice the span).
EVIDENCE = Evidence.of(Settings().collection)
# The same, looking as far ahead as the evidence's span allows or not.
FAR = dataclasses.replace(EVIDENCE, max_reach=100.0)
QUARTER = timedelta(minutes=15)


def _rising(
    start: datetime, fills: list[float], every: timedelta = QUARTER, readings: int = 15
) -> list[FillPoint]:
    return [FillPoint(start + i * every, fill, readings) for i, fill in enumerate(fills)]


def test_a_steady_fill_is_forecast_with_a_small_error() -> None:
    # 20 %/h for 2 h since the emptying (2 → 42 %), measured to ±0.5 %: 58 % left takes 2.9 h.
    noise = [0.5, -0.5, 0.3, -0.3, 0.0, 0.4, -0.4, 0.2, -0.2]
    fills = [2 + 5 * i + e for i, e in enumerate(noise)]
    found = forecast(_rising(ROUND, [90, 95, *fills]), EVIDENCE)
    assert found is not None
    assert found.rate_pct_h == pytest.approx(20, abs=0.3)
    assert found.hours_to_full == pytest.approx(2.9, abs=0.1)
    assert 0 < found.fit_error_h < 0.5  # a few minutes' worth of scatter, not hours
    # The stated error is mostly the rate's drift over the hours ahead.
    assert found.error_h == pytest.approx(math.hypot(found.fit_error_h, RATE_DRIFT * 2.9), abs=0.1)
    assert found.readings == 9 * 15 and found.span == 8 * QUARTER
    assert found.full_at == ROUND + 10 * QUARTER + timedelta(hours=found.hours_to_full)
    local = found.full_at.astimezone(ZoneInfo("Asia/Shanghai"))
    said = found.describe("Asia/Shanghai").text  # the city's time with its offset, never UTC
    assert said.startswith(f"forecast full at {local:%Y-%m-%d %H:%M} +08:00 ")
    assert f"± {found.error_h:.1f} h" in said


def test_an_exact_line_has_no_fit_error() -> None:
    found = forecast(_rising(ROUND, [10, 20, 30, 40, 50]), EVIDENCE)
    assert found is not None
    # 40 %/h; 50 % left from the last point: 75 minutes.
    assert found.full_at == ROUND + 4 * QUARTER + timedelta(minutes=75)
    assert found.fit_error_h == pytest.approx(0, abs=1e-9)
    assert found.error_h == pytest.approx(RATE_DRIFT * 1.25)


def test_too_few_readings_give_no_forecast() -> None:
    sparse = _rising(ROUND, [10, 20, 30, 40, 50], readings=1)  # 5 readings, 6 needed
    assert forecast(sparse, EVIDENCE) is None
    assert forecast(_rising(ROUND, [10, 20, 30, 40, 50], readings=2), EVIDENCE) is not None
    # Two points are a line with nothing to check it by, however many readings they hold.
    assert forecast(_rising(ROUND, [10, 40], timedelta(hours=1), readings=60), EVIDENCE) is None


def test_too_short_a_span_gives_no_forecast() -> None:
    every = timedelta(minutes=14, seconds=59)  # four steps: just under an hour
    assert forecast(_rising(ROUND, [10, 20, 30, 40, 50], every), EVIDENCE) is None
    assert forecast(_rising(ROUND, [10, 20, 30, 40, 50]), EVIDENCE) is not None


@pytest.mark.parametrize(
    "fills",
    [
        [50.0, 50.0, 50.0, 50.0, 50.0],  # not filling
        [60.0, 58.0, 56.0, 54.0, 52.0],  # settling: falling by less than an emptying
        [10.0, 25.0, 40.0, 55.0, 70.0],  # 60 %/h: a sensor jumping, not waste arriving
    ],
)
def test_an_implausible_rate_gives_no_forecast(fills: list[float]) -> None:
    assert forecast(_rising(ROUND, fills), EVIDENCE) is None


def test_a_bin_just_emptied_gives_no_forecast() -> None:
    before = [40, 42, 44, 46, 48, 50, 52]
    # Emptied half an hour ago: the fill before it says nothing about now.
    assert forecast(_rising(ROUND, [*before, 1, 12, 23]), EVIDENCE) is None
    # An hour of fill since, and the forecast rests on that alone (44 %/h, not 8 %/h).
    found = forecast(_rising(ROUND, [*before, 1, 12, 23, 34, 45]), EVIDENCE)
    assert found is not None and found.rate_pct_h == pytest.approx(44)


def test_a_scattered_history_is_too_unsure_to_forecast(monkeypatch: pytest.MonkeyPatch) -> None:
    # ~1.5 %/h lost in ±2 % of scatter (no fall big enough to be an emptying).
    scattered = _rising(ROUND, [30, 34, 30, 34, 31, 35, 32, 36, 33])
    assert forecast(scattered, EVIDENCE) is None
    monkeypatch.setattr(rules, "MAX_RELATIVE_ERROR", 10.0)
    unsure = forecast(scattered, FAR)
    assert unsure is not None and unsure.fit_error_h > 0.5 * unsure.hours_to_full


def test_a_crawling_rate_is_no_forecast_and_no_overflow() -> None:
    crawling = _rising(ROUND, [10, 10 + 1e-12, 10 + 2e-12, 10 + 3e-12, 10 + 4e-12])
    assert forecast(crawling, FAR) is None


def test_a_forecast_looks_no_further_ahead_than_twice_its_span() -> None:
    # 10 %/h over 1 h since the emptying, 50 % left: 5 h ahead from 1 h of evidence.
    assert forecast(_rising(ROUND, [40, 42.5, 45, 47.5, 50]), EVIDENCE) is None
    assert forecast(_rising(ROUND, [40, 42.5, 45, 47.5, 50]), FAR) is not None
    # The same rate over 2.5 h reaches 5 h ahead.
    longer = _rising(ROUND, [25 + 2.5 * i for i in range(11)])
    found = forecast(longer, EVIDENCE)
    assert found is not None and found.hours_to_full == pytest.approx(5)


def _fires(points: list[FillPoint], now: datetime) -> Forecast | None:
    return forecast_fires(points, now=now, work_start_hour=7, timezone=TZ, evidence=FAR)


def test_forecast_fires_only_before_the_next_working_day() -> None:
    # At 18:00 local the next working day starts at 07:00 tomorrow: 13 hours away.
    every = timedelta(hours=1)
    now = ROUND
    start = now - 2 * every
    # 10 %/h from 70 at `now`: full in 3 h, well before 07:00.
    found = _fires(_rising(start, [50, 60, 70], every), now)
    assert found is not None and found.full_at == now + timedelta(hours=3)
    # 1 %/h from 70: full in 30 h, after 07:00 tomorrow.
    slow = _rising(start, [68, 69, 70], every)
    assert _fires(slow, now) is None


def test_forecast_boundary_is_strict() -> None:
    every = timedelta(hours=1)
    now = ROUND  # next working day: 13 h from now
    # 30 % left at 30/13 %/h reaches 100 exactly at 07:00: the crew can still come then.
    rate = 30 / 13
    exact = _rising(now - 2 * every, [70 - 2 * rate, 70 - rate, 70], every)
    found = forecast(exact, FAR)
    assert found is not None
    assert abs(found.full_at - (now + timedelta(hours=13))) < timedelta(milliseconds=1)
    earlier = _rising(now - 2 * every, [70 - 2.02 * rate, 70 - 1.01 * rate, 70], every)
    assert _fires(earlier, now) is not None


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


def test_the_kitchen_round_is_due_by_the_next_round_other_kitchen_requests_sooner() -> None:
    policy = _policy()
    assert policy.due_at(ROUND, Stream.kitchen, Rule.kitchen_daily) == ROUND + timedelta(hours=24)
    for rule in (Rule.threshold, Rule.forecast, Rule.manual):
        assert policy.due_at(ROUND, Stream.kitchen, rule) == ROUND + timedelta(hours=12)
    other = Policy.of(Settings(collection_deadline_kitchen_daily_h=20).collection)
    assert other.due_at(ROUND, "kitchen", Rule.kitchen_daily) == ROUND + timedelta(hours=20)


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
