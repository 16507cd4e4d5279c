"""The migrations are the schema; the domains' model modules must describe exactly what they create."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from binwatch.database import METADATA, migrate
from core.sql import make_engine


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'var' / 'registry.db'}"


def test_migrated_schema_matches_models(tmp_path: Path) -> None:
    migrate(_url(tmp_path))
    engine = make_engine(_url(tmp_path))
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), METADATA)
    engine.dispose()
    assert diff == []


def test_migrate_twice_is_harmless(tmp_path: Path) -> None:
    migrate(_url(tmp_path))
    migrate(_url(tmp_path))
    engine = make_engine(_url(tmp_path))
    assert set(inspect(engine).get_table_names()) == {
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
        *("site_contacts", "alerts", "alert_events", "alert_deliveries", "bin_health"),
        *("api_keys", "mqtt_credentials"),
    }
    engine.dispose()
