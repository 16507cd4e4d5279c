"""ingest.paho_buffered's shortcuts against paho's own code paths, without a broker: a PUBLISH
decoded the short way is the message paho would have made, and `ack_many` writes exactly the
PUBACKs `ack` would have (the end-to-end and fault tests run both against a real Mosquitto)."""

from __future__ import annotations

import itertools
import struct
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.exception import MalformedPacket

from ingest.paho_buffered import BufferedClient, _BufferedSocket
from tests.mqtt_helpers import mqtt_packet


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


class _Chunks:
    """A socket whose `recv` serves the given chunks one at a time (never more than asked)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def recv(self, bufsize: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        chunk = self.chunks[0]
        data, self.chunks[0] = chunk[:bufsize], chunk[bufsize:]
        if not self.chunks[0]:
            self.chunks.pop(0)
        return data


def test_publishes_read_the_short_way_arrive_as_paho_would_deliver_them_in_order() -> None:
    """A stream mixing what the short way takes (QoS 0 and 1, DUP and RETAIN set, payloads
    needing 1–3 length bytes) with what it must leave to paho (properties, a PINGRESP), cut
    into chunks that split packets anywhere: the same messages, in the same order, as paho's
    own reader delivers them."""
    topic = b"binwatch/v1/bins/b1/telemetry"
    packets = []
    for index in range(300):
        header = (0x30, 0x32, 0x3A, 0x33)[index % 4]
        qos = (header & 0x06) >> 1
        props = b"\x02\x01\x01" if index % 37 == 5 else b"\x00"
        payload = b"x" * (index * 7 if index % 50 else 20_000) + str(index).encode()
        packets.append(
            mqtt_packet(header, _publish(topic, payload, qos=qos, mid=index + 1, props=props))
        )
        if index % 61 == 0:
            packets.append(b"\xd0\x00")  # PINGRESP
    stream = b"".join(packets)
    cuts = [0, 1, 2, 3, 500, 4_000, 70_000, 70_001, 90_000, 200_000, len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(cuts) if b > a]

    def run(client: paho.Client, sock: Any) -> list[tuple[bytes, bytes | bytearray, int, int]]:
        got: list[tuple[bytes, bytes | bytearray, int, int]] = []
        client.on_message = lambda _c, _u, m: got.append((m._topic, m.payload, m.mid, m.qos))  # noqa: SLF001  (the raw topic)
        client._sock = sock  # noqa: SLF001  (paho's socket: the path compared)
        inner = sock._sock if isinstance(sock, _BufferedSocket) else sock  # noqa: SLF001
        for _ in range(10_000):
            client.loop_read()
            if not inner.chunks and not (isinstance(sock, _BufferedSocket) and sock.pending()):
                break
        client._sock = None  # noqa: SLF001  (nothing to close)
        return got

    ours, _ = _client()
    short: list[int] = []

    def on_publishes(messages: list[tuple[bytes, bytes, int, int]]) -> None:
        short.append(len(messages))
        assert ours.on_message is not None
        for raw_topic, payload, mid, qos in messages:
            message = paho.MQTTMessage(mid, raw_topic)
            message.payload, message.qos = payload, qos
            ours.on_message(ours, None, message)

    ours.on_publishes = on_publishes
    theirs = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5, manual_ack=True)
    mine = run(ours, _BufferedSocket(_Chunks(list(chunks))))
    paho_s = run(theirs, _Chunks(list(chunks)))
    assert len(paho_s) == 300
    assert mine == paho_s
    assert sum(short) > 200  # most went the short way


def test_a_full_subscriber_is_handed_no_more_than_its_room() -> None:
    """300 PUBLISHes already in the read buffer, a subscriber with room for 7 more (and then,
    its writer having freed 5, for 5): it is handed exactly that, never a whole chunk more; the
    rest stays in the buffer (and behind it, in the broker's queue)."""
    topic = b"binwatch/v1/bins/b1/telemetry"
    stream = b"".join(
        mqtt_packet(0x32, _publish(topic, b"{}", qos=1, mid=n, props=b"\x00"))
        for n in range(1, 301)
    )
    client, got = _client()
    bound = 7
    client.on_publishes = lambda messages: got.extend(messages)  # type: ignore[arg-type]
    client.read_room = lambda: bound - len(got)
    sock = _BufferedSocket(_Chunks([stream]))
    client._sock = sock  # noqa: SLF001  (paho's socket: the path tested)
    for _ in range(20):
        client.loop_read()
    assert len(got) == bound
    bound += 5  # the writer stored five: room for five more
    for _ in range(20):
        client.loop_read()
    assert len(got) == 12
    assert sock.pending()  # the rest is still waiting, unread by the subscriber
    client._sock = None  # noqa: SLF001  (nothing to close)
