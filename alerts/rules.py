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

from collections.abc import Collection, Container, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from core.reasons import Reason
from core.settings import AlertSettings
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


Limits = AlertSettings
"""The rules' levels are the alert settings themselves (`settings.alert`, BINWATCH_ALERT_*), with
the durations as timedeltas."""


def hold(limits: Limits, kind: AlertType) -> timedelta:
    """How long an event-like condition stays raised without a repeat."""
    return limits.gap_hold if kind is AlertType.seq_gap else limits.event_hold


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
    reason: Reason | None = None

    @property
    def detail(self) -> str:
        """The reason's English text (stored as the alert's detail or its event's note)."""
        return "" if self.reason is None else self.reason.text


def on_event(event: Event, timezone: str) -> Finding:
    """Every event type is an alert of the same name; repeating it keeps the alert active. The
    detail gives the bin's time of the event in the city's zone."""
    kind, at = AlertType(event.type), event.ts.astimezone(ZoneInfo(timezone))
    if event.detail:
        return Finding(
            kind, True, Reason.of("alert.event_detail", type=kind, at=at, detail=event.detail)
        )
    return Finding(kind, True, Reason.of("alert.event", type=kind, at=at))


def on_status(status: Status) -> Finding:
    """A retained `online: false` (the bin's will, sent by the broker) means offline."""
    if status.online:
        return Finding(AlertType.offline, False, Reason("alert.online"))
    return Finding(AlertType.offline, True, Reason("alert.will"))


# Every reading proves its bin alive: one shared finding, not one built per reading.
_REPORTS_AGAIN: Final = Finding(AlertType.offline, False, Reason("alert.reports_again"))
_EVERY_KIND: Final = frozenset(AlertType)


def on_reading(
    reading: Reading,
    memory: Memory,
    limits: Limits,
    *,
    received_at: datetime,
    newest: bool,
    buffered: bool = False,
) -> tuple[list[Finding], Memory]:
    """Findings for one reading and the bin's memory after it. Readings must come in `ts`
    order; an older one than remembered (a redelivery, a late buffer) changes nothing but
    still proves the bin alive. `newest` marks the bin's latest reading of a batch: only it is
    judged for clock skew, since the older readings of a flushed offline buffer are old by
    right, not because the clock is wrong. `buffered` says the newest reading came in an
    array (a flushed offline buffer): then only a clock ahead is skew (see `_skew`)."""
    findings = [_REPORTS_AGAIN]
    skew_at = _Received(received_at, buffered) if newest else None
    memory = _judge(reading, memory, limits, skew_at, _EVERY_KIND, findings)
    return findings, memory


def on_readings(
    readings: Sequence[Reading],
    memory: Memory,
    limits: Limits,
    *,
    received_at: datetime,
    live: Collection[str],
    buffered: bool = False,
) -> tuple[list[tuple[int, Finding]], Memory]:
    """A bin's readings of one batch at once (in `ts` order; the last is the newest, received
    at `received_at`, in an offline buffer if `buffered`): each finding with the index of the reading it came from, and the memory
    after them all. The same as `on_reading` on each in turn, minus the findings that cannot
    change anything for a bin whose live alert types are `live`: "over" findings of a type
    that is not live and was not found present earlier in the sequence, and every "reports
    again" after the first. What remains is what a caller needs to raise, refresh and clear
    alerts exactly as it would from every finding; leaving the rest unbuilt is what makes a
    batch cheap."""
    if not readings:
        return [], memory
    found: list[tuple[int, Finding]] = [(0, _REPORTS_AGAIN)]
    may_be_live = set(live)
    last = len(readings) - 1
    findings: list[Finding] = []
    newest = _Received(received_at, buffered)
    for index, reading in enumerate(readings):
        memory = _judge(
            reading, memory, limits, newest if index == last else None, may_be_live, findings
        )
        if findings:
            for finding in findings:
                if finding.present:
                    may_be_live.add(finding.kind)
                found.append((index, finding))
            findings = []
    return found, memory


@dataclass(frozen=True, slots=True)
class _Received:
    """When the newest reading of a batch arrived, and whether in an offline buffer."""

    at: datetime
    buffered: bool


def _judge(
    reading: Reading,
    memory: Memory,
    limits: Limits,
    received: _Received | None,
    say_over: Container[str],
    findings: list[Finding],
) -> Memory:
    """Append one reading's findings (but "over" ones only of the types in `say_over`; clock
    skew only when `received` is given) and return the memory after it."""
    ts = reading.ts
    last_ts = memory.last_ts
    if last_ts is not None and ts <= last_ts:
        return memory
    temp = reading.temp_c
    if temp is not None:
        _temperature(temp, ts, memory, limits, AlertType.overheat in say_over, findings)
    level = reading.battery_pct
    if level is not None:
        if level < limits.battery_raise_pct:
            findings.append(Finding(AlertType.battery_low, True, _battery(level)))
        elif level >= limits.battery_clear_pct and AlertType.battery_low in say_over:
            findings.append(Finding(AlertType.battery_low, False, _battery(level)))
    fill = reading.fill_pct
    if fill >= 100:
        full_since = memory.full_since or ts
        if ts - full_since >= limits.full_for:
            findings.append(full_too_long(full_since, ts))
    elif fill < limits.full_clear_pct:
        full_since = None
        if AlertType.full_too_long in say_over:
            findings.append(
                Finding(AlertType.full_too_long, False, Reason("alert.fill", {"fill": fill}))
            )
    else:
        full_since = memory.full_since
    seq, last_seq = reading.seq, memory.last_seq
    if seq is not None and last_seq is not None and seq > last_seq + 1:
        findings.append(
            Finding(
                AlertType.seq_gap,
                True,
                Reason.of("alert.seq_gap", last=last_seq, seq=seq, lost=seq - last_seq - 1),
            )
        )
    if received is not None:
        _skew(
            ts - received.at, received.buffered, limits, AlertType.clock_skew in say_over, findings
        )
    return Memory(
        ts,
        last_seq if seq is None else seq,
        memory.last_temp_c if temp is None else temp,
        full_since,
    )


def _temperature(
    temp: float,
    ts: datetime,
    memory: Memory,
    limits: Limits,
    say_over: bool,
    findings: list[Finding],
) -> None:
    if temp >= limits.temp_raise_c:
        findings.append(
            Finding(
                AlertType.overheat,
                True,
                Reason.of("alert.overheat", temp=temp, limit=limits.temp_raise_c),
            )
        )
        return
    if memory.last_temp_c is not None and memory.last_ts is not None:
        minutes = (ts - memory.last_ts).total_seconds() / 60
        if minutes > 0:
            rise = (temp - memory.last_temp_c) / minutes
            if rise >= limits.temp_rise_c_per_min:
                findings.append(
                    Finding(
                        AlertType.overheat,
                        True,
                        Reason.of(
                            "alert.overheat_rising",
                            temp=temp,
                            rise=rise,
                            limit=limits.temp_rise_c_per_min,
                        ),
                    )
                )
                return
    if temp <= limits.temp_clear_c and say_over:
        findings.append(
            Finding(AlertType.overheat, False, Reason("alert.temperature", {"temp": temp}))
        )


def full_too_long(since: datetime, now: datetime) -> Finding:
    minutes = (now - since).total_seconds() / 60
    return Finding(
        AlertType.full_too_long, True, Reason("alert.full_too_long", {"minutes": minutes})
    )


def _battery(level: float) -> Reason:
    return Reason("alert.battery", {"level": level})


def _skew(
    skew: timedelta, buffered: bool, limits: Limits, say_over: bool, findings: list[Finding]
) -> None:
    """A live reading (sent alone, as a bin sends what it just measured) is skewed when its `ts`
    is too far from the time it arrived, either way. The newest reading of an offline buffer
    (an array: what a bin, or the simulator replaying history, sends once it can) is old by
    right, however old: only a `ts` ahead of the clock says the clock is wrong."""
    size = abs(skew)
    if size > limits.skew_raise and not (buffered and skew < _ZERO):
        way = "alert.clock_ahead" if skew > _ZERO else "alert.clock_behind"
        findings.append(
            Finding(AlertType.clock_skew, True, Reason(way, {"seconds": size.total_seconds()}))
        )
    elif size <= limits.skew_clear and say_over:
        findings.append(Finding(AlertType.clock_skew, False, Reason("alert.clock_in_step")))


_ZERO: Final = timedelta(0)


def silent(last_seen_at: datetime, now: datetime, limits: Limits) -> bool:
    """Offline by silence: nothing received for N reporting intervals."""
    return now - last_seen_at >= limits.silent_for


def hold_expired(kind: AlertType, last_seen_at: datetime, now: datetime, limits: Limits) -> bool:
    """A held condition (see `HELD`) is over once unseen for its hold time."""
    return kind in HELD and now - last_seen_at >= hold(limits, kind)
