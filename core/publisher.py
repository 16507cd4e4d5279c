"""Publishing with confirmation, for the collector (dispatches, escalations to an area's topic)
and the alerter (alert notices): one connection that publishes with QoS 1 and waits for the
broker's PUBACK, so "published" means the broker has it. paho keeps a QoS 1 message it could
not send and sends it after a reconnect, while the services also retry: an operator may see a
dispatch twice and keys on its `request_id`."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import paho.mqtt.client as paho

from core.errors import BinwatchError
from core.mqtt import Connection, is_auth_failure, make_client
from core.settings import Settings

log = logging.getLogger(__name__)

QOS = 1
# A broker on the same network answers in milliseconds; these allow for a slow start or a busy
# moment without holding the collector's loop for long (it retries on the next tick).
CONNECT_TIMEOUT_S = 10.0
PUBACK_TIMEOUT_S = 5.0


class PublishFailed(BinwatchError):
    """The broker did not acknowledge a message; the collector tries again on its next tick."""


class Publisher:
    """A non-persistent paho client (the collector keeps its own state in the database)."""

    def __init__(self, settings: Settings) -> None:
        self._connection: Connection = make_client(
            settings, f"binwatch-collector-{uuid.uuid4().hex[:12]}", persistent=False
        )
        self._connected = threading.Event()
        self._refusal: str | None = None
        self._connection.client.on_connect = self._on_connect

    def start(self) -> None:
        """Connect and wait for the CONNACK; refused credentials or silence raise."""
        self._connection.start()
        if not self._connected.wait(CONNECT_TIMEOUT_S) or self._refusal:
            self._connection.stop()
            raise BinwatchError(
                f"collector could not connect to MQTT: {self._refusal or 'no answer'}"
            )

    def stop(self) -> None:
        self._connection.stop()

    def publish(self, topic: str, payload: bytes) -> None:
        info = self._connection.client.publish(topic, payload, qos=QOS)
        try:
            info.wait_for_publish(PUBACK_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:  # paho's way of saying "not connected"
            raise PublishFailed(f"{topic}: {exc}") from exc
        if not info.is_published():
            raise PublishFailed(f"{topic}: no PUBACK within {PUBACK_TIMEOUT_S:.0f} s")

    def _on_connect(
        self, _client: paho.Client, _u: Any, _f: Any, reason: paho.ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            log.warning("MQTT refused the collector: %s", reason)
            if is_auth_failure(reason):
                self._refusal = str(reason)
                self._connected.set()
            return
        self._connected.set()
