"""Time as the boundaries carry it: epoch milliseconds (the device contract, InfluxDB's precision),
epoch nanoseconds (InfluxQL time literals) and RFC 3339 UTC strings with milliseconds (the API).
One definition each, so a reading's time means the same to ingest, the rules, the reports and
the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

from pydantic import PlainSerializer, WithJsonSchema

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def from_epoch_ms(ms: int) -> datetime:
    # timedelta arithmetic, not fromtimestamp(ms / 1000): no float rounding of the milliseconds.
    return EPOCH + timedelta(milliseconds=ms)


def epoch_ns(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


UtcTime = Annotated[
    datetime,
    PlainSerializer(rfc3339, return_type=str),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "example": "2026-11-27T00:00:00.000Z"}
    ),
]
"""A time that leaves as RFC 3339 UTC with milliseconds (`…T08:00:00.000Z`)."""
