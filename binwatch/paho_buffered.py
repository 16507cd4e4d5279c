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

import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

# One recv takes up to this much: about 400 telemetry messages of ~150 bytes.
READ_CHUNK = 64 * 1024
# Packets handled per loop_read while the buffer has data, so that writes (acks) and keepalives
# still get their turn in paho's loop during a sustained flood.
MAX_PACKETS_PER_READ = 500
# While reading is paused, how often paho's loop looks again (and still sends acks and pings).
PAUSED_POLL_S = 0.02


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
    """Also stops reading while `read_paused()` says so: a subscriber whose own buffer is full
    leaves the rest in the broker's queue (TCP back-pressure). MQTT 5's Receive Maximum should
    do that, but Mosquitto 2.0.11 stops honouring it once acknowledgements flow (measured here:
    Receive Maximum 100, 50 acks, and the other 900 queued messages arrived at once;
    eclipse-mosquitto/mosquitto#2301)."""

    read_paused: Callable[[], bool] | None = None

    def _create_socket(self) -> Any:
        return _BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> paho.MQTTErrorCode:
        rc = paho.MQTTErrorCode.MQTT_ERR_SUCCESS
        for _ in range(MAX_PACKETS_PER_READ):
            if self.read_paused is not None and self.read_paused():
                time.sleep(PAUSED_POLL_S)  # paho's loop calls again at once: do not spin
                break
            rc = super().loop_read(max_packets)
            sock = self._sock
            if rc != paho.MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, _BufferedSocket):
                break
            if not sock.pending():
                break
        return rc
