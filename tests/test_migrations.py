"""The migrations are the schema; the domains' model modules must describe exactly what they create, on
SQLite and on PostgreSQL, whether a database is migrated from empty or from any earlier
revision, and every revision can be taken back; a registry with rows keeps them through every
upgrade, and through every downgrade all but those the downgrade says it deletes."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import Inspector
from typer.testing import CliRunner

from binwatch.cli import app
from binwatch.database import METADATA, MIGRATIONS, alembic_config, migrate
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


# --- Upgrading a registry that has data -------------------------------------------------------
# The tests above migrate empty databases; a city that ran an earlier release has rows. From each
# revision the registry is filled with rows valid at that revision (generated from the reflected
# schema: each column's type, nullability, foreign key and the values its checks allow), then
# upgraded to head: nothing may be lost or changed, and a column a revision adds holds, on the
# rows from before, the value the revision promises.

Row = dict[str, Any]
_ROWS = 3  # per table, at least; more where a check allows more values, so each one is there
_SCRIPT = Config()
_SCRIPT.set_main_option("script_location", MIGRATIONS)
REVISIONS = [
    r.revision for r in reversed(list(ScriptDirectory.from_config(_SCRIPT).walk_revisions()))
]

# Columns a revision adds NOT NULL, and what rows from before it get (its server default);
# every other column added later must be NULL on those rows (0014: "rows from before keep their
# text and no message").
PROMISED = {
    ("collection_events", "webhook_attempts"): 0,  # 0005: no webhook tried yet
    ("dead_letters", "bin_id"): "",  # 0006: letters from before name no bin
    ("dead_letters", "parts"): 1,  # 0006: each stands for one reading
    ("mqtt_credentials", "site_ids"): "",  # 0007: bin and service accounts have no sites
}


def _allowed(table: str, inspector: Inspector) -> dict[str, list[str]]:
    """The values each column's check constraints allow, where a check names one column and
    lists string literals ("kind IN ('a', 'b')"; PostgreSQL shows it as "= ANY (ARRAY[...])")."""
    columns = [c["name"] for c in inspector.get_columns(table)]
    allowed: dict[str, list[str]] = {}
    for check in inspector.get_check_constraints(table):
        text = check["sqltext"]
        named = [c for c in columns if re.search(rf"\b{c}\b", text)]
        literals = re.findall(r"'([^']*)'", text)
        if len(named) == 1 and literals:
            allowed[named[0]] = literals
    return allowed


def _value(column: sa.Column[Any], i: int, table: str) -> Any:
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return i % 2 == 0
    if isinstance(kind, sa.Integer):
        return i + 1 if column.primary_key else 10 + i
    if isinstance(kind, sa.Float):
        return 50.5 + i
    if isinstance(kind, sa.DateTime):
        return datetime(2026, 11, 1 + i, 8, 30, tzinfo=UTC)
    if isinstance(kind, sa.JSON):
        return [f"{table}-{i}", i]
    if isinstance(kind, sa.LargeBinary):
        return f'{{"seq": {i}}}'.encode()
    if isinstance(kind, sa.String):
        text = f"{i}-{table}.{column.name}"
        return text[: kind.length] if kind.length else text
    raise AssertionError(f"no filler for {table}.{column.name} of type {kind!r}")


def _fill(engine: Engine) -> dict[str, list[Row]]:
    """Rows valid at the registry's revision in every table, parents first."""
    metadata = sa.MetaData()
    with engine.begin() as connection:
        metadata.reflect(connection)
        inspector = inspect(connection)
        rows: dict[str, list[Row]] = {}
        for table in metadata.sorted_tables:
            if table.name == "alembic_version":
                continue
            allowed = _allowed(table.name, inspector)
            count = max([_ROWS, *(len(values) for values in allowed.values())])
            made: list[Row] = []
            for i in range(count):
                row: Row = {}
                for column in table.columns:
                    targets = [fk.column for fk in column.foreign_keys]
                    if targets and targets[0].table is table:  # a tree: the first row is its root
                        row[column.name] = made[0][targets[0].name] if made else None
                    elif targets:
                        parents = rows[targets[0].table.name]
                        row[column.name] = parents[i % len(parents)][targets[0].name]
                    elif column.name in allowed:
                        row[column.name] = allowed[column.name][i % len(allowed[column.name])]
                    else:
                        row[column.name] = _value(column, i, table.name)
                made.append(row)
            connection.execute(table.insert(), made)
            rows[table.name] = made
    return _snapshot(engine)


def _snapshot(engine: Engine) -> dict[str, list[Row]]:
    """Every row of every table, as the database gives them back."""
    metadata = sa.MetaData()
    with engine.connect() as connection:
        metadata.reflect(connection)
        return {
            table.name: [
                dict(row)
                for row in connection.execute(
                    sa.select(table).order_by(*table.primary_key)
                ).mappings()
            ]
            for table in metadata.sorted_tables
            if table.name != "alembic_version"
        }


def _key(table: str, row: Row, primary: dict[str, list[str]]) -> tuple[Any, ...]:
    return tuple(row[c] for c in primary[table])


def _kept(
    before: dict[str, list[Row]], after: dict[str, list[Row]], engine: Engine
) -> dict[str, set[tuple[Any, ...]]]:
    """Rows of `before` missing or changed in `after` (by table), or holding anything but the
    promised value in a column added since."""
    inspector = inspect(engine)
    primary = {t: inspector.get_pk_constraint(t)["constrained_columns"] for t in after}
    problems: dict[str, set[tuple[Any, ...]]] = {}
    for table, rows in before.items():
        if table not in after:
            continue  # dropped by a revision (only a downgrade does)
        now = {_key(table, row, primary): row for row in after[table]}
        for row in rows:
            key = _key(table, row, primary)
            found = now.get(key)
            added = {c: v for c, v in (found or {}).items() if c not in row}
            promised = {c: PROMISED.get((table, c)) for c in added}
            if found is None or {c: found[c] for c in row} != row or added != promised:
                problems.setdefault(table, set()).add(key)
    return problems


@pytest.mark.parametrize("start", REVISIONS[:-1])
def test_a_filled_registry_upgrades_to_head_keeping_its_rows(registry_url: str, start: str) -> None:
    engine = make_engine(registry_url)
    try:
        _step(engine, "upgrade", start)
        before = _fill(engine)
        assert all(before.values())
        _step(engine, "upgrade", "head")
        assert _revision(engine) == REVISIONS[-1]
        assert _kept(before, _snapshot(engine), engine) == {}
        # The schema it reaches is the models': the test from empty registries says so.
    finally:
        engine.dispose()


# What a revision's downgrade deletes, as its docstring and code say (the rows of the tables it
# drops go too, and the values of the columns it drops): by table, which rows, given the
# registry's rows before it.
DELETES: dict[str, Callable[[dict[str, list[Row]]], dict[str, Callable[[Row], bool]]]] = {
    "0015": lambda rows: {  # what the crew role made
        "users": lambda r: r["role"] == "crew",
        "api_keys": lambda r: r["role"] == "crew",
        "console_sessions": lambda r: (
            r["username"] in {u["username"] for u in rows["users"] if u["role"] == "crew"}
        ),
        "collection_events": lambda r: r["kind"] == "report",
    },
    "0010": lambda rows: {"api_keys": lambda r: r["role"] == "grid"},
    "0007": lambda rows: {"mqtt_credentials": lambda r: r["kind"] in ("manager", "admin")},
}


def test_a_filled_registry_downgrades_step_by_step(registry_url: str) -> None:
    """From head down to the first revision, one step at a time on a filled registry: each
    downgrade deletes what it says it does (DELETES) and keeps every other row; then back up."""
    engine = make_engine(registry_url)
    try:
        _step(engine, "upgrade", "head")
        filled = _fill(engine)
        with engine.begin() as connection:  # a crew member signed in on the console too
            crew = min(u["username"] for u in filled["users"] if u["role"] == "crew")
            session = {**filled["console_sessions"][0], "id": "crew-session", "username": crew}
            connection.execute(
                sa.table("console_sessions", *map(sa.column, session)).insert(), session
            )
        before = _snapshot(engine)
        for revision, previous in reversed(list(pairwise(REVISIONS))):
            deletes = DELETES.get(previous, lambda _: {})(before)
            assert all(any(map(deletes[t], before[t])) for t in deletes)  # each has rows to do
            _step(engine, "downgrade", revision)
            after = _snapshot(engine)
            inspector = inspect(engine)
            columns = {t: {c["name"] for c in inspector.get_columns(t)} for t in after}
            kept = {
                table: [
                    {c: v for c, v in row.items() if c in columns[table]}
                    for row in rows
                    if not deletes.get(table, lambda _: False)(row)
                ]
                for table, rows in before.items()
                if table in after
            }
            assert _kept(kept, after, engine) == {}, f"downgrade to {revision}"
            assert {t: len(r) for t, r in after.items()} == {t: len(r) for t, r in kept.items()}
            before = after
        _step(engine, "upgrade", "head")
        assert _differences(engine) == []
    finally:
        engine.dispose()


def test_sites_from_before_0016_name_no_depot_and_a_named_one_is_dropped_going_back(
    registry_url: str,
) -> None:
    """0016's `sites.depot_id`: the filled registry's sites keep no depot through the upgrade
    (they are planned from the nearest, as before); named, the depot goes with the column on the
    way back to 0015 and the sites stay; upgraded again, they name none."""
    engine = make_engine(registry_url)
    try:
        _step(engine, "upgrade", "0015")
        before = _fill(engine)
        _step(engine, "upgrade", "0016")
        assert {site["depot_id"] for site in _snapshot(engine)["sites"]} == {None}
        depot = before["depots"][0]["id"]
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE sites SET depot_id = :d"), {"d": depot})
        assert {site["depot_id"] for site in _snapshot(engine)["sites"]} == {depot}
        _step(engine, "downgrade", "0015")
        assert _snapshot(engine)["sites"] == before["sites"]
        _step(engine, "upgrade", "head")
        assert {site["depot_id"] for site in _snapshot(engine)["sites"]} == {None}
    finally:
        engine.dispose()
