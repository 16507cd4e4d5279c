"""Reasons the system writes (why a request was opened, what an alert saw, the notes on a
request's or an alert's events) as data: a message id and its arguments, so that each reader
gets them in their own language with numbers and times as their locale writes them, while the
English text stays stored next to them for the API and the audit.

A message's English template (`%(name)s` placeholders) is three things at once: what
`Reason.text` writes into the text column, the console's gettext msgid (its catalogs translate
it, tests/test_console_i18n.py checks both have every one), and the English of a notification.
The notifications' Chinese is alerts/texts.py's (core/texts.py says why not the console's).
Each placeholder has a kind: a number with its decimals, a time (ISO 8601 with the city's
offset, so the English text needs no time zone to be written again), a duration, an alert
type's code (named by the reader's labels), text passed as is (a device's own words, an area's
id, an error) or a list of further reasons (an escalation's "what reached whom", each part
written in turn and joined as the reader's language joins clauses).

A row written before reasons were structured has none: readers show its stored text."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal, Protocol

from core.texts import decimal, duration, list_of, with_offset

Arg = str | int | float | list[dict[str, Any]]
Kind = int | Literal["time", "duration", "type", "stream", "area", "text", "parts"]
"""A number's decimals, or what else a placeholder holds: a time, a duration (in seconds), an
alert type's code, a bin stream's code, an area's id (a reader with the registry names it),
text as it is, or further reasons (stored as
`Reason.dump`s) in a list."""


@dataclass(frozen=True, slots=True)
class Message:
    text: str
    kinds: Mapping[str, Kind]


def _message(text: str, **kinds: Kind) -> Message:
    return Message(text, kinds)


MESSAGES: Final[Mapping[str, Message]] = {
    # Why a collection request was opened (collection/).
    "request.threshold": _message(
        "fill %(fill)s %% reached the threshold of %(threshold)s %%", fill=0, threshold=0
    ),
    "request.kitchen_daily": _message("kitchen waste is cleared daily (日产日清)"),
    "request.forecast": _message(
        "forecast full at %(at)s (in %(hours)s ± %(error)s h; %(rate)s %%/h fitted to "
        "%(readings)s readings over %(span)s h since the last emptying)",
        at="time",
        hours=1,
        error=1,
        rate=1,
        readings=0,
        span=1,
    ),
    # Why a route plan leaves a job out (collection/planning.py); a clock is local HH:MM.
    "route.no_carrier": _message("no vehicle carries %(stream)s", stream="stream"),
    "route.over_capacity": _message(
        "its load (%(litres)s L, %(kg)s kg) exceeds every %(stream)s vehicle's capacity",
        litres=0,
        kg=0,
        stream="stream",
    ),
    "route.deadline": _message(
        "its deadline %(clock)s comes before any %(stream)s vehicle can reach it",
        clock="text",
        stream="stream",
    ),
    "route.too_far": _message(
        "no %(stream)s vehicle's shift is long enough to reach it and come back",
        stream="stream",
    ),
    "route.no_room": _message("no %(stream)s vehicle has room or time left today", stream="stream"),
    # Why nothing can be planned at all (collection/plans.py).
    "route.no_vehicles": _message(
        "operator %(operator)s has no vehicles in the fleet file", operator="text"
    ),
    # What an alert rule saw (alerts/rules.py), raising or clearing.
    "alert.event": _message("%(type)s reported at %(at)s", type="type", at="time"),
    "alert.event_detail": _message(
        "%(type)s reported at %(at)s: %(detail)s", type="type", at="time", detail="text"
    ),
    "alert.online": _message("the bin says it is online"),
    "alert.silent": _message("nothing received for %(seconds)s s", seconds=0),
    "alert.will": _message("the bin's will: online false"),
    "alert.reports_again": _message("the bin reports again"),
    "alert.battery": _message("battery %(level)s %%", level=0),
    "alert.fill": _message("fill %(fill)s %%", fill=0),
    "alert.full_too_long": _message("100 %% full for %(minutes)s min", minutes=0),
    "alert.seq_gap": _message(
        "seq jumped %(last)s → %(seq)s: %(lost)s lost", last=0, seq=0, lost=0
    ),
    "alert.seq_lost_one": _message(
        "1 lost: seq %(seq)s not received within %(waited)s s", seq=0, waited=0
    ),
    "alert.seq_lost": _message(
        "%(lost)s lost: seq %(first)s … %(last)s not received within %(waited)s s",
        lost=0,
        first=0,
        last=0,
        waited=0,
    ),
    "alert.overheat": _message("%(temp)s °C ≥ %(limit)s °C", temp=1, limit=0),
    "alert.overheat_rising": _message(
        "%(temp)s °C, rising %(rise)s °C/min (≥ %(limit)s)", temp=1, rise=1, limit=1
    ),
    "alert.temperature": _message("%(temp)s °C", temp=1),
    "alert.clock_ahead": _message("clock %(seconds)s s ahead", seconds=0),
    "alert.clock_behind": _message("clock %(seconds)s s behind", seconds=0),
    "alert.clock_in_step": _message("clock in step"),
    # What cleared an alert without a finding of its own (alerts/service.py).
    "alert.bin_retired": _message("bin retired"),
    "alert.unseen": _message("not seen again for %(hold)s", hold="duration"),
    # The collector's audit notes on a request's events (collection/service.py).
    "request.verify_none": _message(
        "no reading arrived within %(window)s after completion (emptied means ≤ %(emptied)s %%)",
        window="duration",
        emptied=0,
    ),
    "request.verify_lowest": _message(
        "lowest fill %(fill)s %% within %(window)s after completion "
        "(emptied means ≤ %(emptied)s %%)",
        fill=0,
        window="duration",
        emptied=0,
    ),
    # A crew's report that it could not empty a bin (collection/crew.py), one per reason.
    "crew.blocked": _message("could not empty: the bin was blocked"),
    "crew.bin_damaged": _message("could not empty: the bin is damaged"),
    "crew.contaminated_refused": _message("could not empty: contaminated load refused"),
    "crew.no_access": _message("could not empty: no access to the bin"),
    "escalation.community": _message(
        "level %(level)s: community %(area)s: %(told)s", level=0, area="area", told="parts"
    ),
    "escalation.street": _message(
        "level %(level)s: street squad %(area)s: %(told)s", level=0, area="area", told="parts"
    ),
    "escalation.community_unknown": _message(
        "level %(level)s: no contact configured for community %(area)s", level=0, area="area"
    ),
    "escalation.street_unknown": _message(
        "level %(level)s: no contact configured for street squad %(area)s", level=0, area="area"
    ),
    "escalation.published": _message("published to %(topic)s", topic="text"),
    "escalation.mqtt_failed": _message("MQTT failed: %(error)s", error="text"),
    "escalation.people_queued": _message("%(channels)s queued", channels="text"),
    # An escalation's webhook, the last part of its note (replaced by each attempt's outcome).
    "webhook.queued": _message("webhook queued"),
    "webhook.delivered": _message("webhook delivered"),
    "webhook.delivered_at": _message("webhook delivered at attempt %(attempt)s", attempt=0),
    "webhook.gave_up": _message(
        "webhook gave up after %(attempts)s attempt(s): %(error)s", attempts=0, error="text"
    ),
    "webhook.failed": _message(
        "webhook attempt %(attempt)s failed: %(error)s; next try at %(at)s",
        attempt=0,
        error="text",
        at="time",
    ),
    "webhook.request_closed": _message(
        "webhook not retried after %(attempts)s attempt(s): the request is %(status)s",
        attempts=0,
        status="text",
    ),
    "webhook.no_url": _message(
        "webhook not retried after %(attempts)s attempt(s): %(area)s has no webhook any more",
        attempts=0,
        area="text",
    ),
    "webhook.no_secret": _message(
        "webhook waits: %(kind)s %(id)s has no webhook secret yet, and webhooks are never sent "
        "unsigned (binwatch fleet webhook-secret --%(kind)s %(id)s)",
        kind="text",
        id="text",
    ),
}


class Writer(Protocol):
    """How one reader writes a reason's parts: the template for a message, numbers, times,
    durations, alert types and a list of clauses."""

    def template(self, id: str, english: str, /) -> str: ...
    def number(self, value: float, digits: int, /) -> str: ...
    def time(self, moment: datetime, /) -> str: ...
    def duration(self, seconds: float, /) -> str: ...
    def alert_type(self, code: str, /) -> str: ...
    def stream(self, code: str, /) -> str: ...
    def area(self, id: str, /) -> str: ...
    def join(self, parts: list[str], /) -> str: ...


@dataclass(frozen=True, slots=True)
class Reason:
    """One system-written reason: `id` names a `MESSAGES` entry, `args` fill it (JSON-safe)."""

    id: str
    args: Mapping[str, Arg] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kinds = MESSAGES[self.id].kinds
        if set(kinds) != set(self.args):
            raise ValueError(f"{self.id} takes {sorted(kinds)}, not {sorted(self.args)}")

    @classmethod
    def of(cls, id: str, /, **args: Arg | datetime | timedelta | list[Reason]) -> Reason:
        """A reason whose times are given as aware datetimes (stored in ISO 8601), durations as
        timedeltas and parts as reasons."""
        return cls(id, {name: _plain(value) for name, value in args.items()})

    @property
    def text(self) -> str:
        """The English text, as stored in the text column next to the reason."""
        return self.write(ENGLISH_TEXT)

    def write(self, writer: Writer) -> str:
        message = MESSAGES[self.id]
        values: dict[str, str] = {}
        for name, kind in message.kinds.items():
            value = self.args[name]
            if kind == "parts":
                values[name] = writer.join([part.write(writer) for part in _parts(value)])
            elif isinstance(value, list):
                raise ValueError(f"{self.id}: {name} is not a list")
            elif kind == "time":
                values[name] = writer.time(datetime.fromisoformat(str(value)))
            elif kind == "duration":
                values[name] = writer.duration(float(value))
            elif kind == "type":
                values[name] = writer.alert_type(str(value))
            elif kind == "stream":
                values[name] = writer.stream(str(value))
            elif kind == "area":
                values[name] = writer.area(str(value))
            elif kind == "text":
                values[name] = str(value)
            else:
                values[name] = writer.number(float(value), kind)
        return writer.template(self.id, message.text) % values

    def dump(self) -> dict[str, Any]:
        """The JSON stored next to the text."""
        return {"id": self.id, "args": dict(self.args)}

    @classmethod
    def load(cls, stored: Mapping[str, Any] | None) -> Reason | None:
        """The reason stored by `dump`; None for a row from before (or a message since gone)."""
        if not stored or stored.get("id") not in MESSAGES:
            return None
        try:
            return cls(stored["id"], stored.get("args") or {})
        except (ValueError, KeyError, TypeError):
            return None


def placeholders(template: str) -> set[str]:
    """The names a `%`-template takes."""
    return set(_PLACEHOLDER.findall(template))


_PLACEHOLDER: Final = re.compile(r"%\((\w+)\)s")


def _plain(value: Arg | datetime | timedelta | list[Reason]) -> Arg:
    """As JSON keeps it: a time in ISO 8601 (with its offset), a duration in seconds, a code (a
    `StrEnum`) as text, parts as their dumps."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, list):
        return [part.dump() if isinstance(part, Reason) else part for part in value]
    return str(value) if isinstance(value, str) else value


def _parts(value: Arg) -> list[Reason]:
    if not isinstance(value, list):
        raise ValueError(f"not a list of reasons: {value!r}")
    parts = [Reason.load(stored) for stored in value]
    if None in parts:
        raise ValueError(f"not a list of reasons: {value!r}")
    return [part for part in parts if part is not None]


def as_columns(reason: Reason | str) -> tuple[str, dict[str, Any] | None]:
    """What a text column and its message column keep of `reason`: a person's words (a `str`)
    have no message."""
    if isinstance(reason, str):
        return reason, None
    return reason.text, reason.dump()


def written(stored: Mapping[str, Any] | None, text: str, writer: Writer) -> str:
    """A stored reason as `writer` writes it, or the stored `text` when there is none (a row
    from before, a person's own note) or it cannot be written (a message changed since)."""
    reason = Reason.load(stored)
    if reason is None:
        return text
    try:
        return reason.write(writer)
    except (ValueError, TypeError, KeyError):
        return text


@dataclass(frozen=True, slots=True)
class PlainWriter:
    """The stored English text: plain numbers, times with their offset, codes as they are."""

    def template(self, id: str, english: str) -> str:
        return english

    def number(self, value: float, digits: int) -> str:
        return f"{value:.{digits}f}"

    def time(self, moment: datetime) -> str:
        return with_offset(moment)

    def duration(self, seconds: float) -> str:
        return str(timedelta(seconds=seconds))

    def alert_type(self, code: str) -> str:
        return code

    def stream(self, code: str) -> str:
        return code

    def area(self, id: str) -> str:
        return id

    def join(self, parts: list[str]) -> str:
        return "; ".join(parts)


ENGLISH_TEXT: Final = PlainWriter()


@dataclass(frozen=True, slots=True)
class LocaleWriter:
    """A reader's writer from their parts: `template` gives a message's template in their
    language (the English one when it has none); `stream` names a bin stream (its code when
    the reader has no names: the alerts' notes never hold one); `area` an area of the grid."""

    template: Callable[[str, str], str]
    time: Callable[[datetime], str]
    alert_type: Callable[[str], str]
    locale: str
    stream: Callable[[str], str] = str
    area: Callable[[str], str] = str  # an area's name; its id where the reader has no names

    def number(self, value: float, digits: int) -> str:
        return decimal(value, digits, self.locale)

    def duration(self, seconds: float) -> str:
        return duration(seconds, self.locale)

    def join(self, parts: list[str]) -> str:
        return list_of(parts, self.locale)
