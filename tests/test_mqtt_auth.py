"""MQTT authentication with a real Mosquitto running the exported password and ACL files: a bin
speaks only for itself, and what the broker refuses never reaches InfluxDB."""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from binwatch.cli import app
from binwatch.servers import MosquittoServer, free_port, require_binary
from core.errors import InvalidRequest, NotFound
from core.mqtt import make_client, sub_account
from core.settings import Settings, reveal
from core.sql import make_engine
from devices.contract import TopicKind, Topics, account_name_problem
from devices.models import Bin
from devices.registry import BinTags
from security import mqtt_auth
from security.hashing import mosquitto_verify
from security.models import MqttCredential
from tests.conftest import count_points, running_ingest
from tests.helpers import wait_for
from tests.mqtt_helpers import mqtt_packet


@dataclass(frozen=True)
class Secured:
    broker: MosquittoServer
    passwords: dict[str, str]
    settings: Settings

    def url(self, user: str) -> str:
        return f"mqtt://{user}:{self.passwords[user]}@127.0.0.1:{self.broker.port}"


@contextmanager
def secured_broker(
    settings: Settings, directory: Path, accounts: dict[str, tuple[str, ...]]
) -> Iterator[Secured]:
    """A broker of its own with authentication on and `accounts` issued (name -> the sites of a
    manager-<name> account, else empty), as `binwatch mqtt-auth issue` and `export` make them."""
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    with Session(engine) as session:
        issued = [
            mqtt_auth.issue(session, name, now=now, site_ids=sites)
            for name, sites in accounts.items()
        ]
        mqtt_auth.export(session, directory / "auth", prefix=settings.topic_prefix)
    engine.dispose()
    broker = MosquittoServer(directory / "broker", free_port(), auth_dir=directory / "auth")
    broker.start()
    try:
        yield Secured(broker, {i.username: i.password for i in issued}, settings)
    finally:
        broker.stop()


@pytest.fixture
def secured(
    settings: Settings, pilot_bins: dict[str, BinTags], tmp_path: Path
) -> Iterator[Secured]:
    """Two bins and the ingest account issued."""
    first, second = sorted(pilot_bins)[:2]
    with secured_broker(settings, tmp_path, {first: (), second: (), "ingest": ()}) as broker:
        yield broker


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


@pytest.mark.parametrize("suffix", ["junk/1", "status/extra", "cmd"])
def test_a_bin_publishes_only_its_contract_topics(secured: Secured, suffix: str) -> None:
    """Under `bins/<id>/#` a bin retained 1 MB on each of 20 topics of its own making (the
    broker's memory grew by 21 MB and kept it after the bin left) and wrote its own `cmd`, which
    it reads: now anything but its telemetry, event and status closes its connection."""
    first = sorted(u for u in secured.passwords if u != "ingest")[0]
    topics = Topics(secured.settings.topic_prefix)
    client, _ = _client(secured, first, secured.passwords[first])
    try:
        status = topics.bin(first, TopicKind.status)
        client.publish(status, b'{"ts": 1764547200000, "online": true}', 1, True).wait_for_publish(
            10
        )
        assert client.is_connected()
        client.publish(
            f"{secured.settings.topic_prefix}/bins/{first}/{suffix}", b"x" * 1000, 1, True
        )
        wait_for(lambda: not client.is_connected(), timeout=10, what="the broker to refuse")
    finally:
        client.disconnect()
        client.loop_stop()


def _field(text: str) -> bytes:
    """An MQTT UTF-8 string: its length in two bytes, then the bytes."""
    return len(text.encode()).to_bytes(2, "big") + text.encode()


@pytest.mark.parametrize("level", [4, 5])  # MQTT 3.1.1, 5
def test_a_bin_cannot_make_the_broker_hold_qos2_messages(secured: Secured, level: int) -> None:
    """A QoS 2 message stays in the broker from its PUBLISH to the client's PUBREL, which a
    hostile bin never sends: 150 of 1 MB made Mosquitto 144 MB larger, up to 65,535 of them.
    Now its first QoS 2 PUBLISH closes the connection, unanswered."""
    first = sorted(u for u in secured.passwords if u != "ingest")[0]
    topic = Topics(secured.settings.topic_prefix).bin(first, TopicKind.telemetry)
    properties = b"\x00" if level == 5 else b""  # MQTT 5: an empty property list
    connect = _field("MQTT") + bytes([level, 0xC2]) + (60).to_bytes(2, "big") + properties
    connect += _field(first) + _field(first) + _field(secured.passwords[first])
    reading = json.dumps({"ts": int(time.time() * 1000), "fill_pct": 1.0}).encode()
    with socket.create_connection(("127.0.0.1", secured.broker.port), timeout=10) as sock:
        sock.sendall(mqtt_packet(0x10, connect))
        connack = sock.recv(64)
        assert connack[0] == 0x20 and connack[3] == 0, connack  # accepted
        if level == 5:
            assert b"\x24\x01" in connack  # Maximum QoS: 1, told at once
        received = b""
        # The broker may reset the connection; without the limit it stays open (time out).
        with contextlib.suppress(ConnectionError, TimeoutError):
            for packet_id in range(1, 4):
                body = _field(topic) + packet_id.to_bytes(2, "big") + properties + reading
                sock.sendall(mqtt_packet(0x34, body))  # PUBLISH, QoS 2
            sock.settimeout(3)
            while chunk := sock.recv(64):
                received += chunk
    # Without the limit: a PUBREC (0x50) per message, and the connection stays open.
    assert not received.startswith(b"\x50"), received


def _rss_mib(broker: MosquittoServer) -> float:
    assert broker.process is not None
    status = Path(f"/proc/{broker.process.pid}/status").read_text()
    return int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1]) / 1024


def _varint(size: int) -> bytes:
    """MQTT's variable byte integer, as a packet's remaining length is written."""
    out = b""
    while True:
        size, byte = divmod(size, 128)
        out += bytes([byte | (128 if size else 0)])
        if not size:
            return out


def test_nobody_makes_the_broker_read_a_packet_larger_than_the_largest_message(
    secured: Secured,
) -> None:
    """Mosquitto reads a packet whole before it looks at it, a CONNECT before its password:
    three connections of no account, each declaring a CONNECT of 200 MB and sending it, made
    the broker 597 MB larger (2.0.11). With `max_packet_size` it closes such a connection at
    its first bytes; a message as large as `message_size_limit` still goes through."""
    before = _rss_mib(secured.broker)
    mib = 1024 * 1024
    declared, chunk = 200 * mib, b"\0" * mib
    for _connection in range(3):
        sent = 0
        with socket.create_connection(("127.0.0.1", secured.broker.port), timeout=5) as sock:
            sock.sendall(b"\x10" + _varint(declared))  # CONNECT, 200 MB to follow
            with contextlib.suppress(ConnectionError, TimeoutError):
                while sent < 64 * mib:
                    sock.sendall(chunk)
                    sent += len(chunk)
            assert sent < 16 * mib, f"the broker read {sent >> 20} MiB of an oversized CONNECT"
    assert _rss_mib(secured.broker) - before < 16

    first = sorted(u for u in secured.passwords if u != "ingest")[0]
    topic = Topics(secured.settings.topic_prefix).bin(first, TopicKind.telemetry)
    received: list[int] = []
    reader, _codes = _client(secured, "ingest", secured.passwords["ingest"])
    reader.on_message = lambda _c, _u, message: received.append(len(message.payload))
    reader.subscribe(topic, qos=1)
    sender, _codes = _client(secured, first, secured.passwords[first])
    try:
        time.sleep(0.5)  # the reader's SUBACK
        largest = 4 * 1024 * 1024  # message_size_limit (binwatch/mosquitto/conf.d)
        sender.publish(topic, b"[" + b" " * (largest - 2) + b"]", qos=1).wait_for_publish(20)
        wait_for(lambda: received == [largest], timeout=20, what="the largest message")
    finally:
        for client in (sender, reader):
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


# How long each hostile connection stays before the next: long enough for Mosquitto to have
# handled a takeover (on main one 10 s attempt cost 493 of 690 readings), short enough to try
# many in a test.
TAKEOVER_HOLD_S = 0.2
TAKEOVER_READINGS = 400


def _takeover_attempts(
    secured: Secured, user: str, client_ids: list[str], stop: threading.Event, codes: list[object]
) -> None:
    """Connect as `user` with each of `client_ids` in turn, alternately with clean start (which
    on a broker without the protection wipes the victim's queue) and with a persistent session,
    until `stop`; the CONNACK reason codes go to `codes`."""
    attempt = 0
    while not stop.is_set():
        client_id = client_ids[attempt % len(client_ids)]
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        client.username_pw_set(user, secured.passwords[user])
        client.on_connect = lambda _c, _u, _f, reason, _p: codes.append(reason)
        client.connect(
            "127.0.0.1",
            secured.broker.port,
            clean_start=attempt % 2 == 0,
            properties=properties,
        )
        client.loop_start()
        stop.wait(TAKEOVER_HOLD_S)
        client.disconnect()
        client.loop_stop()
        attempt += 1


def test_a_bin_using_ingests_client_id_cannot_cost_a_reading(secured: Secured) -> None:
    """Two ingest workers on a shared subscription (accounts ingest-0 and ingest-1, which
    `export` derives from `ingest`), a bin publishing readings, and another bin connecting over
    and over with every client id ingest could have, with and without clean start."""
    first, second = sorted(u for u in secured.passwords if u != "ingest")
    settings = secured.settings.model_copy(update={"mqtt_url": secured.url("ingest")})
    ids = ["ingest", "ingest-0", "ingest-1", settings.ingest.client_id, "binwatch-ingest"]
    topic = Topics(settings.topic_prefix).bin(first, TopicKind.telemetry)
    start_ms = int(time.time() * 1000) - TAKEOVER_READINGS
    stop = threading.Event()
    codes: list[object] = []
    with (
        running_ingest(settings, worker_index=0, shared=True) as one,
        running_ingest(settings, worker_index=1, shared=True) as other,
    ):
        attacker = threading.Thread(
            target=_takeover_attempts, args=(secured, second, ids, stop, codes)
        )
        attacker.start()
        publisher, _ = _client(secured, first, secured.passwords[first])
        try:
            for index in range(TAKEOVER_READINGS):
                _publish(publisher, topic, start_ms + index)
                if index % 50 == 0:
                    time.sleep(TAKEOVER_HOLD_S)  # spread the readings over many attempts
            wait_for(
                lambda: count_points(settings) >= TAKEOVER_READINGS,
                timeout=30,
                what="every reading stored",
            )
            # Every id tried at least twice, once with clean start and once without.
            wait_for(lambda: len(codes) >= 2 * len(ids), timeout=30, what="the attempts")
        finally:
            stop.set()
            attacker.join(10)
            publisher.disconnect()
            publisher.loop_stop()
        reconnects = [w.metrics.value("binwatch_ingest_reconnects_total") for w in (one, other)]
    assert count_points(settings) == TAKEOVER_READINGS
    # The attack ran: the broker let the bin in every time, under its own name as client id.
    assert not any(code.is_failure for code in codes)  # type: ignore[attr-defined]
    assert reconnects == [0, 0], "an ingest worker lost its connection to the attacker"


SHARE_READINGS = 300


def test_a_bin_joining_ingests_shared_subscription_cannot_cost_a_reading(
    secured: Secured,
) -> None:
    """Mosquitto hands each message of a shared subscription's group to one member in turn and
    checks that member's read access only then. A bin subscribed to ingest's group beside two
    workers (any account may subscribe to anything) was handed a third of the readings, which
    its ACL refused: 200 of 300 stored. The group's name is now a digest of ingest's password."""
    first, second = sorted(u for u in secured.passwords if u != "ingest")
    settings = secured.settings.model_copy(update={"mqtt_url": secured.url("ingest")})
    topics = Topics(settings.topic_prefix)
    start_ms = int(time.time() * 1000) - SHARE_READINGS
    with (
        running_ingest(settings, worker_index=0, shared=True),
        running_ingest(settings, worker_index=1, shared=True),
    ):
        thief, codes = _client(secured, second, secured.passwords[second])
        heard: list[str] = []
        thief.on_message = lambda _c, _u, message: heard.append(message.topic)
        # Every group name it could know: the setting's, and the one the docs show.
        groups = (settings.ingest.share_group, "binwatch-ingest")
        thief.subscribe([(f"$share/{g}/{f}", 1) for g in groups for f in topics.inbound_filters()])
        wait_for(lambda: len(codes) >= 7, timeout=10, what="SUBACKs")
        publisher, _ = _client(secured, first, secured.passwords[first])
        try:
            topic = topics.bin(first, TopicKind.telemetry)
            for index in range(SHARE_READINGS):
                _publish(publisher, topic, start_ms + index)
            wait_for(
                lambda: count_points(settings) >= SHARE_READINGS,
                timeout=30,
                what="every reading stored",
            )
        finally:
            for client in (publisher, thief):
                client.disconnect()
                client.loop_stop()
    assert count_points(settings) == SHARE_READINGS
    assert heard == [] and not any(code.is_failure for code in codes)  # type: ignore[attr-defined]


def test_accounts_export_with_sub_accounts_and_refuse_what_cannot_be(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    bin_id = sorted(pilot_bins)[0]
    site = pilot_bins[bin_id].site
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    try:
        with Session(engine) as session:
            for name, sites, error in [
                ("manager-li", (), InvalidRequest),  # a manager without a site
                ("manager-li", ("no-such-site",), NotFound),
                ("ingest-3", (), InvalidRequest),  # a sub-account shares its service's password
                (bin_id, (site,), InvalidRequest),  # only managers have sites
                ("admin-", (), NotFound),
                # A name holding a line break or ':' wrote lines of its own into the password
                # file and the ACL: here the ingest account's password, and a rule for it.
                ("admin-x\ningest", (), InvalidRequest),
                ("manager-li\nuser ingest\ntopic readwrite #", (site,), InvalidRequest),
                ("admin-ops:team", (), InvalidRequest),
                ("admin-ops team", (), InvalidRequest),
            ]:
                with pytest.raises(error):
                    mqtt_auth.issue(session, name, now=now, site_ids=sites)
            mqtt_auth.issue(session, "ingest", now=now)
            mqtt_auth.issue(session, "manager-li", now=now, site_ids=(site,))
            passwords = dict(
                line.split(":", 1) for line in mqtt_auth.password_text(session).splitlines()
            )
            acl = mqtt_auth.acl_text(session, "p")
    finally:
        engine.dispose()
    workers = [f"ingest-{n}" for n in range(mqtt_auth.INGEST_WORKERS_MAX)]
    assert sorted(passwords) == sorted(["ingest", "manager-li", *workers])
    assert {passwords[name] for name in workers} == {passwords["ingest"]}
    assert f"user manager-li\ntopic read p/alerts/{site}\n" in acl
    assert "user ingest-31\ntopic read p/bins/+/telemetry\n" in acl


def test_a_bin_named_like_an_account_gets_neither_a_bins_nor_the_accounts_credential(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    """Bins registered before the fleet import refused such ids (devices/contract.py): a bin of
    a site `admin-centre` was issued an account reading every alert of the city, and a bin
    `collector` took the collector's password."""
    site = next(iter(pilot_bins.values())).site
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    try:
        with Session(engine) as session:
            collector = mqtt_auth.issue(session, "collector", now=now)
            for name in ("admin-centre-s1-kitchen", "collector"):
                session.add(
                    Bin(
                        id=name, site_id=site, station="s1", stream="kitchen",
                        capacity_l=240, threshold_pct=80,
                    )
                )  # fmt: skip
                session.commit()
                with pytest.raises(InvalidRequest, match="is the name of a broker account"):
                    mqtt_auth.issue_missing_bins(session, now=now)
                with pytest.raises(InvalidRequest, match="rename the bin"):
                    mqtt_auth.issue(session, name, now=now)
            acl = mqtt_auth.acl_text(session, "p")
            stored = session.get(MqttCredential, "collector")
            assert stored is not None and mosquitto_verify(collector.password, stored.password_hash)
    finally:
        engine.dispose()
    assert "user admin-centre" not in acl
    # Every account name `issue` gives out is one that no bin may take.
    for name in (*mqtt_auth.SERVICES, *itertools.chain(*mqtt_auth.SUB_ACCOUNTS.values())):
        assert account_name_problem(name), name
    for prefix in (mqtt_auth.OPERATOR_PREFIX, mqtt_auth.MANAGER_PREFIX, mqtt_auth.ADMIN_PREFIX):
        assert account_name_problem(f"{prefix}x"), prefix


def test_set_takes_the_password_from_stdin_and_refuses_a_weak_one(
    settings: Settings, pilot_bins: dict[str, BinTags], tmp_path: Path
) -> None:
    """What docker-compose.yml's mqtt-accounts step runs for each service."""
    runner = CliRunner()
    env = {"BINWATCH_DATABASE_URL": reveal(settings.database_url)}
    chosen = "0123456789abcdef0123"
    done = runner.invoke(app, ["mqtt-auth", "set", "ingest"], input=chosen + "\n", env=env)
    assert done.exit_code == 0, done.output
    weak = runner.invoke(app, ["mqtt-auth", "set", "alerter"], input="short\n", env=env)
    assert weak.exit_code == 1 and "at least 16" in weak.output
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            passwords = dict(
                line.split(":", 1) for line in mqtt_auth.password_text(session).splitlines()
            )
    finally:
        engine.dispose()
    assert "alerter" not in passwords
    assert mosquitto_verify(chosen, passwords["ingest-7"])


@pytest.mark.parametrize(
    ("url", "account_url", "client_id"),
    [
        ("mqtt://ingest:p%40ss@h:1883", "mqtt://ingest-3:p%40ss@h:1883", "ingest-3"),
        ("mqtt://ingest@h:1883", "mqtt://ingest-3@h:1883", "ingest-3"),
        ("mqtt://h:1883", "mqtt://h:1883", "fallback"),  # anonymous: the given id
    ],
)
def test_a_sub_account_keeps_the_password_and_is_its_own_client_id(
    url: str, account_url: str, client_id: str
) -> None:
    account = sub_account(Settings(mqtt_url=url), "3")
    assert reveal(account.mqtt_url) == account_url
    assert account.mqtt_endpoint().password == Settings(mqtt_url=url).mqtt_endpoint().password
    connection = make_client(account, "fallback", persistent=False)
    assert connection.client._client_id == client_id.encode()  # noqa: SLF001 - paho has no getter
