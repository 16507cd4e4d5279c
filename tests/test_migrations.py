"""The migrations are the schema; the domains' model modules must describe exactly what they create, on
SQLite and on PostgreSQL, whether a database is migrated from empty or from any earlier
revision, and every revision can be taken back."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from typer.testing import CliRunner

from binwatch.cli import app
from binwatch.database import METADATA, alembic_config, migrate
from core.sql import make_engine

TABLES = {
    "alembic_version",
    "areas",
    "operators",
    "sites",
    "bins",
    "dead_letters",
    "dead_letter_tallies",
    "retirements",
    "collection_requests",
    "collection_events",
    "area_contacts",
    "contact_channels",
    "notifications",
    *("site_contacts", "alerts", "alert_events", "alert_deliveries", "bin_health"),
    *("api_keys", "mqtt_credentials", "users", "console_sessions"),
    "user_events",
    *("depots", "vehicles", "crews", "route_plans", "route_stops", "crew_taps"),
}


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), METADATA))


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _step(engine: Engine, direction: str, revision: str) -> None:
    """One Alembic upgrade or downgrade over the engine, as `binwatch.database.migrate` runs them."""
    with engine.connect() as connection:
        getattr(command, direction)(alembic_config(connection), revision)
        connection.commit()


def test_migrated_schema_matches_models(registry_url: str) -> None:
    migrate(registry_url)
    engine = make_engine(registry_url)
    try:
        assert _differences(engine) == []
    finally:
        engine.dispose()


def test_migrate_twice_is_harmless(registry_url: str) -> None:
    migrate(registry_url)
    migrate(registry_url)
    engine = make_engine(registry_url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES
    finally:
        engine.dispose()


def test_the_db_migrate_command_migrates_the_configured_registry(
    registry_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BINWATCH_DATABASE_URL", registry_url)
    for _ in range(2):  # compose runs it on every `up`
        done = CliRunner().invoke(app, ["db", "migrate"])
        assert done.exit_code == 0, done.output
    engine = make_engine(registry_url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES
        assert _differences(engine) == []
    finally:
        engine.dispose()


def test_simulate_on_an_unmigrated_registry_says_to_import_the_fleet(
    registry_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite says "no such table" as an OperationalError, PostgreSQL as a ProgrammingError.
    monkeypatch.setenv("BINWATCH_DATABASE_URL", registry_url)
    done = CliRunner().invoke(app, ["simulate", "--rounds", "1"])
    assert done.exit_code == 1, done.output
    assert "run `binwatch fleet import` first" in done.output


def test_migrate_creates_the_sqlite_files_folder(tmp_path: Path) -> None:
    # SQLite only: the default URL points into var/, which a fresh checkout does not have.
    url = f"sqlite:///{tmp_path / 'var' / 'registry.db'}"
    migrate(url)
    assert (tmp_path / "var" / "registry.db").is_file()


def test_every_revision_upgrades_downgrades_and_upgrades_again(registry_url: str) -> None:
    """Step by step from empty: each revision applied, taken back and applied again; from each
    earlier revision `migrate` reaches head; at head the schema is the models'; down to base
    nothing of the registry is left."""
    engine = make_engine(registry_url)
    with engine.connect() as connection:
        script = ScriptDirectory.from_config(alembic_config(connection))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert len(revisions) >= 5
    try:
        previous = "base"
        for revision in revisions:
            _step(engine, "upgrade", revision)
            _step(engine, "downgrade", previous)
            assert _revision(engine) == (None if previous == "base" else previous)
            _step(engine, "upgrade", revision)
            assert _revision(engine) == revision
            previous = revision
        assert _differences(engine) == []
        _step(engine, "downgrade", "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        for revision in revisions:  # from each earlier revision straight to head
            _step(engine, "upgrade", revision)
            migrate(registry_url)
            assert _revision(engine) == revisions[-1]
            assert _differences(engine) == []
            _step(engine, "downgrade", revision)
    finally:
        engine.dispose()
