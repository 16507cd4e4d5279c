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


def test_a_thermometers_noise_between_readings_seconds_apart_is_no_rise() -> None:
    second = 1 / 60
    # 0.1–1.9 °C a second (6–114 °C/min) is noise and rounding, not a fire: never an overheat
    steps = _run(
        AlertType.overheat,
        *(_r(i * second, temp_c=t) for i, t in enumerate([20.0, 20.1, 20.0, 21.9, 20.3, 20.4])),
    )
    assert {(kind, present) for step in steps for kind, present in _kinds(step)} == {
        (AlertType.overheat, False)
    }
    # 2 °C in a second is a rise, at any interval
    _, jump = _run(AlertType.overheat, _r(0, temp_c=20.0), _r(second, temp_c=22.0))
    assert _kinds(jump) == [(AlertType.overheat, True)]


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


def _arrive(
    *readings: tuple[Reading, float], memory: Memory | None = None, limits: Limits = LIMITS
) -> tuple[list[Finding], Memory]:
    """The `seq_gap` findings of readings fed to one bin's memory in the order they arrive,
    each with the seconds after T0 it arrived, and the memory after them."""
    memory, out = memory or Memory(), []
    for reading, second in readings:
        found, memory = rules.on_reading(
            reading, memory, limits, received_at=T0 + timedelta(seconds=second), newest=True
        )
        out += [f for f in found if f.kind is AlertType.seq_gap]
    return out, memory


GRACE_S = LIMITS.gap_grace.total_seconds()


def test_a_seq_jump_waits_for_the_skipped_readings_and_a_reset_is_no_gap() -> None:
    found, memory = _arrive((_r(0, seq=1), 0), (_r(1, seq=2), 1), (_r(2, seq=5), 2))
    assert found == []
    assert (memory.last_seq, memory.missing, memory.gap_since) == (
        5,
        (3, 4),
        T0 + timedelta(seconds=2),
    )
    found, after = _arrive((_r(3, seq=0), 3), memory=Memory(last_ts=T0, last_seq=6))
    assert (found, after.last_seq, after.missing) == ([], 0, ())  # a reboot counts again


def test_readings_overtaken_by_later_ones_fill_the_gap_and_nothing_is_lost() -> None:
    # seq 7 and 8 held by a worker that was killed, delivered after seq 9 and 10.
    found, memory = _arrive(
        (_r(0, seq=6), 0),
        (_r(3, seq=9), 3),
        (_r(4, seq=10), 4),
        (_r(1, seq=7, battery_pct=1), 30),  # late: fills its place, judged by nothing else
        (_r(2, seq=8), 31),
        (_r(5, seq=11), GRACE_S + 60),
    )
    assert found == []
    assert (memory.last_seq, memory.missing, memory.gap_since) == (11, (), None)
    assert memory.last_ts == _r(5).ts
    assert rules.gap_lost(memory, T0 + timedelta(days=1), LIMITS) == (None, memory)


def test_what_is_still_missing_after_the_grace_is_lost_once() -> None:
    found, memory = _arrive((_r(0, seq=1), 0), (_r(1, seq=5), 1), (_r(0.5, seq=3), 2))
    assert (found, memory.missing) == ([], (2, 4))
    opened = T0 + timedelta(seconds=1)
    grace = LIMITS.gap_grace
    assert rules.gap_lost(memory, opened + grace - timedelta(seconds=1), LIMITS) == (None, memory)
    # The alerter's clock: the bin said nothing since.
    lost, after = rules.gap_lost(memory, opened + grace, LIMITS)
    assert lost is not None and (lost.kind, lost.present) == (AlertType.seq_gap, True)
    assert lost.detail == f"2 lost: seq 2 … 4 not received within {GRACE_S:.0f} s"
    assert after == Memory(memory.last_ts, 5, full_since=memory.full_since)
    assert _arrive((_r(0.2, seq=2), GRACE_S + 9), memory=after) == ([], after)  # too late
    # Or the bin's next reading, if it comes first.
    found, after_reading = _arrive((_r(2, seq=6), GRACE_S + 1), memory=memory)
    assert [f.detail for f in found] == [f"2 lost: seq 2 … 4 not received within {GRACE_S:.0f} s"]
    assert (after_reading.last_seq, after_reading.missing) == (6, ())


def test_a_jump_past_what_a_gap_remembers_is_lost_at_once_and_so_is_any_without_grace() -> None:
    found, memory = _arrive((_r(0, seq=1), 0), (_r(1, seq=3 + rules.MAX_MISSING), 1))
    assert [f.detail for f in found] == [f"seq jumped 1 → {3 + rules.MAX_MISSING}: 65 lost"]
    assert memory.missing == ()
    # Just fits, then one more skipped: all of them lost.
    found, memory = _arrive((_r(0, seq=1), 0), (_r(1, seq=2 + rules.MAX_MISSING), 1))
    assert (found, len(memory.missing)) == ([], rules.MAX_MISSING)
    found, memory = _arrive((_r(2, seq=rules.MAX_MISSING + 4), 2), memory=memory)
    assert [f.detail for f in found] == [f"seq jumped {rules.MAX_MISSING + 2} → 68: 65 lost"]
    at_once = LIMITS.model_copy(update={"gap_grace_s": 0})
    found, memory = _arrive((_r(0, seq=1), 0), (_r(1, seq=4), 1), limits=at_once)
    assert [f.detail for f in found] == ["2 lost: seq 2 … 3 not received within 0 s"]
    assert memory.missing == ()


def test_a_held_batch_waits_from_when_it_is_judged_not_from_when_it_arrived() -> None:
    late = T0 + timedelta(seconds=GRACE_S * 3)  # held while the registry was away
    found, memory = rules.on_reading(
        _r(1, seq=5),
        Memory(last_ts=T0, last_seq=1),
        LIMITS,
        received_at=T0,
        newest=True,
        judged_at=late,
    )
    assert [f for f in found if f.kind is AlertType.seq_gap] == []
    assert (memory.missing, memory.gap_since) == ((2, 3, 4), late)


@settings(max_examples=200, deadline=None)
@given(order=st.permutations(range(12)), batch=st.integers(1, 4))
def test_readings_in_any_order_within_the_grace_raise_no_gap(order: list[int], batch: int) -> None:
    """Whatever order the workers deliver a bin's readings in, in batches of any size (each in
    `ts` order, as the hook sorts them), none is lost while all come within the grace."""
    memory = Memory(last_ts=T0, last_seq=0)
    found: list[Finding] = []
    for start in range(0, len(order), batch):
        readings = [_r(seq + 1, seq=seq + 1) for seq in sorted(order[start : start + batch])]
        got, memory = rules.on_readings(
            readings,
            memory,
            LIMITS,
            received_at=T0 + timedelta(seconds=start),
            live=(),
        )
        found += [f for _, f in got if f.kind is AlertType.seq_gap]
    assert found == []
    assert (memory.last_seq, memory.missing, memory.gap_since) == (12, (), None)


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
        [
            Memory(),
            Memory(last_ts=T0 + timedelta(minutes=100), last_seq=3, last_temp_c=30),
            Memory(last_ts=T0 + timedelta(minutes=3), last_seq=5, missing=(1, 4), gap_since=T0),
        ]
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
