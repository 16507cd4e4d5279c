"""Real Mosquitto and InfluxDB for the whole session, on free loopback ports, with data under
pytest's temporary folder; each test gets its own database, topic prefix and registry, so
assertions can be exact. Set BINWATCH_TEST_MQTT_URL / BINWATCH_TEST_INFLUX_URL to attach to
servers already running instead (fault tests, which kill servers, then fail: they need their own).
A missing `mosquitto` or `influxd` fails the tests that need them; nothing is skipped. The photo
store's tests also have an S3-compatible server (tests/s3_server.py, BINWATCH_TEST_S3_URL). The
registry's PostgreSQL, and the running of registry tests on both backends, live in
tests/registry_backends.py."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from binwatch.servers import InfluxServer, MosquittoServer, _ChildServer, free_port
from core.influx import InfluxClient
from core.settings import Settings
from core.sql import make_engine
from devices.arrivals import ArrivalHook, StoredHook
from devices.models import DeadLetter
from devices.registry import BinTags
from ingest.service import Ingestor
from tests.helpers import isolated_settings, wait_for
from tests.s3_server import S3Server

# The registry on SQLite and on PostgreSQL: `registry_backend`, `registry_url`, `pilot_bins`
# and the server.
pytest_plugins = ["tests.registry_backends"]


@dataclass(frozen=True)
class AttachedServer:
    """A server somebody else runs: usable, but not ours to kill."""

    url: str

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].rstrip("/"))


def session_server(
    variable: str, make: Callable[[pytest.TempPathFactory], _ChildServer]
) -> Callable[[pytest.TempPathFactory], Iterator[_ChildServer | AttachedServer]]:
    """A session fixture: the server `variable` names if it is set, else one `make` builds,
    started here and stopped at the end (also when its start failed half-way)."""

    @pytest.fixture(scope="session")
    def server(
        tmp_path_factory: pytest.TempPathFactory,
    ) -> Iterator[_ChildServer | AttachedServer]:
        if url := os.environ.get(variable):
            yield AttachedServer(url)
            return
        own = make(tmp_path_factory)
        try:
            own.start()
            yield own
        finally:
            own.stop()

    return server


mqtt_server = session_server(
    "BINWATCH_TEST_MQTT_URL", lambda tmp: MosquittoServer(tmp.mktemp("mosquitto"), free_port())
)
influx_server = session_server(
    "BINWATCH_TEST_INFLUX_URL", lambda tmp: InfluxServer(tmp.mktemp("influxdb"), free_port())
)
# An S3-compatible server (tests/s3_server.py), for the photo store's tests only.
s3_server = session_server(
    "BINWATCH_TEST_S3_URL", lambda tmp: S3Server(tmp.mktemp("s3"), free_port())
)


@pytest.fixture
def settings(
    mqtt_server: MosquittoServer | AttachedServer,
    influx_server: InfluxServer | AttachedServer,
    registry_url: str,
) -> Settings:
    """Settings isolated to this test: its own InfluxDB database, topic prefix, registry
    database (on each backend, tests/registry_backends.py) and MQTT client id, so nothing
    another test did can be counted here."""
    return isolated_settings(mqtt_server.url, influx_server.url, registry_url)


@contextmanager
def running_ingest(
    settings: Settings,
    *,
    worker_index: int = 0,
    shared: bool = False,
    on_stored: StoredHook | None = None,
    on_arrivals: ArrivalHook | None = None,
    bugs_expected: bool = False,
) -> Iterator[Ingestor]:
    """An ingest worker in a thread, subscribed before this yields. On the way out it fails the
    test if ingest met an unexpected exception anywhere (Home Assistant's
    fail_on_log_exception): a bug hidden behind a dead letter is still a bug. Only a test that
    plants one itself says `bugs_expected`."""
    ingestor = Ingestor(
        settings,
        worker=worker_index,
        shared=shared,
        on_stored=on_stored,
        on_arrivals=on_arrivals,
    )
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            ingestor.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"ingest-{worker_index}", daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: ingestor.subscribed.is_set() or errors, timeout=15, what="ingest to subscribe"
        )
        yield ingestor
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive(), "ingest did not stop within 30 s"
    assert not errors, f"ingest crashed: {errors!r}"
    if not bugs_expected:
        assert ingestor.metrics.value("binwatch_ingest_rejected_total", reason="ingest_error") == 0


@pytest.fixture
def ingest(settings: Settings, pilot_bins: dict[str, BinTags]) -> Iterator[Ingestor]:
    with running_ingest(settings) as worker:
        yield worker


def count_points(settings: Settings, measurement: str = "telemetry") -> int:
    """Points in a measurement, counted by InfluxDB itself."""
    client = InfluxClient(settings)
    try:
        # Every measurement ingest writes from MQTT has received_ms.
        result = client.query(f"SELECT count(received_ms) FROM {measurement}")
    finally:
        client.close()
    return int(result[0].values[0][1]) if result else 0


def dead_letter_parts(settings: Settings) -> Counter[str]:
    """Readings (or messages) dead-lettered, per reason, from the registry's rows."""
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            letters = session.scalars(select(DeadLetter)).all()
    finally:
        engine.dispose()
    counts: Counter[str] = Counter()
    for letter in letters:
        counts[letter.reason] += letter.parts
    return counts
