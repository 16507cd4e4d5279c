"""Dead letters as ingest keeps them: one per message and reason.

A bin's array of 4,000 readings refused for one reason is one letter that stands for 4,000
(`parts`), not 4,000 rows: what a message holds costs at most a few rows. A merged letter's
payload is what a replay needs: the refused readings as one JSON array (a telemetry message
again), or, for points InfluxDB refused, their lines. Pure: rows are built, not stored."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from core.printable import escape_controls
from devices.models import DEAD_LETTER_TOPIC_MAX, DeadLetter
from ingest.decode import Rejection

log = logging.getLogger(__name__)

# Dead letters keep at most this much of a payload: enough to see what was wrong and to replay
# any reading that fits the contract, without letting a flood of huge payloads fill the disk.
DEAD_LETTER_PAYLOAD_MAX = 64 * 1024
# A merged letter's detail spells out this many of its readings' problems, then counts the rest.
DETAILS_SPELLED = 5
# Payloads of these reasons are line protocol (replayed to InfluxDB), the others JSON.
LINE_PROTOCOL_REASONS = frozenset({"rejected_by_influxdb"})


def letters_for(
    topic: str, bin_id: str, received_at: float, rejections: Iterable[Rejection]
) -> list[DeadLetter]:
    """One message's rejections, merged per reason, as dead-letter rows."""
    by_reason: dict[str, list[Rejection]] = {}
    for rejection in rejections:
        by_reason.setdefault(rejection.reason, []).append(rejection)
    return [
        _letter(topic, bin_id, received_at, reason, group) for reason, group in by_reason.items()
    ]


def _letter(
    topic: str, bin_id: str, received_at: float, reason: str, group: list[Rejection]
) -> DeadLetter:
    if len(group) == 1:
        detail, payload = group[0].detail, group[0].payload
    else:
        spelled = "; ".join(rejection.detail for rejection in group[:DETAILS_SPELLED])
        rest = len(group) - DETAILS_SPELLED
        detail = f"{len(group)} readings: {spelled}" + (f"; and {rest} more" if rest > 0 else "")
        if reason in LINE_PROTOCOL_REASONS:
            payload = b"\n".join(rejection.payload for rejection in group)
        else:
            payload = b"[" + b",".join(rejection.payload for rejection in group) + b"]"
    # A detail may quote what a bin sent (a key, an exception naming a value); whatever it
    # holds, the database must take it: lone surrogates and NULs (PostgreSQL refuses both in
    # text, and the letter was dropped) are written as escapes.
    detail = detail.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")
    # The log shows it escaped: a line break in a bin's key forged log lines of its own.
    log.warning("dead-lettered %s from %s: %s", reason, topic, escape_controls(detail[:200]))
    return DeadLetter(
        received_at=datetime.fromtimestamp(received_at, tz=UTC),
        topic=topic[:DEAD_LETTER_TOPIC_MAX],
        bin_id=bin_id,
        reason=reason,
        detail=detail,
        payload=payload[:DEAD_LETTER_PAYLOAD_MAX],
        payload_size=len(payload),
        parts=len(group),
    )
