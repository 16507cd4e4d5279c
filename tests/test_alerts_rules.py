"""The alert rules without servers: each condition raises and clears at its own levels, and a
value wobbling between them says nothing (hysteresis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts import rules
from alerts.rules import AlertType, Finding, Limits, Memory
from alerts.store import audience
from core.settings import Settings
from devices.contract import Event, Reading, Status

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
LIMITS: Limits = Settings().alert


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


def test_an_offline_buffer_is_skew_only_when_its_newest_reading_is_ahead() -> None:
    reading = _r(0)
    for offset, expected in [
        (timedelta(hours=2), []),  # flushed after two hours offline: old by right
        (timedelta(seconds=30), [(AlertType.clock_skew, False)]),
        (-timedelta(minutes=10), [(AlertType.clock_skew, True)]),  # ahead: the clock is wrong
    ]:
        for found in (
            rules.on_reading(
                reading,
                Memory(),
                LIMITS,
                received_at=reading.ts + offset,
                newest=True,
                buffered=True,
            )[0],
            [
                f
                for _, f in rules.on_readings(
                    [reading],
                    Memory(),
                    LIMITS,
                    received_at=reading.ts + offset,
                    live={"clock_skew"},
                    buffered=True,
                )[0]
            ],
        ):
            assert _kinds([f for f in found if f.kind is AlertType.clock_skew]) == expected


def test_an_old_reading_changes_nothing_but_proves_the_bin_alive() -> None:
    memory = Memory(last_ts=T0 + timedelta(minutes=5), last_seq=9)
    found, after = rules.on_reading(
        _r(0, seq=1, battery_pct=1), memory, LIMITS, received_at=T0, newest=True
    )
    assert _kinds(found) == [(AlertType.offline, False)]
    assert after == memory


def test_events_statuses_silence_and_holds() -> None:
    fire = rules.on_event(Event(ts=T0, type="fire", detail="smoke"), "Asia/Shanghai")
    assert (fire.kind, fire.present) == (AlertType.fire, True) and "smoke" in fire.detail
    local = T0.astimezone(ZoneInfo("Asia/Shanghai"))
    assert f"fire reported at {local:%Y-%m-%d %H:%M} +08:00" in fire.detail
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


def _settle(
    findings: list[tuple[int, Finding]], live: set[AlertType]
) -> list[tuple[str, AlertType, int, str]]:
    """What the alert hook does with findings, as a trace: raises and clears (with the reading
    they came from and their detail) and refreshes of live alerts."""
    live, trace = set(live), []
    for index, finding in findings:
        if finding.present:
            if finding.kind in live:
                trace.append(("seen", finding.kind, index, ""))
            else:
                trace.append(("raised", finding.kind, index, finding.detail))
                live.add(finding.kind)
        elif finding.kind in live:
            trace.append(("cleared", finding.kind, index, finding.detail))
            live.discard(finding.kind)
    return trace


_readings = st.lists(
    st.builds(
        lambda minute, fill, battery, temp, seq: _r(
            minute,
            fill,
            **{
                k: v
                for k, v in (("battery_pct", battery), ("temp_c", temp), ("seq", seq))
                if v is not None
            },
        ),
        st.integers(0, 400),
        st.sampled_from([0, 50, 89, 92, 100]),
        st.one_of(st.none(), st.sampled_from([5.0, 14.9, 20.0, 25.0, 80.0])),
        st.one_of(st.none(), st.sampled_from([20.0, 40.0, 45.0, 50.0, 61.0])),
        st.one_of(st.none(), st.integers(0, 6)),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(
    readings=_readings,
    live=st.sets(st.sampled_from(list(AlertType))),
    remembered=st.sampled_from(
        [Memory(), Memory(last_ts=T0 + timedelta(minutes=100), last_seq=3, last_temp_c=30)]
    ),
    skew=st.sampled_from([timedelta(0), timedelta(minutes=3), timedelta(hours=1)]),
)
def test_a_batch_at_once_settles_like_each_reading_in_turn(
    readings: list[Reading],
    live: set[AlertType],
    remembered: Memory,
    skew: timedelta,
) -> None:
    readings = sorted(readings, key=lambda r: r.ts)
    received = (readings[-1].ts if readings else T0) + skew
    each: list[tuple[int, Finding]] = []
    memory = remembered
    for index, reading in enumerate(readings):
        found, memory = rules.on_reading(
            reading, memory, LIMITS, received_at=received, newest=index == len(readings) - 1
        )
        each += [(index, finding) for finding in found]
    batch, after = rules.on_readings(
        readings, remembered, LIMITS, received_at=received, live={k.value for k in live}
    )
    assert after == memory
    assert _settle(batch, live) == _settle(each, live)
