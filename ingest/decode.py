"""From (topic, payload bytes, received time) to line-protocol points or rejections with a reason.

Pure: no MQTT, no InfluxDB, no database. Every way a message can be wrong maps to one stable
reason code (counted in metrics, stored with the dead letter) plus a detail a person can act on.
A bin flushing its offline buffer sends a JSON array: each element stands or falls on its own, so
one bad reading does not cost the good ones around it."""

from __future__ import annotations

import json
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from core.lineprotocol import point, telemetry_line
from core.times import epoch_ms
from devices.contract import BinTopic, Event, Reading, Status, TopicKind, Topics
from ingest import wire

MEASUREMENT = {
    TopicKind.telemetry: "telemetry",
    TopicKind.event: "events",
    TopicKind.status: "device_status",
}

REASONS = (
    "payload_too_large",
    "bad_topic",
    "unknown_bin",
    "retired_bin",
    "not_utf8",
    "malformed_json",
    "not_an_object",
    "empty_batch",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "out_of_range",
    "bad_timestamp",
    "implausible_time",
    "inconsistent",
    # Given after decoding, by ingest/service.py (docs/ingest.md):
    "rewrites_history",
    "rejected_by_influxdb",
    "hook_failed",
    "ingest_error",
)

# How much of a bad payload a detail message quotes.
_QUOTE_CHARS = 120
# JSON nested deeper than this is malformed for contract v1 (whose documents have two levels: an
# array of flat objects), whatever Python's recursion limit would have allowed.
MAX_JSON_DEPTH = 16
_TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels; contract v1 needs two"
# Parsed topics, by prefix and topic: a fleet's topics repeat endlessly, so the split and the
# regex run once per bin. Only valid topics are kept, and at most this many (then it starts
# over), so a stream of made-up topics cannot grow it without bound.
_TOPIC_CACHE_MAX = 100_000
_topic_cache: dict[tuple[str, str], BinTopic] = {}


def _parse_topic(topics: Topics, topic: str) -> BinTopic:
    key = (topics.prefix, topic)
    where = _topic_cache.get(key)
    if where is None:
        where = topics.parse_bin_topic(topic)  # ValueError for a bad topic: not cached
        if len(_topic_cache) >= _TOPIC_CACHE_MAX:
            _topic_cache.clear()
        _topic_cache[key] = where
    return where


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str
    payload: bytes


@dataclass(slots=True)
class Decoded:
    """What one MQTT message became: points to write and parts to dead-letter."""

    lines: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    # The valid telemetry, for rules that act on readings once they are stored (collection).
    readings: list[tuple[str, Reading]] = field(default_factory=list)
    # Valid events and statuses, for the alert rules (which act on readings too).
    events: list[tuple[str, Event]] = field(default_factory=list)
    statuses: list[tuple[str, Status]] = field(default_factory=list)
    # The readings came as an array: a flushed offline buffer (the clock-skew rule needs it).
    buffered: bool = False


@dataclass(frozen=True, slots=True)
class TimeLimits:
    """How far a message's `ts` may lie from ingest's clock. A device clock that is wrong by
    days would write points where nobody looks for them (and overwrite real ones there), so such
    a message is dead-lettered instead; a bin's offline buffer is why the past limit is long."""

    max_past_ms: int
    max_future_ms: int


TagLookup = Callable[[str], str | None]
"""bin id → its escaped tag set (see lineprotocol.tag_set), None for a bin not in the registry."""


def decode(
    topic: str,
    payload: bytes | bytearray,
    received_ms: int,
    *,
    topics: Topics,
    tags_of: TagLookup,
    max_payload: int,
    limits: TimeLimits | None = None,
    retired: Container[str] = frozenset(),
) -> Decoded:
    """`limits` None accepts any `ts` (replays and tests of stored history). A bin in `retired`
    (registered, but retired: devices/retirement.py) has no tags either; its readings are kept
    as dead letters, so nothing is stored silently for a bin nobody expects to report."""
    decoded = Decoded()

    def reject(reason: str, detail: str) -> Decoded:
        decoded.rejections.append(Rejection(reason, detail, bytes(payload)))
        return decoded

    if len(payload) > max_payload:
        return reject(
            "payload_too_large", f"payload is {len(payload)} bytes; the limit is {max_payload}"
        )
    try:
        where = _parse_topic(topics, topic)
    except ValueError as exc:
        return reject("bad_topic", str(exc))
    tags = tags_of(where.bin_id)
    if tags is None and where.bin_id in retired:
        return reject(
            "retired_bin",
            f"bin {where.bin_id!r} is retired; reinstate it (binwatch fleet reinstate) to store"
            " its readings",
        )
    if tags is None:
        return reject(
            "unknown_bin", f"bin {where.bin_id!r} is not in the registry; register it first"
        )
    if where.kind is TopicKind.telemetry and (
        fast := _fast_telemetry(where.bin_id, payload, tags, received_ms, limits)
    ):
        return fast
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return reject("not_utf8", f"payload is not UTF-8 (byte {exc.start})")
    try:
        document = json.loads(text)
    except ValueError as exc:
        return reject("malformed_json", f"not JSON: {exc}; payload starts {text[:_QUOTE_CHARS]!r}")
    except RecursionError:
        return reject("malformed_json", _TOO_DEEP)
    try:
        _decode_document(where, document, tags, received_ms, limits, decoded, bytes(payload))
    except RecursionError:
        # Quoting a deeply nested part in a detail recursed; only a too deep document can.
        decoded = Decoded(rejections=[Rejection("malformed_json", _TOO_DEEP, bytes(payload))])
    if decoded.rejections and _too_deep(document):
        # Only an invalid document can be this deep (the contract's have two levels at most), so
        # valid readings never pay for the walk, and the reason does not depend on the stack.
        return Decoded(rejections=[Rejection("malformed_json", _TOO_DEEP, bytes(payload))])
    return decoded


def _fast_telemetry(
    bin_id: str,
    payload: bytes | bytearray,
    tags: str,
    received_ms: int,
    limits: TimeLimits | None,
) -> Decoded | None:
    """The hot path of a flood: a telemetry payload whose every reading the contract accepts
    (`ingest.wire`) and whose every time is plausible, as lines; None for anything else, which
    the model path below then judges part by part with its reasons."""
    parsed = wire.readings(payload)
    if parsed is None:
        return None
    readings, buffered = parsed
    lines = []
    for reading in readings:
        ts_ms = epoch_ms(reading.ts)
        if _implausible(ts_ms, received_ms, limits):
            return None
        lines.append(
            telemetry_line(
                tags,
                reading.fill_pct,
                reading.seq,
                reading.deposits,
                reading.contaminated,
                reading.weight_kg,
                reading.battery_pct,
                reading.temp_c,
                received_ms,
                ts_ms,
            )
        )
    return Decoded(lines, [], [(bin_id, reading) for reading in readings], buffered=buffered)


def _decode_document(
    where: BinTopic,
    document: Any,
    tags: str,
    received_ms: int,
    limits: TimeLimits | None,
    decoded: Decoded,
    payload: bytes,
) -> None:
    measurement = MEASUREMENT[where.kind]
    if where.kind is TopicKind.telemetry and isinstance(document, list):
        if not document:
            decoded.rejections.append(
                Rejection("empty_batch", "an empty array carries no readings", payload)
            )
            return
        decoded.buffered = True
        for index, element in enumerate(document):
            outcome = _decode_one(where, element, measurement, tags, received_ms, limits, decoded)
            if isinstance(outcome, str):
                decoded.lines.append(outcome)
            else:
                # ASCII JSON: an element may hold lone surrogates, which UTF-8 cannot encode.
                body = json.dumps(element).encode()
                decoded.rejections.append(Rejection(outcome[0], f"[{index}] {outcome[1]}", body))
        return
    outcome = _decode_one(where, document, measurement, tags, received_ms, limits, decoded)
    if isinstance(outcome, str):
        decoded.lines.append(outcome)
    else:
        decoded.rejections.append(Rejection(*outcome, payload))


def _too_deep(document: Any) -> bool:
    """Whether JSON nests deeper than `MAX_JSON_DEPTH`, walked without recursion."""
    level = [document]
    for _ in range(MAX_JSON_DEPTH):
        level = [
            child
            for node in level
            if isinstance(node, dict | list)
            for child in (node.values() if isinstance(node, dict) else node)
        ]
        if not level:
            return False
    return any(isinstance(node, dict | list) and node for node in level)


def _decode_one(
    where: BinTopic,
    document: Any,
    measurement: str,
    tags: str,
    received_ms: int,
    limits: TimeLimits | None,
    decoded: Decoded,
) -> str | tuple[str, str]:
    """One JSON document → its line (a valid reading, event or status also joins `decoded`'s
    list of them), or (reason, detail)."""
    kind = where.kind
    if not isinstance(document, dict):
        expected = (
            "an object or an array of objects" if kind is TopicKind.telemetry else "an object"
        )
        return "not_an_object", f"payload must be {expected}, got {type(document).__name__}"
    if kind is TopicKind.telemetry:
        return _decode_reading(where.bin_id, document, tags, received_ms, limits, decoded)
    fields: dict[str, float | int | bool | str | None]
    try:
        if kind is TopicKind.event:
            event = Event.model_validate(document)
            tags = f"{tags},type={event.type}"
            fields = {"count": 1, "detail": event.detail, "received_ms": received_ms}
            ts = event.ts
        else:
            status = Status.model_validate(document)
            fields = {"online": status.online, "received_ms": received_ms}
            ts = status.ts
    except ValidationError as exc:
        return explain(exc)
    if problem := _implausible(epoch_ms(ts), received_ms, limits):
        return problem
    if kind is TopicKind.event:
        decoded.events.append((where.bin_id, event))
    elif kind is TopicKind.status:
        decoded.statuses.append((where.bin_id, status))
    return point(measurement, tags, fields, epoch_ms(ts))


def _decode_reading(
    bin_id: str,
    document: dict[str, Any],
    tags: str,
    received_ms: int,
    limits: TimeLimits | None,
    decoded: Decoded,
) -> str | tuple[str, str]:
    """A telemetry object → its line (the reading joins `decoded`), or (reason, detail). The hot
    path of a flood: one f-string line (`telemetry_line`), no intermediate field dict."""
    try:
        reading = Reading.model_validate(document)
    except ValidationError as exc:
        return explain(exc)
    ts_ms = epoch_ms(reading.ts)
    if problem := _implausible(ts_ms, received_ms, limits):
        return problem
    decoded.readings.append((bin_id, reading))
    return telemetry_line(
        tags,
        float(reading.fill_pct),
        reading.seq,
        reading.deposits,
        reading.contaminated,
        _float(reading.weight_kg),
        _float(reading.battery_pct),
        _float(reading.temp_c),
        received_ms,
        ts_ms,
    )


def _implausible(ts_ms: int, received_ms: int, limits: TimeLimits | None) -> tuple[str, str] | None:
    if limits is None:
        return None
    if ts_ms > received_ms + limits.max_future_ms:
        ahead = (ts_ms - received_ms) / 1000
        return "implausible_time", (
            f"ts is {ahead:.0f} s ahead of ingest's clock (limit {limits.max_future_ms // 1000} s);"
            " is the device clock set?"
        )
    if ts_ms < received_ms - limits.max_past_ms:
        behind = (received_ms - ts_ms) / 1000
        return "implausible_time", (
            f"ts is {behind:.0f} s in the past (limit {limits.max_past_ms // 1000} s)"
        )
    return None


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def explain(exc: ValidationError) -> tuple[str, str]:
    """The reason code of the first problem, and every problem spelled out."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    return _reason(first), "; ".join(_describe(error) for error in errors)


def _reason(error: Any) -> str:
    kind, loc = error["type"], error["loc"]
    if kind == "missing":
        return "missing_field"
    if kind == "extra_forbidden":
        return "unknown_field"
    if kind == "string_unicode":  # a lone surrogate, in a value or in a key
        return "wrong_type"
    if loc and loc[0] == "ts":
        return "bad_timestamp"
    if kind in (
        "greater_than_equal",
        "less_than_equal",
        "greater_than",
        "less_than",
        "string_too_long",
        "finite_number",
    ):
        return "out_of_range"
    if not loc:
        return "inconsistent"
    return "wrong_type"


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "reading"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{where} is required"
    if error["type"] == "extra_forbidden":
        return f"{where} is not a field of contract v1"
    return f"{where}: {message} (got {str(error.get('input'))[:40]!r})" if error["loc"] else message
