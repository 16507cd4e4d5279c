"""The MQTT contract v1 models and topics, without servers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from core.times import epoch_ms
from devices.contract import Event, Reading, Status, TopicKind, Topics

TS = 1_795_739_261_355  # 2026-11-27T…Z in epoch milliseconds


def test_reading_accepts_epoch_ms_and_rfc3339_alike() -> None:
    by_ms = Reading.model_validate({"ts": TS, "fill_pct": 40})
    by_text = Reading.model_validate({"ts": "2026-11-27T08:27:41.355+08:00", "fill_pct": 40})
    assert by_ms.ts == datetime.fromtimestamp(TS / 1000, tz=UTC)
    assert by_text.ts == by_ms.ts
    assert by_text.ts.tzinfo is UTC


def test_reading_serialises_ts_as_epoch_ms_and_round_trips() -> None:
    reading = Reading.model_validate(
        {
            "ts": TS,
            "seq": 7,
            "fill_pct": 55.5,
            "deposits": 10,
            "contaminated": 2,
            "battery_pct": 80.0,
        }
    )
    wire = reading.model_dump_json(exclude_none=True)
    assert f'"ts":{TS}' in wire
    assert Reading.model_validate_json(wire) == reading


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"fill_pct": 5}, "Field required"),
        ({"ts": TS, "fill_pct": "5"}, "valid number"),
        ({"ts": TS, "fill_pct": True}, "valid number"),
        ({"ts": TS, "fill_pct": 100.01}, "less than or equal to 100"),
        ({"ts": TS, "fill_pct": -1}, "greater than or equal to 0"),
        ({"ts": TS, "fill_pct": 5, "deposits": 2.0}, "valid integer"),
        ({"ts": TS, "fill_pct": 5, "seq": -1}, "greater than or equal to 0"),
        ({"ts": TS, "fill_pct": 5, "battery_pct": 101}, "less than or equal to 100"),
        ({"ts": TS, "fill_pct": 5, "weight_kg": -0.1}, "greater than or equal to 0"),
        ({"ts": TS, "fill_pct": 5, "deposits": 1, "contaminated": 2}, "exceeds deposits"),
        ({"ts": TS, "fill_pct": 5, "contaminated": 1}, "needs deposits"),
        ({"ts": TS, "fill_pct": 5, "colour": "blue"}, "Extra inputs"),
        ({"ts": TS // 1000, "fill_pct": 5}, "looks like epoch seconds"),
        ({"ts": 12, "fill_pct": 5}, "between 2000 and 2100"),
        ({"ts": "2026-11-27 08:00:00", "fill_pct": 5}, "no UTC offset"),
        ({"ts": "yesterday", "fill_pct": 5}, "not an RFC 3339 time"),
        ({"ts": 1.5e12, "fill_pct": 5}, "RFC 3339 string or epoch milliseconds"),
    ],
)
def test_every_reading_rule_is_enforced_with_a_reason(
    document: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Reading.model_validate(document)


def test_event_types_are_the_contracts() -> None:
    assert Event.model_validate({"ts": TS, "type": "fire"}).type == "fire"
    with pytest.raises(ValidationError, match="'fire', 'tilt', 'lid_open' or 'fault'"):
        Event.model_validate({"ts": TS, "type": "smoke"})


def test_status_needs_a_real_boolean() -> None:
    assert Status.model_validate({"ts": TS, "online": False}).online is False
    with pytest.raises(ValidationError):
        Status.model_validate({"ts": TS, "online": "false"})


def test_topics_build_and_parse() -> None:
    topics = Topics("binwatch/v1")
    topic = topics.bin("jiazhou-shuian-s1-kitchen", TopicKind.telemetry)
    assert topic == "binwatch/v1/bins/jiazhou-shuian-s1-kitchen/telemetry"
    parsed = topics.parse_bin_topic(topic)
    assert (parsed.bin_id, parsed.kind) == ("jiazhou-shuian-s1-kitchen", TopicKind.telemetry)
    assert topics.dispatch("op-1") == "binwatch/v1/operators/op-1/dispatch"
    assert topics.inbound_filters() == [
        "binwatch/v1/bins/+/telemetry",
        "binwatch/v1/bins/+/event",
        "binwatch/v1/bins/+/status",
    ]


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("other/v1/bins/b1/telemetry", "not under"),
        ("binwatch/v1/bins/b1/telemetry/extra", "must be <prefix>"),
        ("binwatch/v1/bins/b 1/telemetry", "must match"),
        ("binwatch/v1/bins/b1/selfie", "unknown topic kind"),
    ],
)
def test_bad_topics_say_what_is_wrong(topic: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Topics("binwatch/v1").parse_bin_topic(topic)


def test_epoch_ms_rounds_to_the_millisecond() -> None:
    assert epoch_ms(datetime.fromtimestamp(TS / 1000, tz=UTC)) == TS
