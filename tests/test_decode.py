"""ingest.decode: each rejection reason, and what valid input becomes — without servers."""

from __future__ import annotations

import json

import pytest

from devices.contract import Topics
from ingest.decode import REASONS, Decoded, TimeLimits, decode

TS = 1_795_739_261_355
TOPICS = Topics("binwatch/v1")
TAGS = {"b1": ",bin=b1,site=s1,stream=kitchen"}
RECEIVED = TS + 250
RETIRED = frozenset({"b7"})  # registered, but retired: ingest keeps it out of TAGS
LIMITS = TimeLimits(max_past_ms=24 * 3600 * 1000, max_future_ms=300 * 1000)


def run(
    payload: bytes | str, *, topic: str = "binwatch/v1/bins/b1/telemetry", limit: int = 4096
) -> Decoded:
    body = payload.encode() if isinstance(payload, str) else payload
    return decode(
        topic,
        body,
        RECEIVED,
        topics=TOPICS,
        tags_of=TAGS.get,
        max_payload=limit,
        limits=LIMITS,
        retired=RETIRED,
    )


def reading(**fields: object) -> str:
    return json.dumps({"ts": TS, "fill_pct": 50.0, **fields})


def test_a_valid_reading_becomes_one_point_with_derived_fields() -> None:
    result = run(reading(seq=3, deposits=10, contaminated=1, temp_c=21))
    assert result.rejections == []
    assert result.lines == [
        "telemetry,bin=b1,site=s1,stream=kitchen fill_pct=50.0,seq=3i,deposits=10i,contaminated=1i,checked_deposits=10i,"
        f"temp_c=21.0,overflow=0i,over90=0i,received_ms={RECEIVED}i {TS}"
    ]


@pytest.mark.parametrize(("fill", "overflow", "over90"), [(89.9, 0, 0), (90, 0, 1), (100, 1, 1)])
def test_overflow_flags(fill: float, overflow: int, over90: int) -> None:
    (line,) = run(reading(fill_pct=fill)).lines
    assert f"overflow={overflow}i,over90={over90}i" in line


def test_an_offline_buffer_array_keeps_the_good_readings_and_rejects_the_bad_one() -> None:
    payload = f"[{reading(seq=1)}, {reading(seq=2, fill_pct=150)}, {reading(seq=3)}]"
    payload = payload.replace(
        f'"ts": {TS}, "fill_pct": 50.0, "seq": 3', f'"ts": {TS + 1}, "fill_pct": 50.0, "seq": 3'
    )
    result = run(payload)
    assert len(result.lines) == 2
    (rejection,) = result.rejections
    assert rejection.reason == "out_of_range"
    assert rejection.detail.startswith("[1] fill_pct")
    assert json.loads(rejection.payload)["fill_pct"] == 150


def test_events_and_status_become_their_own_measurements() -> None:
    event = run(
        json.dumps({"ts": TS, "type": "fire", "detail": "smoke"}), topic="binwatch/v1/bins/b1/event"
    )
    assert event.lines == [
        f'events,bin=b1,site=s1,stream=kitchen,type=fire count=1i,detail="smoke",received_ms={RECEIVED}i {TS}'
    ]
    status = run(json.dumps({"ts": TS, "online": False}), topic="binwatch/v1/bins/b1/status")
    assert status.lines == [
        f"device_status,bin=b1,site=s1,stream=kitchen online=false,received_ms={RECEIVED}i {TS}"
    ]


CASES: dict[str, tuple[bytes | str, str, str]] = {
    "payload_too_large": (
        "x" * 5000,
        "binwatch/v1/bins/b1/telemetry",
        "5000 bytes; the limit is 4096",
    ),
    "bad_topic": (reading(), "binwatch/v1/bins/b1/photo", "unknown topic kind"),
    "unknown_bin": (reading(), "binwatch/v1/bins/b9/telemetry", "'b9' is not in the registry"),
    "retired_bin": (reading(), "binwatch/v1/bins/b7/telemetry", "'b7' is retired; reinstate"),
    "not_utf8": (b"\xff\xfe{}", "binwatch/v1/bins/b1/telemetry", "not UTF-8"),
    "malformed_json": ('{"ts": 1,', "binwatch/v1/bins/b1/telemetry", "not JSON"),
    "not_an_object": ("42", "binwatch/v1/bins/b1/telemetry", "must be an object or an array"),
    "empty_batch": ("[]", "binwatch/v1/bins/b1/telemetry", "empty array"),
    "missing_field": ('{"fill_pct": 5}', "binwatch/v1/bins/b1/telemetry", "ts is required"),
    "unknown_field": (
        reading(colour="blue"),
        "binwatch/v1/bins/b1/telemetry",
        "colour is not a field",
    ),
    "wrong_type": (
        reading(fill_pct="50"),
        "binwatch/v1/bins/b1/telemetry",
        "fill_pct: Input should be a valid number",
    ),
    "out_of_range": (
        reading(battery_pct=120),
        "binwatch/v1/bins/b1/telemetry",
        "battery_pct: Input should be less",
    ),
    "bad_timestamp": (
        '{"ts": "noon", "fill_pct": 5}',
        "binwatch/v1/bins/b1/telemetry",
        "not an RFC 3339 time",
    ),
    "implausible_time": (
        reading(ts=TS + 3600 * 1000),
        "binwatch/v1/bins/b1/telemetry",
        "ts is 3600 s ahead of ingest's clock (limit 300 s)",
    ),
    "inconsistent": (
        reading(deposits=1, contaminated=3),
        "binwatch/v1/bins/b1/telemetry",
        "exceeds deposits",
    ),
}


@pytest.mark.parametrize("reason", sorted(CASES))
def test_each_rejection_reason(reason: str) -> None:
    payload, topic, detail = CASES[reason]
    result = run(payload, topic=topic)
    assert result.lines == []
    (rejection,) = result.rejections
    assert rejection.reason == reason
    assert detail in rejection.detail


@pytest.mark.parametrize(
    ("offset_ms", "kind", "accepted"),
    [
        (300 * 1000, "telemetry", True),
        (300 * 1000 + 1, "telemetry", False),
        (-24 * 3600 * 1000, "telemetry", True),
        (-24 * 3600 * 1000 - 1, "telemetry", False),
        (3600 * 1000, "event", False),
        (-48 * 3600 * 1000, "status", False),
    ],
)
def test_time_limits_are_inclusive_and_cover_every_kind(
    offset_ms: int, kind: str, accepted: bool
) -> None:
    ts = RECEIVED + offset_ms
    body = {"telemetry": reading(ts=ts), "event": json.dumps({"ts": ts, "type": "tilt"})}.get(
        kind, json.dumps({"ts": ts, "online": True})
    )
    result = run(body, topic=f"binwatch/v1/bins/b1/{kind}")
    assert (len(result.lines), len(result.rejections)) == ((1, 0) if accepted else (0, 1))
    assert all(r.reason == "implausible_time" for r in result.rejections)


def test_one_implausible_reading_in_a_buffer_costs_only_itself() -> None:
    result = run(f"[{reading(seq=1)}, {reading(seq=2, ts=TS + 86_400_000)}]")
    assert len(result.lines) == 1
    (rejection,) = result.rejections
    assert rejection.reason == "implausible_time" and rejection.detail.startswith("[1] ts is")


def test_every_reason_decode_can_give_is_tested_here() -> None:
    # rejected_by_influxdb and ingest_error come from the writer, tested with the real servers.
    after_decoding = {"rewrites_history", "rejected_by_influxdb", "hook_failed", "ingest_error"}
    assert set(CASES) == set(REASONS) - after_decoding
