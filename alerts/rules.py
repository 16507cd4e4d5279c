"""The alert rules, pure: from what a bin sent (and what was remembered of it) to findings,
"this condition is present" or "this condition is over". No database, no clock of its own.

Hysteresis lives here. A level rule raises at one level and declares the condition over only
past a second one (battery under 15 % raises, only 25 % or more clears), so a value wobbling
around the threshold yields one alert, not a storm. Conditions that have no "over" signal of
their own (a fire event, a seq jump) are over once they have not been seen for a hold time,
which the alerter's clock decides (`hold_expired`). A reading in the band between the two
levels says nothing: the alert, if any, stays as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from binwatch.settings import Settings
from devices.contract import Event, Reading, Status


class AlertType(StrEnum):
    fire = "fire"
    overheat = "overheat"
    tilt = "tilt"
    lid_open = "lid_open"
    fault = "fault"
    offline = "offline"
    battery_low = "battery_low"
    full_too_long = "full_too_long"
    seq_gap = "seq_gap"
    clock_skew = "clock_skew"


class Severity(StrEnum):
    minor = "minor"
    major = "major"
    critical = "critical"


SEVERITY: Final = {
    AlertType.fire: Severity.critical,
    AlertType.overheat: Severity.critical,  # fire risk: treated like a fire until seen otherwise
    AlertType.tilt: Severity.major,
    AlertType.lid_open: Severity.minor,
    AlertType.fault: Severity.major,
    AlertType.offline: Severity.major,
    AlertType.battery_low: Severity.minor,
    AlertType.full_too_long: Severity.minor,
    AlertType.seq_gap: Severity.minor,
    AlertType.clock_skew: Severity.minor,
}

# Conditions with no "it is over" signal of their own: over once unseen for their hold time.
HELD: Final = frozenset(
    {AlertType.fire, AlertType.tilt, AlertType.lid_open, AlertType.fault, AlertType.seq_gap}
)


@dataclass(frozen=True, slots=True)
class Limits:
    """The rules' levels, from the `alert_*` settings."""

    temp_raise_c: float
    temp_clear_c: float
    temp_rise_c_per_min: float
    battery_raise_pct: float
    battery_clear_pct: float
    full_for: timedelta
    full_clear_pct: float
    skew_raise: timedelta
    skew_clear: timedelta
    silent_for: timedelta
    event_hold: timedelta
    gap_hold: timedelta

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            temp_raise_c=settings.alert_temp_raise_c,
            temp_clear_c=settings.alert_temp_clear_c,
            temp_rise_c_per_min=settings.alert_temp_rise_c_per_min,
            battery_raise_pct=settings.alert_battery_raise_pct,
            battery_clear_pct=settings.alert_battery_clear_pct,
            full_for=timedelta(minutes=settings.alert_full_for_min),
            full_clear_pct=settings.alert_full_clear_pct,
            skew_raise=timedelta(seconds=settings.alert_skew_raise_s),
            skew_clear=timedelta(seconds=settings.alert_skew_clear_s),
            silent_for=timedelta(
                seconds=settings.alert_report_interval_s * settings.alert_offline_intervals
            ),
            event_hold=timedelta(minutes=settings.alert_event_hold_min),
            gap_hold=timedelta(minutes=settings.alert_gap_hold_min),
        )

    def hold(self, kind: AlertType) -> timedelta:
        return self.gap_hold if kind is AlertType.seq_gap else self.event_hold


@dataclass(frozen=True, slots=True)
class Memory:
    """What the rules remember of a bin between readings (stored per bin in the registry)."""

    last_ts: datetime | None = None
    last_seq: int | None = None
    last_temp_c: float | None = None
    full_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """`present`: the condition holds (raise, or keep the alert); otherwise it is over."""

    kind: AlertType
    present: bool
    detail: str = ""


def on_event(event: Event) -> Finding:
    """Every event type is an alert of the same name; repeating it keeps the alert active."""
    detail = f"{event.type} reported at {event.ts.isoformat()}"
    return Finding(
        AlertType(event.type), True, f"{detail}: {event.detail}" if event.detail else detail
    )


def on_status(status: Status) -> Finding:
    """A retained `online: false` (the bin's will, sent by the broker) means offline."""
    if status.online:
        return Finding(AlertType.offline, False, "the bin says it is online")
    return Finding(AlertType.offline, True, "the bin's will: online false")


def on_reading(
    reading: Reading, memory: Memory, limits: Limits, *, received_at: datetime, newest: bool
) -> tuple[list[Finding], Memory]:
    """Findings for one reading and the bin's memory after it. Readings must come in `ts`
    order; an older one than remembered (a redelivery, a late buffer) changes nothing but
    still proves the bin alive. `newest` marks the bin's latest reading of a batch: only it is
    judged for clock skew, since the older readings of a flushed offline buffer are old by
    right, not because the clock is wrong."""
    findings = [Finding(AlertType.offline, False, "the bin reports again")]
    if memory.last_ts is not None and reading.ts <= memory.last_ts:
        return findings, memory
    findings += _temperature(reading, memory, limits)
    findings += _battery(reading, limits)
    full_since, full = _full(reading, memory, limits)
    findings += full
    if (
        reading.seq is not None
        and memory.last_seq is not None
        and reading.seq > memory.last_seq + 1
    ):
        lost = reading.seq - memory.last_seq - 1
        findings.append(
            Finding(
                AlertType.seq_gap,
                True,
                f"seq jumped {memory.last_seq} → {reading.seq}: {lost} lost",
            )
        )
    if newest:
        findings += _skew(reading.ts - received_at, limits)
    after = replace(
        memory,
        last_ts=reading.ts,
        last_seq=reading.seq if reading.seq is not None else memory.last_seq,
        last_temp_c=reading.temp_c if reading.temp_c is not None else memory.last_temp_c,
        full_since=full_since,
    )
    return findings, after


def _temperature(reading: Reading, memory: Memory, limits: Limits) -> list[Finding]:
    temp = reading.temp_c
    if temp is None:
        return []
    if temp >= limits.temp_raise_c:
        return [Finding(AlertType.overheat, True, f"{temp:.1f} °C ≥ {limits.temp_raise_c:.0f} °C")]
    if memory.last_temp_c is not None and memory.last_ts is not None:
        minutes = (reading.ts - memory.last_ts).total_seconds() / 60
        if minutes > 0:
            rise = (temp - memory.last_temp_c) / minutes
            if rise >= limits.temp_rise_c_per_min:
                return [
                    Finding(
                        AlertType.overheat,
                        True,
                        f"{temp:.1f} °C, rising {rise:.1f} °C/min "
                        f"(≥ {limits.temp_rise_c_per_min:.1f})",
                    )
                ]
    if temp <= limits.temp_clear_c:
        return [Finding(AlertType.overheat, False, f"{temp:.1f} °C")]
    return []


def _battery(reading: Reading, limits: Limits) -> list[Finding]:
    level = reading.battery_pct
    if level is None:
        return []
    if level < limits.battery_raise_pct:
        return [Finding(AlertType.battery_low, True, f"battery {level:.0f} %")]
    if level >= limits.battery_clear_pct:
        return [Finding(AlertType.battery_low, False, f"battery {level:.0f} %")]
    return []


def _full(
    reading: Reading, memory: Memory, limits: Limits
) -> tuple[datetime | None, list[Finding]]:
    """Full since when, and whether it has been full too long (or is emptied enough)."""
    if reading.fill_pct >= 100:
        since = memory.full_since or reading.ts
        if reading.ts - since >= limits.full_for:
            return since, [full_too_long(since, reading.ts)]
        return since, []
    if reading.fill_pct < limits.full_clear_pct:
        return None, [Finding(AlertType.full_too_long, False, f"fill {reading.fill_pct:.0f} %")]
    return memory.full_since, []


def full_too_long(since: datetime, now: datetime) -> Finding:
    minutes = (now - since).total_seconds() / 60
    return Finding(AlertType.full_too_long, True, f"100 % full for {minutes:.0f} min")


def _skew(skew: timedelta, limits: Limits) -> list[Finding]:
    if abs(skew) > limits.skew_raise:
        way = "ahead" if skew > timedelta(0) else "behind"
        return [
            Finding(AlertType.clock_skew, True, f"clock {abs(skew).total_seconds():.0f} s {way}")
        ]
    if abs(skew) <= limits.skew_clear:
        return [Finding(AlertType.clock_skew, False, "clock in step")]
    return []


def silent(last_seen_at: datetime, now: datetime, limits: Limits) -> bool:
    """Offline by silence: nothing received for N reporting intervals."""
    return now - last_seen_at >= limits.silent_for


def hold_expired(kind: AlertType, last_seen_at: datetime, now: datetime, limits: Limits) -> bool:
    """A held condition (see `HELD`) is over once unseen for its hold time."""
    return kind in HELD and now - last_seen_at >= limits.hold(kind)
