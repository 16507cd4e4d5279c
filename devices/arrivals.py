"""What ingest hands to the rules that act on stored messages, defined below both: ingest calls
hooks of these shapes, the collection and alert rules implement them, and the launch layer
(binwatch/commands/ingest.py) plugs one into the other. So ingest knows no rule, and no rule
knows ingest."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from devices.contract import Event, Reading, Status


class Arrival(NamedTuple):
    """A valid message part as stored: what a bin sent, and when ingest received it (a named
    tuple: one is made per reading of every batch, and a tuple is the cheapest to make)."""

    bin_id: str
    message: Reading | Event | Status
    received_at: float  # epoch seconds, ingest's clock
    buffered: bool = False  # a reading that came in an array (an offline buffer)


class StoredHook(Protocol):
    """Called with each batch's valid readings (bin id, reading) once they are stored and before
    they are acknowledged, so a rule acting on them (collection requests) runs at least once per
    reading; it is retried like the write while it raises, so it must be idempotent."""

    def __call__(self, readings: list[tuple[str, Reading]], /) -> None: ...


class ArrivalHook(Protocol):
    """Like `StoredHook`, for rules that need events and statuses as well as readings (alerts),
    and when each arrived: called with every valid reading, event and status of a stored batch,
    in arrival order, before the batch is acknowledged; retried while it raises, so idempotent
    too."""

    def __call__(self, arrivals: list[Arrival], /) -> None: ...
