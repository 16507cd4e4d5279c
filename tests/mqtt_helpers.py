"""A plain publisher for tests: paho with QoS 1, waiting for every PUBACK; and raw MQTT
control packets, for what no client library sends."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import paho.mqtt.client as paho

from core.settings import Settings


@contextmanager
def connected_publisher(settings: Settings) -> Iterator[paho.Client]:
    """A paho client connected to the test's broker with its network loop running; it
    disconnects on the way out."""
    endpoint = settings.mqtt_endpoint()
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}"
    )
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password)
    client.max_inflight_messages_set(1000)
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def publish_all(
    settings: Settings, messages: Iterable[tuple[str, bytes]], *, per_second: float | None = None
) -> int:
    """Publish (topic, payload) pairs in order with QoS 1; return once the broker has them all.
    `per_second` paces them, so that a stream lasts long enough for a test to act in its middle
    however fast the machine is."""
    started = time.monotonic()
    infos = []
    with connected_publisher(settings) as client:
        for index, (topic, payload) in enumerate(messages):
            if per_second and index % 100 == 0:
                time.sleep(max(0.0, started + index / per_second - time.monotonic()))
            infos.append(client.publish(topic, payload, qos=1))
        wait_acknowledged(infos)
    return len(infos)


def wait_acknowledged(infos: Iterable[paho.MQTTMessageInfo]) -> None:
    """Wait until the broker has acknowledged each of these QoS 1 publications."""
    for info in infos:
        info.wait_for_publish(timeout=30)
        assert info.is_published(), f"broker did not acknowledge message {info.mid}"


def mqtt_packet(header: int, body: bytes) -> bytes:
    """An MQTT control packet: the header byte, the remaining length (a variable byte
    integer), the body."""
    length, size = b"", len(body)
    while True:
        size, byte = divmod(size, 128)
        length += bytes([byte | (128 if size else 0)])
        if not size:
            return bytes([header]) + length + body
