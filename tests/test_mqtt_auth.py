"""MQTT authentication with a real Mosquitto running the exported password and ACL files: a bin
speaks only for itself, and what the broker refuses never reaches InfluxDB."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from sqlalchemy.orm import Session

from binwatch.servers import MosquittoServer, free_port, require_binary
from binwatch.settings import Settings
from devices.contract import TopicKind, Topics
from devices.registry import BinTags, make_engine
from security import mqtt_auth
from security.hashing import mosquitto_verify
from tests.conftest import count_points, running_ingest
from tests.helpers import wait_for


@dataclass(frozen=True)
class Secured:
    broker: MosquittoServer
    passwords: dict[str, str]
    settings: Settings

    def url(self, user: str) -> str:
        return f"mqtt://{user}:{self.passwords[user]}@127.0.0.1:{self.broker.port}"


@pytest.fixture
def secured(
    settings: Settings, pilot_bins: dict[str, BinTags], tmp_path: Path
) -> Iterator[Secured]:
    """A broker of its own with authentication on, two bins and the ingest account issued."""
    first, second = sorted(pilot_bins)[:2]
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    with Session(engine) as session:
        issued = [mqtt_auth.issue(session, name, now=now) for name in (first, second, "ingest")]
        mqtt_auth.export(session, tmp_path / "auth", prefix=settings.topic_prefix)
    engine.dispose()
    broker = MosquittoServer(tmp_path / "broker", free_port(), auth_dir=tmp_path / "auth")
    broker.start()
    try:
        yield Secured(broker, {i.username: i.password for i in issued}, settings)
    finally:
        broker.stop()


def _client(secured: Secured, user: str, password: str) -> tuple[paho.Client, list[object]]:
    """A connected MQTT 5 client, and the reason codes its CONNACK / SUBACKs returned."""
    codes: list[object] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.username_pw_set(user, password)
    client.on_connect = lambda _c, _u, _f, reason, _p: codes.append(reason)
    client.on_subscribe = lambda _c, _u, _m, reasons, _p: codes.extend(reasons)
    client.connect("127.0.0.1", secured.broker.port)
    client.loop_start()
    wait_for(lambda: codes, timeout=10, what="CONNACK")
    return client, codes


def _publish(client: paho.Client, topic: str, ts_ms: int) -> None:
    body = json.dumps({"ts": ts_ms, "fill_pct": 42.0}).encode()
    client.publish(topic, body, qos=1).wait_for_publish(10)


def test_our_hash_is_mosquitto_passwd_s(tmp_path: Path) -> None:
    path = tmp_path / "passwords"
    binary = require_binary("mosquitto_passwd", "mosquitto")
    subprocess.run([binary, "-c", "-b", str(path), "alice", "s3cret"], check=True)
    stored = path.read_text().strip().split(":", 1)[1]
    assert stored.startswith("$7$101$")
    assert mosquitto_verify("s3cret", stored) and not mosquitto_verify("guess", stored)


def test_a_bin_speaks_only_for_itself(secured: Secured) -> None:
    first, second = sorted(u for u in secured.passwords if u != "ingest")
    topics = Topics(secured.settings.topic_prefix)
    ingest_settings = secured.settings.model_copy(update={"mqtt_url": secured.url("ingest")})
    now_ms = int(time.time() * 1000)
    with running_ingest(ingest_settings):
        impostor, _ = _client(secured, first, secured.passwords[first])
        impostor.publish(
            topics.bin(second, TopicKind.telemetry), json.dumps({"ts": now_ms, "fill_pct": 1.0})
        )
        # Mosquitto 2.0 answers a forbidden PUBLISH by closing the connection.
        wait_for(lambda: not impostor.is_connected(), timeout=10, what="the broker to refuse")
        impostor.loop_stop()
        honest, _ = _client(secured, first, secured.passwords[first])
        try:
            _publish(honest, topics.bin(first, TopicKind.telemetry), now_ms)
            wait_for(lambda: count_points(ingest_settings) >= 1, timeout=15, what="own reading")
            time.sleep(0.5)  # the refused one, had it passed, was published first
            assert count_points(ingest_settings) == 1
        finally:
            honest.disconnect()
            honest.loop_stop()


def test_a_bin_subscribed_to_everything_hears_nothing_of_others(secured: Secured) -> None:
    # Mosquitto 2.0 grants the SUBSCRIBE to `#` and applies the ACL to every message it would
    # deliver (read access), so the subscription stays empty rather than failing.
    first, second = sorted(u for u in secured.passwords if u != "ingest")
    heard: list[str] = []
    listener, codes = _client(secured, first, secured.passwords[first])
    listener.on_message = lambda _c, _u, message: heard.append(message.topic)
    talker, _ = _client(secured, second, secured.passwords[second])
    try:
        listener.subscribe("#", qos=1)
        wait_for(lambda: len(codes) >= 2, timeout=10, what="SUBACK")
        topic = Topics(secured.settings.topic_prefix).bin(second, TopicKind.telemetry)
        _publish(talker, topic, int(time.time() * 1000))
        time.sleep(1.0)  # a delivery would take milliseconds on loopback
        assert heard == []
    finally:
        for client in (listener, talker):
            client.disconnect()
            client.loop_stop()


@pytest.mark.parametrize("who", ["bin", "nobody"])
def test_wrong_or_missing_credentials_are_refused(secured: Secured, who: str) -> None:
    first = sorted(u for u in secured.passwords if u != "ingest")[0]
    user, password = (first, "wrong") if who == "bin" else ("nobody", "")
    client, codes = _client(secured, user, password)
    try:
        assert codes[0].is_failure  # type: ignore[attr-defined]
    finally:
        client.loop_stop()
