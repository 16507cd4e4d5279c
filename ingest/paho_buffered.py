"""A paho client that reads the socket in large chunks.

paho 2.x reads every packet with a `select` and two or three `recv` calls (one byte of command,
one per length byte, then the body: `Client._packet_read`), and `loop_read` handles one packet per
`select`. Profiled under a flood, that was 47 % of ingest's CPU (docs/performance.md). Here the
socket is wrapped so those small reads are served from a buffer filled 64 KiB at a time; the
wrapper's `pending()` tells paho's loop that buffered bytes are waiting (the hook paho has for TLS
sockets), so it never blocks in `select` on data it already holds; and `loop_read` handles
packets while the buffer has some. It overrides two private methods of paho, so pyproject.toml
pins paho to the versions it was checked against; every ingest test runs through it."""

from __future__ import annotations

import copy
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# One recv takes up to this much: about 400 telemetry messages of ~150 bytes.
READ_CHUNK = 64 * 1024
# Packets handled per loop_read while the buffer has data, so that writes (acks) and keepalives
# still get their turn in paho's loop during a sustained flood.
MAX_PACKETS_PER_READ = 500
# While reading is paused, how often paho's loop looks again (and still sends acks and pings).
PAUSED_POLL_S = 0.02
# PUBACKs queued as one write by `ack_many` (4 bytes each).
ACKS_PER_WRITE = 1024
_PUBACK = 0x40
_PUBACK_PACKET = struct.Struct("!BBH")
_NO_PUBLISH_PROPERTIES = Properties(PacketTypes.PUBLISH)
# A PUBLISH header with its DUP and RETAIN bits cleared: QoS 0 and QoS 1.
_PUBLISH_QOS0, _PUBLISH_QOS1 = 0x30, 0x32
_DUP_AND_RETAIN = 0x09

RawPublish: TypeAlias = tuple[bytes, bytes, int, int]
"""A PUBLISH read the short way (`BufferedClient.on_publishes`): topic (raw bytes), payload,
packet id (0 at QoS 0), QoS."""


class _BufferedSocket:
    """The connection's socket with a read buffer; everything but reads goes straight through."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def fileno(self) -> int:
        fileno: int = self._sock.fileno()
        return fileno

    def pending(self) -> int:
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._buffer) + inner

    def recv(self, bufsize: int) -> bytes:
        buffer = self._buffer
        if not buffer:
            data: bytes = self._sock.recv(max(bufsize, READ_CHUNK))
            if len(data) <= bufsize:
                return data  # b"" at end of stream too, which paho reads as a lost connection
            buffer += data
        chunk = bytes(buffer[:bufsize])
        del buffer[:bufsize]
        return chunk


class BufferedClient(paho.Client):
    """Also reads no more messages than `read_room()` says the subscriber can hold now: one
    whose own buffer is full leaves the rest in the broker's queue (TCP back-pressure). MQTT 5's
    Receive Maximum should do that, but Mosquitto 2.0.11 stops honouring it once
    acknowledgements flow (measured here: Receive Maximum 100, 50 acks, and the other 900 queued
    messages arrived at once; eclipse-mosquitto/mosquitto#2301). It is asked before each packet
    read paho's way and before each chunk handed to `on_publishes`, and a chunk is cut to the
    room left, so the buffer never holds more than its bound."""

    read_room: Callable[[], int] | None = None
    # When set (MQTT 5, manual ack), the common PUBLISHes already in the read buffer are handed
    # over together, as `RawPublish` tuples in arrival order, instead of one `on_message` each:
    # see `_read_publishes`. Every other packet, and the first of each chunk read, still goes
    # through paho's own path and `on_message`, in order.
    on_publishes: Callable[[list[RawPublish]], None] | None = None

    def _create_socket(self) -> Any:
        return _BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> paho.MQTTErrorCode:
        rc = paho.MQTTErrorCode.MQTT_ERR_SUCCESS
        short_way = (
            self.on_publishes is not None and self._manual_ack and self._protocol == paho.MQTTv5
        )
        for _ in range(MAX_PACKETS_PER_READ):
            room = MAX_PACKETS_PER_READ if self.read_room is None else self.read_room()
            if room <= 0:
                time.sleep(PAUSED_POLL_S)  # paho's loop calls again at once: do not spin
                break
            sock = self._sock
            if (
                short_way
                and isinstance(sock, _BufferedSocket)
                and self._in_packet["command"] == 0  # no packet half read by paho
                and self._read_publishes(sock, min(room, MAX_PACKETS_PER_READ))
            ):
                if not sock.pending():
                    break
                continue
            rc = super().loop_read(max_packets)
            sock = self._sock
            if rc != paho.MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, _BufferedSocket):
                break
            if not sock.pending():
                break
        return rc

    def _read_publishes(self, sock: _BufferedSocket, most: int) -> int:
        """Hand the whole PUBLISHes at the head of the read buffer (MQTT 5, QoS 0 or 1, no
        properties: what a broker sends a subscriber without topic aliases) to `on_publishes`
        in one call, at most `most`; how many. paho spends ~15 µs of Python
        per message on them (the packet state dict, three buffered `recv`s, two locks, the
        MQTTMessage and its Properties, the callback lock). It stops at the first packet that
        is anything else or not wholly read yet, which paho's own path then reads as ever.
        Reads nothing from the socket itself: paho's path does, so it sees errors and the end
        of the stream as it always did."""
        buffer = sock._buffer  # noqa: SLF001  (this module's own socket wrapper)
        end = len(buffer)
        pos = 0
        out: list[RawPublish] = []
        while pos < end and len(out) < most:
            header = buffer[pos] & ~_DUP_AND_RETAIN
            if header != _PUBLISH_QOS1 and header != _PUBLISH_QOS0:
                break
            length, shift, at = 0, 0, pos + 1
            while at < end and at - pos <= 4:  # the remaining length: at most 4 bytes
                byte = buffer[at]
                at += 1
                length |= (byte & 127) << shift
                shift += 7
                if not byte & 128:
                    break
            else:
                break  # not wholly read yet, or malformed: paho's path judges it
            packet_end = at + length
            if packet_end > end or length < 2:
                break
            topic_end = at + 2 + (buffer[at] << 8 | buffer[at + 1])
            mid = 0
            if header == _PUBLISH_QOS1:
                if topic_end + 2 > packet_end:
                    break
                mid = buffer[topic_end] << 8 | buffer[topic_end + 1]
                props = topic_end + 2
            else:
                props = topic_end
            if props >= packet_end or buffer[props] != 0:  # properties: paho's path
                break
            out.append(
                (bytes(buffer[at + 2 : topic_end]), bytes(buffer[props + 1 : packet_end]), mid,
                 header >> 1 & 3)
            )  # fmt: skip
            pos = packet_end
        if not out:
            return 0
        del buffer[:pos]
        with self._msgtime_mutex:
            self._last_bytes_received = paho.time_func()
        on_publishes = self.on_publishes
        assert on_publishes is not None
        with self._in_callback_mutex:
            try:
                on_publishes(out)
            except Exception as err:
                self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_publishes: %s", err)
                if not self.suppress_exceptions:
                    raise
        return len(out)

    def _handle_publish(self) -> paho.MQTTErrorCode:
        """paho's own for the common PUBLISH (MQTT 5, QoS 0 or 1, no properties), without what
        it costs per message: `Properties.unpack` first clears ~40 possible attributes one
        `hasattr` at a time, and the generic decoder slices with `struct` formats built per
        packet. Anything else (QoS 2, properties such as a topic alias, MQTT 3, a packet too
        short to hold what it says) goes through paho's own, which also reports malformed ones."""
        header: int = self._in_packet["command"]
        packet = bytes(self._in_packet["packet"])  # no copy: paho builds it as bytes
        qos = (header & 0x06) >> 1
        end = 2 + int.from_bytes(packet[:2], "big")  # topic length, then the topic
        mid = 0
        if qos == 1:
            mid = int.from_bytes(packet[end : end + 2], "big")
            end += 2
        if (
            self._protocol != paho.MQTTv5
            or qos > 1
            or len(packet) <= end
            or packet[end] != 0  # the properties' length: 0, none
        ):
            return super()._handle_publish()
        message = paho.MQTTMessage(mid=mid, topic=packet[2 : end - 2 if qos else end])
        message.dup = bool(header & 0x08)
        message.qos = qos
        message.retain = bool(header & 0x01)
        # An empty Properties, as paho's would be; copied from a template, since building one
        # fills its lookup tables anew (they are only read, so the copies share them).
        message.properties = copy.copy(_NO_PUBLISH_PROPERTIES)
        message.payload = packet[end + 1 :]
        message.timestamp = paho.time_func()
        self._handle_on_message(message)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        """paho's own, minus what it costs per message when no `message_callback_add` filter
        is registered (binwatch registers none): decoding the topic twice and matching it
        against an empty filter tree. The callback runs as paho runs it."""
        # paho keeps the filters in a private tree; this subclass is checked against 2.1–2.2.
        if self._on_message_filtered._root._children:  # noqa: SLF001
            super()._handle_on_message(message)
            return
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    def ack_many(self, mids: Iterable[int]) -> None:
        """Acknowledge QoS 1 messages (manual ack) like `ack(mid, 1)` for each, in order, but
        queued as a few writes: `ack` queues one 4-byte PUBACK per message and wakes paho's
        loop for each, which then sends each on its own (two syscalls per message). MQTT allows
        packets back to back in one write, and the broker reads them one by one as ever."""
        if not self._manual_ack:
            return
        pack = _PUBACK_PACKET.pack
        batch: list[bytes] = []
        for mid in mids:
            batch.append(pack(_PUBACK, 2, mid))
            if len(batch) == ACKS_PER_WRITE:
                self._packet_queue(_PUBACK, b"".join(batch), mid, 1)
                batch = []
        if batch:
            self._packet_queue(_PUBACK, b"".join(batch), mid, 1)
