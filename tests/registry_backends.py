"""The registry under test on both databases it runs on: SQLite (one file per test) and a real
PostgreSQL (one database per test on a server of the session), a pytest plugin loaded by
conftest.

Any test that asks for `registry_backend` (directly or through `registry_url` or `settings`)
runs once per backend, with the id `sqlite` or `postgresql`. A module or test that cannot or
need not run on both says so, with its reason, in a marker::

    pytestmark = pytest.mark.registry_backends("sqlite", reason="…")

PostgreSQL starts only when a test needs it; a missing server fails that test, never skips it.
Set BINWATCH_TEST_POSTGRES_URL (a SQLAlchemy URL of a database whose user may create
databases, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres) to use a server already
running instead."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from binwatch.database import migrate
from binwatch.servers import PostgresServer, free_port
from core.settings import Settings
from core.sql import make_engine
from devices.fleet import default_fleet_path, import_fleet, load_fleet
from devices.registry import BinTags, bin_tags
from tests.helpers import isolated_settings

BACKENDS = ("sqlite", "postgresql")
MARKER = "registry_backends"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*backends, reason): run only on these registry backends, and say why",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "registry_backend" not in metafunc.fixturenames:
        return
    backends: tuple[str, ...] = BACKENDS
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is not None:
        backends = marker.args
        if not marker.kwargs.get("reason") or not set(backends) <= set(BACKENDS):
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid}: {MARKER} takes backends from {BACKENDS} and a"
                " reason= saying why the others are left out"
            )
    # Module scope groups a module's tests by backend, and lets module fixtures use it.
    metafunc.parametrize("registry_backend", backends, scope="module")


class PostgresDatabases:
    """Creates an empty database per test on one server (CREATE DATABASE copies the empty
    template in ~0.1 s) and drops it afterwards, connections and all; and turns one into a
    copy of a registry prepared once per session (migrated, and with the pilot fleet or not)."""

    def __init__(self, admin_url: str) -> None:
        url = make_url(admin_url)
        self._admin_url = admin_url
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._prepared: dict[bool, str] = {}

    @contextmanager
    def database(self) -> Iterator[str]:
        name = f"test_{uuid.uuid4().hex[:12]}"
        self._run(f'CREATE DATABASE "{name}"')
        try:
            yield self._url(name)
        finally:
            self._run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def copy_prepared_into(self, url: str, *, fleet: bool) -> bool:
        """Replace the empty database at `url` by a copy of the prepared registry; False when
        it is in use already (somebody connected: it is left alone)."""
        if fleet not in self._prepared:
            name = f"prepared_{uuid.uuid4().hex[:12]}"  # dropped by close(), at the session's end
            self._run(f'CREATE DATABASE "{name}"')
            prepare(self._url(name), fleet=fleet)
            self._prepared[fleet] = name
        target = make_url(url).database
        try:
            self._run(f'DROP DATABASE "{target}"')
        except psycopg.errors.ObjectInUse:
            return False
        self._run(f'CREATE DATABASE "{target}" TEMPLATE "{self._prepared[fleet]}"')
        return True

    def close(self) -> None:
        for name in self._prepared.values():
            self._run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _url(self, name: str) -> str:
        return make_url(self._admin_url).set(database=name).render_as_string(hide_password=False)

    def _run(self, statement: str) -> None:
        with psycopg.connect(self._conninfo, autocommit=True) as connection:
            connection.execute(statement.encode())


def prepare(database_url: str, *, fleet: bool) -> None:
    """Migrate the registry at `database_url`, and load the default pilot fleet if `fleet`."""
    migrate(database_url)
    if not fleet:
        return
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            import_fleet(session, load_fleet(default_fleet_path()))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """Our own PostgreSQL, for the tests that stop it or need its superuser."""
    server = PostgresServer(tmp_path_factory.mktemp("postgresql"), free_port())
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def postgres_databases(request: pytest.FixtureRequest) -> Iterator[PostgresDatabases]:
    if url := os.environ.get("BINWATCH_TEST_POSTGRES_URL"):
        databases = PostgresDatabases(url)
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        databases = PostgresDatabases(server.database_url())
    yield databases
    databases.close()


@pytest.fixture(scope="session")
def sqlite_prepared() -> dict[bool, Path]:
    """SQLite registries prepared once per session (with the fleet or not), for tests to copy;
    each made when first wanted."""
    return {}


def prepare_registry(database_url: str, request: pytest.FixtureRequest, *, fleet: bool) -> None:
    """Migrate the empty registry at `database_url` (and load the pilot fleet if `fleet`) by
    copying one prepared once per session: a copy takes a tenth of the second that migrating
    and loading take, for each of hundreds of tests. A registry no longer empty and unused is
    prepared in place instead."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        target = Path(str(url.database))
        if not target.exists():
            prepared: dict[bool, Path] = request.getfixturevalue("sqlite_prepared")
            if fleet not in prepared:
                folder = request.getfixturevalue("tmp_path_factory").mktemp("prepared")
                prepare(f"sqlite:///{folder / 'registry.db'}", fleet=fleet)
                prepared[fleet] = folder / "registry.db"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(prepared[fleet], target)
            return
    else:
        databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
        if databases.copy_prepared_into(database_url, fleet=fleet):
            return
    prepare(database_url, fleet=fleet)


@contextmanager
def registry_database(backend: str, folder: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of an empty registry database on `backend`; a SQLite file goes into `folder`,
    made empty as PostgreSQL's database is (binwatch refuses a SQLite file that does not exist,
    core.sql.require_registry)."""
    if backend == "sqlite":
        path = folder / "registry.db"
        path.touch()  # an empty file is an empty SQLite database
        yield f"sqlite:///{path}"
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    with databases.database() as url:
        yield url


@pytest.fixture
def registry_url(
    registry_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """An empty registry database of this test's own (nobody has migrated it yet)."""
    with registry_database(registry_backend, tmp_path, request) as url:
        yield url


@pytest.fixture
def own_postgres(registry_backend: str, tmp_path: Path) -> Iterator[tuple[PostgresServer, str]]:
    """A server of the test's own, for tests that stop it (stopping the session's would disturb
    the others, and a server given by BINWATCH_TEST_POSTGRES_URL is not ours to stop), and the
    URL of a database on it, migrated, with the pilot fleet."""
    server = PostgresServer(tmp_path / "postgresql", free_port())
    with server, PostgresDatabases(server.database_url()).database() as url:
        prepare(url, fleet=True)
        yield server, url


@pytest.fixture
def pilot_bins(settings: Settings, request: pytest.FixtureRequest) -> dict[str, BinTags]:
    """The registry migrated and loaded with the default pilot fleet; its bins by id."""
    url = settings.database_url.get_secret_value()
    prepare_registry(url, request, fleet=True)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return bin_tags(session)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def module_settings(
    registry_backend: str,
    mqtt_server: Any,
    influx_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Settings]:
    """`settings` over the pilot registry (`pilot_bins`'s), shared by a module's tests: for
    modules whose tests read what a module fixture made, or change nothing the others read.
    One registry and app for dozens of tests instead of one each."""
    with registry_database(registry_backend, tmp_path_factory.mktemp("registry"), request) as url:
        prepare_registry(url, request, fleet=True)
        yield isolated_settings(mqtt_server.url, influx_server.url, url)
