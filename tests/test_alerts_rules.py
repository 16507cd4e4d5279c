"""The alert rules without servers: each condition raises and clears at its own levels, and a
value wobbling between them says nothing (hysteresis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts import rules
from alerts.rules import AlertType, Finding, Limits, Memory
from alerts.store import audience
from binwatch.settings import Settings
from devices.contract import Event, Reading, Status

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
LIMITS = Limits.of(Settings())


def _run(kind: AlertType, *readings: Reading) -> list[list[Finding]]:
    """The findings of `kind` after each reading, fed in order to one bin's memory."""
    memory, out = Memory(), []
    for reading in readings:
        found, memory = rules.on_reading(
            reading, memory, LIMITS, received_at=reading.ts, newest=True
        )
        out.append([f for f in found if f.kind is kind])
    return out


def _r(minute: float, fill: float = 50, **fields: float | int) -> Reading:
    return Reading.model_validate({"ts": T0 + timedelta(minutes=minute), "fill_pct": fill} | fields)


def _kinds(findings: list[Finding]) -> list[tuple[AlertType, bool]]:
    return [(f.kind, f.present) for f in findings]


def test_battery_raises_under_15_and_clears_only_at_25() -> None:
    steps = _run(
        AlertType.battery_low,
        _r(0, battery_pct=30),
        _r(1, battery_pct=14),
        _r(2, battery_pct=20),
        _r(3, battery_pct=14.5),
        _r(4, battery_pct=24.9),
        _r(5, battery_pct=25),
    )
    assert [_kinds(s) for s in steps] == [
        [(AlertType.battery_low, False)],
        [(AlertType.battery_low, True)],
        [],
        [(AlertType.battery_low, True)],
        [],
        [(AlertType.battery_low, False)],
    ]


def test_temperature_over_the_level_or_rising_fast_is_overheat() -> None:
    hot, band, cool = _run(AlertType.overheat, _r(0, temp_c=61), _r(1, temp_c=50), _r(2, temp_c=45))
    assert _kinds(hot) == [(AlertType.overheat, True)]
    assert band == []
    assert _kinds(cool) == [(AlertType.overheat, False)]
    _, rising = _run(
        AlertType.overheat, _r(0, temp_c=20), _r(2, temp_c=32)
    )  # 6 °C/min, well under 60 °C
    assert _kinds(rising) == [(AlertType.overheat, True)]
    assert "rising" in rising[0].detail


def test_full_too_long_after_the_limit_and_cleared_when_emptied() -> None:
    limit = LIMITS.full_for.total_seconds() / 60
    steps = _run(
        AlertType.full_too_long,
        _r(0, 100),
        _r(limit - 1, 100),
        _r(limit, 100),
        _r(limit + 1, 95),
        _r(limit + 2, 10),
    )
    assert [_kinds(s) for s in steps] == [
        [],
        [],
        [(AlertType.full_too_long, True)],
        [],
        [(AlertType.full_too_long, False)],
    ]


def test_a_seq_jump_is_a_gap_and_a_reset_is_not() -> None:
    steps = _run(AlertType.seq_gap, _r(0, seq=1), _r(1, seq=2), _r(2, seq=5), _r(3, seq=0))
    assert [_kinds(s) for s in steps] == [[], [], [(AlertType.seq_gap, True)], []]
    assert "2 lost" in steps[2][0].detail


def test_clock_skew_with_hysteresis_and_only_on_the_newest_reading() -> None:
    reading = _r(0)
    for offset, newest, expected in [
        (timedelta(minutes=10), True, [(AlertType.clock_skew, True)]),
        (timedelta(minutes=3), True, []),
        (timedelta(seconds=30), True, [(AlertType.clock_skew, False)]),
        (timedelta(hours=2), False, []),  # an old reading of a flushed buffer
    ]:
        found, _ = rules.on_reading(
            reading, Memory(), LIMITS, received_at=reading.ts + offset, newest=newest
        )
        assert _kinds([f for f in found if f.kind is AlertType.clock_skew]) == expected


def test_an_old_reading_changes_nothing_but_proves_the_bin_alive() -> None:
    memory = Memory(last_ts=T0 + timedelta(minutes=5), last_seq=9)
    found, after = rules.on_reading(
        _r(0, seq=1, battery_pct=1), memory, LIMITS, received_at=T0, newest=True
    )
    assert _kinds(found) == [(AlertType.offline, False)]
    assert after == memory


def test_events_statuses_silence_and_holds() -> None:
    fire = rules.on_event(Event(ts=T0, type="fire", detail="smoke"))
    assert (fire.kind, fire.present) == (AlertType.fire, True) and "smoke" in fire.detail
    assert rules.on_status(Status(ts=T0, online=False)).present
    assert not rules.on_status(Status(ts=T0, online=True)).present
    assert not rules.silent(T0, T0 + LIMITS.silent_for - timedelta(seconds=1), LIMITS)
    assert rules.silent(T0, T0 + LIMITS.silent_for, LIMITS)
    assert rules.hold_expired(AlertType.tilt, T0, T0 + LIMITS.event_hold, LIMITS)
    assert not rules.hold_expired(AlertType.battery_low, T0, T0 + timedelta(days=9), LIMITS)


def test_who_hears_of_what() -> None:
    assert audience(rules.SEVERITY[AlertType.fire]) == ("manager", "operator", "community", "squad")
    assert audience(rules.SEVERITY[AlertType.tilt]) == ("manager", "operator", "community")
    assert audience(rules.SEVERITY[AlertType.battery_low]) == ("manager", "operator")
