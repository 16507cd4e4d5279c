"""The MQTT boundary's common part: a paho-mqtt 2.x client configured the way binwatch's services
need it (MQTT 5, credentials from the settings, capped reconnect backoff). Ingest subscribes with
it, the collector, the alerter and the simulator publish with it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.settings import SecretUrl, Settings, reveal

# Reconnect quickly after a broker restart, but never hammer a broker that stays down.
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 10
# Long enough for a broker restart or an ingest upgrade, short enough to notice a dead client.
KEEPALIVE_S = 30
# MQTT 5 ends a session at disconnect unless the client asks for it to outlive the connection
# (MQTT 5 §3.1.2.11.2); 7 days covers any outage the queue on disk can absorb.
SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass(slots=True)
class Connection:
    """A configured client and what its CONNECT must say; `start` begins connecting in paho's
    own thread, and paho then retries by itself with the backoff above."""

    client: paho.Client
    settings: Settings
    properties: Properties
    persistent: bool

    def start(self) -> None:
        endpoint = self.settings.mqtt_endpoint()
        self.client.connect_async(
            endpoint.host,
            endpoint.port,
            keepalive=KEEPALIVE_S,
            clean_start=not self.persistent,
            properties=self.properties,
        )
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """Whether the connection is up within `timeout` seconds (for short-lived publishers)."""
        deadline = time.monotonic() + timeout
        while not self.client.is_connected():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def sub_account(settings: Settings, suffix: str) -> Settings:
    """The settings of account `<user>-<suffix>`, for one more connection of the same service:
    binwatch's broker makes every client id its user name (`use_username_as_clientid`, so no
    account can take another's session), so two connections need two accounts. `binwatch
    mqtt-auth export` gives these sub-accounts the service's password and ACL
    (security/mqtt_auth.py). Without a user name (an anonymous test broker) nothing changes."""
    user = settings.mqtt_endpoint().username
    if user is None:
        return settings
    parts = urlsplit(reveal(settings.mqtt_url))
    userinfo, host = parts.netloc.rsplit("@", 1)
    password = userinfo.partition(":")[1:]  # (":", quoted password), or ("", "") without one
    netloc = f"{quote(f'{user}-{suffix}', safe='')}{''.join(password)}@{host}"
    return settings.model_copy(
        update={"mqtt_url": SecretUrl(urlunsplit(parts._replace(netloc=netloc)))}
    )


def make_client(
    settings: Settings,
    client_id: str,
    *,
    persistent: bool,
    receive_maximum: int | None = None,
    manual_ack: bool = False,
    client_class: type[paho.Client] = paho.Client,
) -> Connection:
    """A client whose id is its user name, as binwatch's broker enforces (`client_id` only
    without one, on an anonymous broker); `persistent` keeps its session (subscriptions and
    unacknowledged QoS 1 messages) on the broker across disconnects. `client_class`: paho's own,
    or a subclass of it (ingest passes its `ingest.paho_buffered.BufferedClient`)."""
    endpoint = settings.mqtt_endpoint()
    client = client_class(
        paho.CallbackAPIVersion.VERSION2,
        client_id=endpoint.username or client_id,
        protocol=paho.MQTTv5,
        manual_ack=manual_ack,
    )
    if endpoint.username is not None:
        client.username_pw_set(endpoint.username, endpoint.password)
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    properties = Properties(PacketTypes.CONNECT)
    if persistent:
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
    if receive_maximum is not None:
        # Without this Mosquitto sends 20 unacknowledged messages and waits (FACTS.md): with
        # ack-after-write, batches would never grow past 20.
        properties.ReceiveMaximum = receive_maximum
    return Connection(client, settings, properties, persistent)


def is_auth_failure(reason: paho.ReasonCode) -> bool:
    """Refused credentials are a configuration error to report, not a fault to retry."""
    return reason.is_failure and reason.value in (
        0x86,
        0x87,
        0x8C,
    )  # bad credentials, not authorized, bad auth method
