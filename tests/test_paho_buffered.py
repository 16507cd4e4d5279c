"""ingest.paho_buffered's shortcuts against paho's own code paths, without a broker: a PUBLISH
decoded the short way is the message paho would have made, and `ack_many` writes exactly the
PUBACKs `ack` would have (the end-to-end and fault tests run both against a real Mosquitto)."""

from __future__ import annotations

import struct
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.exception import MalformedPacket

from ingest.paho_buffered import BufferedClient


def _client(*, manual_ack: bool = True) -> tuple[BufferedClient, list[paho.MQTTMessage]]:
    client = BufferedClient(
        paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5, manual_ack=manual_ack
    )
    got: list[paho.MQTTMessage] = []
    client.on_message = lambda _c, _u, message: got.append(message)
    return client, got


def _publish(topic: bytes, payload: bytes, *, qos: int, mid: int, props: bytes) -> bytes:
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    return body + props + payload


def _seen(message: paho.MQTTMessage) -> tuple[Any, ...]:
    assert message.properties is not None
    return (
        message._topic,  # noqa: SLF001  (the raw topic bytes paho kept)
        message.payload,
        message.mid,
        message.qos,
        message.dup,
        message.retain,
        message.properties.json(),
        str(message.properties),
    )


@pytest.mark.parametrize(
    ("header", "mid", "props"),
    [
        (0x32, 7, b"\x00"),  # QoS 1, no properties: the short way
        (0x3A, 65535, b"\x00"),  # QoS 1, dup
        (0x30, 0, b"\x00"),  # QoS 0
        (0x31, 0, b"\x00"),  # QoS 0, retained
        (0x32, 9, b"\x02\x01\x01"),  # a property (payload format): paho's way
        (0x34, 5, b"\x00"),  # QoS 2: paho's way
    ],
)
def test_a_publish_becomes_the_message_paho_would_make(header: int, mid: int, props: bytes) -> None:
    qos = (header & 0x06) >> 1
    packet = _publish(
        b"binwatch/v1/bins/b1/telemetry", b'{"ts":1,"fill_pct":5}', qos=qos, mid=mid, props=props
    )
    ours, ours_got = _client()
    theirs, theirs_got = _client()
    for client in (ours, theirs):
        client._in_packet["command"] = header  # noqa: SLF001  (paho's packet state: the path compared)
        client._in_packet["packet"] = bytearray(packet)  # noqa: SLF001  (paho's packet state: the path compared)
    assert ours._handle_publish() == paho.Client._handle_publish(theirs)  # noqa: SLF001  (paho's packet state: the path compared)
    if qos == 2:
        return  # delivered on PUBREL, by paho's own code either way
    (mine,), (paho_s,) = ours_got, theirs_got
    assert _seen(mine) == _seen(paho_s)
    assert mine.topic == "binwatch/v1/bins/b1/telemetry"


def test_a_truncated_publish_is_left_to_paho() -> None:
    client, got = _client()
    client._in_packet["command"] = 0x32  # noqa: SLF001  (paho's packet state: the path compared)
    client._in_packet["packet"] = bytearray(b"\x00\x10abc")  # says a 16-byte topic, holds 3 bytes  # noqa: SLF001  (paho's packet state: the path compared)
    with pytest.raises(MalformedPacket):  # paho's own error for a bad packet
        client._handle_publish()  # noqa: SLF001  (paho's packet state: the path compared)
    assert got == []


def test_ack_many_queues_the_pubacks_ack_would_in_order() -> None:
    ours, _ = _client()
    theirs, _ = _client()
    mids = list(range(1, 2500))
    ours.ack_many(mids)
    for mid in mids:
        theirs.ack(mid, 1)
    written = b"".join(bytes(packet["packet"]) for packet in ours._out_packet)  # noqa: SLF001  (paho's packet state: the path compared)
    assert written == b"".join(bytes(packet["packet"]) for packet in theirs._out_packet)  # noqa: SLF001  (paho's packet state: the path compared)
    assert len(ours._out_packet) == 3  # 1024 acks per write  # noqa: SLF001  (paho's packet state: the path compared)


def test_ack_many_does_nothing_without_manual_ack() -> None:
    client, _ = _client(manual_ack=False)
    client.ack_many([1, 2, 3])
    assert not client._out_packet  # noqa: SLF001  (paho's packet state: the path compared)
