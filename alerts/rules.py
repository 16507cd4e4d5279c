"""The alert rules, pure: from what a bin sent (and what was remembered of it) to findings,
"this condition is present" or "this condition is over". No database, no clock of its own.

Hysteresis lives here. A level rule raises at one level and declares the condition over only
past a second one (battery under 15 % raises, only 25 % or more clears), so a value wobbling
around the threshold yields one alert, not a storm. Conditions that have no "over" signal of
their own (a fire event, lost readings) are over once they have not been seen for a hold time,
which the alerter's clock decides (`hold_expired`). A reading in the band between the two
levels says nothing: the alert, if any, stays as it is.

A `seq` jump is not a loss yet: with several ingest workers (or a worker that waited for the
registry) a bin's readings may reach the rules out of order, the skipped ones after a later one.
The memory keeps the skipped numbers (an open gap, at most `MAX_MISSING`), a late reading whose
`seq` is among them fills it, and what is still missing once the gap has been open for
`gap_grace` is lost (`gap_lost`: on the next reading, or on the alerter's clock).
"""

from __future__ import annotations

from collections.abc import Collection, Container, Sequence
from dataclasses import dataclass, replace
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


# The seqs an open gap remembers: a jump that would leave more missing is a loss at once (a
# bin reporting every minute would need an hour of readings overtaken by later ones).
MAX_MISSING: Final = 64
# A rise smaller than this between two readings is the thermometer's noise and its 0.1 °C
# rounding, however fast a rate it makes over seconds (readings a second apart, a buffered
# batch): 0.1 °C in one second is already 6 °C/min. At the minutes apart bins report, a fire's
# climb passes it between two readings; for a bin reporting every few seconds the rate rule then
# stays quiet, and the level (`temp_raise_c`, 60 °C) is what raises the alert.
MIN_RISE_C: Final = 2.0


@dataclass(frozen=True, slots=True)
class Memory:
    """What the rules remember of a bin between readings (stored per bin in the registry):
    `missing` are the seqs of an open gap (ascending), `gap_since` when its oldest was first
    missed (ingest's clock: when the rules judged the reading that skipped it)."""

    last_ts: datetime | None = None
    last_seq: int | None = None
    last_temp_c: float | None = None
    full_since: datetime | None = None
    missing: tuple[int, ...] = ()
    gap_since: datetime | None = None


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
    judged_at: datetime | None = None,
) -> tuple[list[Finding], Memory]:
    """Findings for one reading and the bin's memory after it. Readings must come in `ts`
    order; an older one than remembered (a redelivery, a late buffer, one overtaken by later
    ones) changes nothing but the open gap it fills, and still proves the bin alive. `newest`
    marks the bin's latest reading of a batch: only it is judged for clock skew, since the
    older readings of a flushed offline buffer are old by right, not because the clock is
    wrong. `buffered` says the newest reading came in an array (a flushed offline buffer):
    then only a clock ahead is skew (see `_skew`). `judged_at` (default `received_at`) is when the rules run, the clock of a seq gap's grace:
    a batch held while the registry was away is judged later than it arrived, and its gaps
    wait for late readings from then."""
    findings = [_REPORTS_AGAIN]
    received = _Received(received_at, buffered, judged_at or received_at)
    memory = _judge(reading, memory, limits, received, newest, _EVERY_KIND, findings)
    return findings, memory


def on_readings(
    readings: Sequence[Reading],
    memory: Memory,
    limits: Limits,
    *,
    received_at: datetime,
    live: Collection[str],
    buffered: bool = False,
    judged_at: datetime | None = None,
) -> tuple[list[tuple[int, Finding]], Memory]:
    """A bin's readings of one batch at once (in `ts` order; the last is the newest, received
    at `received_at`, in an offline buffer if `buffered`; all judged at `judged_at`): each
    finding with the index of the reading it came from, and the memory after them all. The
    same as `on_reading` on each in turn, minus the findings that cannot change anything for
    a bin whose live alert types are `live`: "over" findings of a type that is not live and
    was not found present earlier in the sequence, and every "reports again" after the first.
    What remains is what a caller needs to raise, refresh and clear alerts exactly as it would
    from every finding; leaving the rest unbuilt is what makes a batch cheap."""
    if not readings:
        return [], memory
    found: list[tuple[int, Finding]] = [(0, _REPORTS_AGAIN)]
    may_be_live = set(live)
    last = len(readings) - 1
    findings: list[Finding] = []
    newest = _Received(received_at, buffered, judged_at or received_at)
    for index, reading in enumerate(readings):
        memory = _judge(reading, memory, limits, newest, index == last, may_be_live, findings)
        if findings:
            for finding in findings:
                if finding.present:
                    may_be_live.add(finding.kind)
                found.append((index, finding))
            findings = []
    return found, memory


@dataclass(frozen=True, slots=True)
class _Received:
    """When a batch arrived (its newest reading), whether in an offline buffer, and when the
    rules judge it."""

    at: datetime
    buffered: bool
    judged_at: datetime


def _judge(
    reading: Reading,
    memory: Memory,
    limits: Limits,
    received: _Received,
    newest: bool,
    say_over: Container[str],
    findings: list[Finding],
) -> Memory:
    """Append one reading's findings (but "over" ones only of the types in `say_over`; clock
    skew only for the `newest`) and return the memory after it."""
    ts = reading.ts
    last_ts = memory.last_ts
    if last_ts is not None and ts <= last_ts:
        # Late: judged by nothing else, but it may be one an open gap waits for.
        seq = reading.seq
        if seq is None or seq not in memory.missing:
            return memory
        missing, since = _gap(memory, seq, received.judged_at, limits, findings)
        return replace(memory, missing=missing, gap_since=since)
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
    if newest:
        _skew(
            ts - received.at, received.buffered, limits, AlertType.clock_skew in say_over, findings
        )
    seq, last_seq = reading.seq, memory.last_seq
    missing, since = memory.missing, memory.gap_since
    # Most readings follow the last one with no gap open: no gap bookkeeping for them.
    if seq is not None and (missing or (last_seq is not None and seq > last_seq + 1)):
        missing, since = _gap(memory, seq, received.judged_at, limits, findings)
    return Memory(
        ts,
        last_seq if seq is None else seq,
        memory.last_temp_c if temp is None else temp,
        full_since,
        missing,
        since,
    )


def _gap(
    memory: Memory, seq: int, at: datetime, limits: Limits, findings: list[Finding]
) -> tuple[tuple[int, ...], datetime | None]:
    """The open gap (missing seqs, since when) after a reading numbered `seq` arrived `at`:
    `seq` fills its place if missing, a jump past the newest seq adds the skipped ones, and a
    gap open for its grace (or that would grow past `MAX_MISSING`) is reported and forgotten.
    A seq at or under the newest that is not missing is a redelivery or a reboot (which counts
    again from there): no gap. Any reading whose seq is missing fills it, a rebooted bin's too."""
    last_seq, missing, since = memory.last_seq, memory.missing, memory.gap_since
    if seq in missing:
        missing = tuple(number for number in missing if number != seq)
    elif last_seq is not None and seq > last_seq + 1:
        skipped = range(last_seq + 1, seq)
        if len(missing) + len(skipped) > MAX_MISSING:
            count = len(missing) + len(skipped)
            findings.append(
                Finding(
                    AlertType.seq_gap,
                    True,
                    Reason.of("alert.seq_gap", last=last_seq, seq=seq, lost=count),
                )
            )
            return (), None
        missing += tuple(skipped)
        since = since or at
    if not missing:
        return (), None
    lost = _lost(missing, since, at, limits)
    if lost is None:
        return missing, since
    findings.append(lost)
    return (), None


def gap_lost(memory: Memory, now: datetime, limits: Limits) -> tuple[Finding | None, Memory]:
    """The alerter's clock on an open gap: the `seq_gap` finding if it has been open for its
    grace at `now`, and the memory after (the gap forgotten once reported: what is still
    missing is lost, not awaited); no finding and the same memory while it may still fill."""
    lost = _lost(memory.missing, memory.gap_since, now, limits)
    if lost is None:
        return None, memory
    return lost, replace(memory, missing=(), gap_since=None)


def _lost(
    missing: tuple[int, ...], since: datetime | None, now: datetime, limits: Limits
) -> Finding | None:
    """The count is of the seqs still missing, the newer ones included even if their own grace
    has not passed: one time is kept per gap, not per seq."""
    if since is None or not missing or now - since < limits.gap_grace:
        return None
    waited = (now - since).total_seconds()
    if len(missing) == 1:
        return Finding(
            AlertType.seq_gap, True, Reason.of("alert.seq_lost_one", seq=missing[0], waited=waited)
        )
    return Finding(
        AlertType.seq_gap,
        True,
        Reason.of(
            "alert.seq_lost",
            lost=len(missing),
            first=missing[0],
            last=missing[-1],
            waited=waited,
        ),
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
        if minutes > 0 and temp - memory.last_temp_c >= MIN_RISE_C:
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
