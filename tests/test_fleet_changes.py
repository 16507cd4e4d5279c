"""A fleet that changes: partial files (checked against the registry, with file:line errors),
export that round-trips, and retiring and reinstating bins and sites (audited; left out of the
services' view and of the broker's files). SQLite only, no servers: the running services'
side is tests/test_fleet_live.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from alerts import store
from alerts.models import BinHealth
from binwatch.commands.fleet import fleet_app
from binwatch.database import migrate
from core.errors import FleetError, InvalidRequest, NotFound
from core.sql import make_engine, session_factory
from devices import retirement
from devices.fleet import default_fleet_path, import_fleet, known_ids, load_fleet
from devices.fleet_export import export_fleet
from devices.models import Area, Bin, Site
from devices.registry import bin_tags
from security import mqtt_auth

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
SITE = "sz-peoples-government"  # a pilot site in community xiaoba, served by op-lvyuan
BIN = f"{SITE}-s1-kitchen"

# Line numbers matter: the error cases assert them.
NEW_SITES = """\
sites:
  - id: new-garden
    name: New Garden
    type: compound
    community: xiaoba
    operator: op-lvyuan
    address: 9 New Road
    lat: 29.55
    lon: 103.76
    stations: 1
"""

NEW_AREAS = """\
districts:
  - id: shizhong
    streets:
      - id: lvxin
        communities:
          - {id: new-community, name: New Community}
  - id: new-district
    name: New District
    streets:
      - id: new-street
        name: New Street
        communities: []
sites:
  - id: new-school
    name: New School
    type: school
    community: new-community
    operator: op-lvyuan
    address: 1 School Road
    lat: 29.56
    lon: 103.77
    stations: 0
    capacity_l: 120
    bins:
      - {id: new-school-lab, stream: hazardous, station: lab, threshold_pct: 50}
      - {id: new-school-yard, stream: kitchen, station: yard, capacity_l: 660}
"""


# An area's contact (given by id alone) and an operator with a webhook.
CONTACTS = """\
operators:
  - {id: op-new, name: New Operations, webhook_url: "https://ops.example.com/hook"}
districts:
  - id: shizhong
    contact: {mqtt_topic: city/shizhong/squad}
    streets: []
"""


def _url(tmp_path: Path, name: str = "registry") -> str:
    return f"sqlite:///{tmp_path / 'var' / f'{name}.db'}"


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    """The registry with the pilot fleet."""
    url = _url(tmp_path)
    migrate(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        import_fleet(session, load_fleet(default_fleet_path()))
        yield session
    engine.dispose()


def _write(tmp_path: Path, text: str, name: str = "part.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _import_partial(session: Session, path: Path) -> tuple[int, int, int]:
    summary = import_fleet(session, load_fleet(path, known=known_ids(session)))
    return summary.created, summary.updated, summary.unchanged


# --- partial files -----------------------------------------------------------------------------


def test_a_file_of_sites_alone_goes_under_the_registrys_areas_and_operators(
    session: Session, tmp_path: Path
) -> None:
    path = _write(tmp_path, NEW_SITES)
    before = len(bin_tags(session))
    created, updated, _ = _import_partial(session, path)
    assert (created, updated) == (5, 0)  # the site and its station's 4 bins
    tags = bin_tags(session)["new-garden-s1-kitchen"]
    assert (tags.community, tags.street, tags.operator) == ("xiaoba", "lvxin", "op-lvyuan")
    assert len(bin_tags(session)) == before + 4
    assert _import_partial(session, path)[:2] == (0, 0)  # idempotent


def test_new_areas_hang_under_areas_named_by_id_alone_which_stay_as_they_are(
    session: Session, tmp_path: Path
) -> None:
    street_name = session.get_one(Area, "lvxin").name
    created, updated, _ = _import_partial(session, _write(tmp_path, NEW_AREAS))
    assert (created, updated) == (6, 0)  # community, district, street, site, 2 bins
    assert session.get_one(Area, "lvxin").name == street_name
    assert session.get_one(Area, "new-community").parent_id == "lvxin"
    # No `city` in the file: the new district hangs under the registry's city.
    assert session.get_one(Area, "new-district").parent_id == "pilot-city"
    lab = session.get_one(Bin, "new-school-lab")
    assert (lab.threshold_pct, lab.capacity_l) == (50.0, 120)
    assert _import_partial(session, _write(tmp_path, NEW_AREAS))[:2] == (0, 0)


def test_references_neither_in_the_file_nor_the_registry_are_errors_with_their_line(
    session: Session, tmp_path: Path
) -> None:
    text = (
        NEW_AREAS.replace("  - id: shizhong", "  - id: nowhere")
        .replace("      - id: lvxin", "      - id: xiaoba")
        .replace("operator: op-lvyuan", "operator: op-ghost")
    )
    path = _write(tmp_path, text)
    with pytest.raises(FleetError) as raised:
        load_fleet(path, known=known_ids(session))
    assert str(raised.value).splitlines() == [
        f"{path}:2: districts[0].id: district 'nowhere' is not in the registry: give its name"
        " to create it",
        f"{path}:4: districts[0].streets[0].id: 'xiaoba' is a community in the registry, not a"
        " street",
        f"{path}:18: sites[0].operator: unknown operator 'op-ghost' (neither under operators nor"
        " in the registry)",
    ]
    moved = NEW_AREAS.replace("  - id: shizhong", "  - id: high-tech")
    with pytest.raises(FleetError, match=r":4: .*'lvxin' is under 'shizhong' in the registry"):
        load_fleet(_write(tmp_path, moved), known=known_ids(session))
    unknown = NEW_SITES.replace("community: xiaoba", "community: atlantis")
    with pytest.raises(FleetError, match=r":5: .*'atlantis' \(no community in the file or the"):
        load_fleet(_write(tmp_path, unknown), known=known_ids(session))


def test_the_cli_checks_and_imports_a_partial_file_against_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BINWATCH_DATABASE_URL", _url(tmp_path, "cli"))
    runner = CliRunner()
    path = _write(tmp_path, NEW_SITES)
    alone = runner.invoke(fleet_app, ["show", str(path)])  # no registry yet: nothing to refer to
    flat = " ".join(alone.output.split())  # rich wraps long lines
    assert alone.exit_code == 1 and "no registry to refer to" in flat
    assert ":5: sites[0].community: unknown community 'xiaoba'" in flat
    assert runner.invoke(fleet_app, ["import"]).exit_code == 0
    shown = runner.invoke(fleet_app, ["show", str(path)])
    assert shown.exit_code == 0, shown.output
    imported = runner.invoke(fleet_app, ["import", str(path)])
    assert imported.exit_code == 0, imported.output
    assert "│ bins      │ 4 " in imported.output


# --- export ------------------------------------------------------------------------------------


def test_export_round_trips_through_an_empty_registry_and_changes_nothing_in_its_own(
    session: Session, tmp_path: Path
) -> None:
    _import_partial(session, _write(tmp_path, NEW_AREAS))
    _import_partial(session, _write(tmp_path, CONTACTS, "contacts.yaml"))
    odd = session.get_one(Bin, f"{SITE}-s1-recyclable")
    odd.threshold_pct = 90.0  # no longer what `stations` makes: listed by hand in the export
    session.commit()
    exported = _write(tmp_path, export_fleet(session), "exported.yaml")

    again = import_fleet(session, load_fleet(exported, known=known_ids(session)))
    assert (again.created, again.updated) == (0, 0)

    url = _url(tmp_path, "empty")
    migrate(url)
    engine = make_engine(url)
    with session_factory(engine)() as empty:
        import_fleet(empty, load_fleet(exported))
        assert export_fleet(empty) == exported.read_text(encoding="utf-8")
        copied = {b.id: (b.site_id, b.station, b.capacity_l, b.threshold_pct) for b in
                  empty.scalars(select(Bin))}  # fmt: skip
    engine.dispose()
    original = {b.id: (b.site_id, b.station, b.capacity_l, b.threshold_pct) for b in
                session.scalars(select(Bin))}  # fmt: skip
    assert copied == original
    text = exported.read_text(encoding="utf-8")
    assert f"- id: {SITE}-s1-recyclable" in text and "threshold_pct: 90.0" in text
    assert "mqtt_topic: city/shizhong/squad" in text and "https://ops.example.com/hook" in text
    assert "- id: lvyuan-kitchen-1" in text and "depot: lvyuan-yard" in text  # the operators' side


def test_export_through_the_cli(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BINWATCH_DATABASE_URL", _url(tmp_path))
    out = tmp_path / "city.yaml"
    done = CliRunner().invoke(fleet_app, ["export", str(out)])
    assert done.exit_code == 0, done.output
    assert out.read_text(encoding="utf-8") == export_fleet(session)


# --- retiring and reinstating ------------------------------------------------------------------


def test_a_retired_site_retires_its_bins_and_reinstating_brings_back_those_not_retired_alone(
    session: Session,
) -> None:
    site_bins = {b.id for b in session.get_one(Site, SITE).bins}
    retirement.retire(session, "bin", BIN, actor="li.wei", note="lid broken", now=NOW)
    assert retirement.retired_bin_ids(session) == {BIN}
    retirement.retire(session, "site", SITE, actor="li.wei", note="rebuilt", now=NOW)
    assert retirement.retired_bin_ids(session) == site_bins
    assert not site_bins & set(bin_tags(session, in_service_only=True))
    assert site_bins <= set(bin_tags(session))  # kept for history

    later = NOW + timedelta(days=3)
    retirement.reinstate(session, "site", SITE, actor="zhang.min", note="reopened", now=later)
    assert retirement.retired_bin_ids(session) == {BIN}
    assert session.get_one(Bin, f"{SITE}-s1-residual").reinstated_at == later
    assert [(e.action, e.target, e.target_id, e.actor, e.note, e.at) for e in
            retirement.history(session)] == [
        ("retired", "bin", BIN, "li.wei", "lid broken", NOW),
        ("retired", "site", SITE, "li.wei", "rebuilt", NOW),
        ("reinstated", "site", SITE, "zhang.min", "reopened", later),
    ]  # fmt: skip


def test_importing_a_file_never_retires_or_reinstates(session: Session, tmp_path: Path) -> None:
    retirement.retire(session, "site", SITE, actor="a", note="n", now=NOW)
    exported = _write(tmp_path, export_fleet(session), "exported.yaml")
    assert f"- id: {SITE}\n" in exported.read_text(encoding="utf-8")  # still in the registry
    import_fleet(session, load_fleet(default_fleet_path()))
    import_fleet(session, load_fleet(exported))
    assert session.get_one(Site, SITE).retired_at == NOW


def test_retiring_twice_reinstating_what_is_in_service_and_unknown_ids_are_refused(
    session: Session,
) -> None:
    retirement.retire(session, "bin", BIN, actor="a", note="n", now=NOW)
    with pytest.raises(InvalidRequest, match="already retired"):
        retirement.retire(session, "bin", BIN, actor="a", note="n", now=NOW)
    with pytest.raises(InvalidRequest, match="is not retired"):
        retirement.reinstate(session, "site", SITE, actor="a", note="n", now=NOW)
    with pytest.raises(NotFound, match="no site with id 'nowhere'"):
        retirement.retire(session, "site", "nowhere", actor="a", note="n", now=NOW)
    with pytest.raises(InvalidRequest, match="who does it and why"):
        retirement.reinstate(session, "bin", BIN, actor="a", note="  ", now=NOW)
    assert len(retirement.history(session)) == 1
    assert retirement.retired_bin_ids(session) == {BIN}


def test_retire_reinstate_and_history_through_the_cli(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BINWATCH_DATABASE_URL", _url(tmp_path))
    runner = CliRunner()
    say = ["--note", "compound closed", "--by", "li.wei"]
    done = runner.invoke(fleet_app, ["retire", "--site", SITE, *say])
    assert done.exit_code == 0, done.output
    assert f"site {SITE} retired" in done.output
    twice = runner.invoke(fleet_app, ["retire", "--site", SITE, *say])
    assert twice.exit_code == 1 and "already retired" in twice.output
    both = runner.invoke(fleet_app, ["retire", "--site", SITE, "--bin", BIN, *say])
    assert both.exit_code == 2 and "exactly one of --bin and --site" in both.output
    no_note = runner.invoke(fleet_app, ["retire", "--bin", BIN, "--by", "li.wei"])
    assert no_note.exit_code == 2 and "--note" in no_note.output
    back = runner.invoke(fleet_app, ["reinstate", "--site", SITE, "--note", "open", "--by", "x"])
    assert back.exit_code == 0, back.output
    history = runner.invoke(fleet_app, ["history", SITE])
    assert history.exit_code == 0
    assert "retired" in history.output and "reinstated" in history.output
    assert "compound closed" in history.output


def test_a_retired_bins_mqtt_account_is_left_out_of_the_broker_files_until_reinstated(
    session: Session,
) -> None:
    mqtt_auth.issue(session, BIN, now=NOW)
    other = f"{SITE}-s1-residual"
    mqtt_auth.issue(session, other, now=NOW)
    retirement.retire(session, "bin", BIN, actor="a", note="n", now=NOW)
    passwords, acl = mqtt_auth.password_text(session), mqtt_auth.acl_text(session, "p")
    assert f"{BIN}:" not in passwords and f"user {BIN}\n" not in acl
    assert f"{other}:" in passwords and f"user {other}\n" in acl
    # Retired bins get no new account either; the account itself is kept.
    assert BIN not in {issued.username for issued in mqtt_auth.issue_missing_bins(session, now=NOW)}
    retirement.reinstate(session, "bin", BIN, actor="a", note="n", now=NOW)
    assert f"{BIN}:" in mqtt_auth.password_text(session)
    assert f"user {BIN}\n" in mqtt_auth.acl_text(session, "p")


def test_the_alerter_does_not_watch_retired_bins_and_counts_silence_from_reinstatement(
    session: Session,
) -> None:
    silent_for = timedelta(minutes=3)
    long_ago = NOW - timedelta(hours=1)
    other = f"{SITE}-s1-residual"
    session.add_all(
        [
            BinHealth(bin_id=BIN, last_seen_at=long_ago, full_since=long_ago),
            BinHealth(bin_id=other, last_seen_at=long_ago, full_since=long_ago),
        ]
    )
    session.commit()

    def watched() -> tuple[set[str], set[str]]:
        silent = {row.bin_id for row in store.silent_bins(session, NOW - silent_for)}
        full = {row.bin_id for row in store.full_since_before(session, NOW - silent_for)}
        return silent, full

    assert watched() == ({BIN, other}, {BIN, other})
    retirement.retire(session, "bin", BIN, actor="a", note="n", now=NOW - timedelta(minutes=30))
    assert watched() == ({other}, {other})
    retirement.retire(session, "site", SITE, actor="a", note="n", now=NOW - timedelta(minutes=20))
    assert watched() == (set(), set())
    retirement.reinstate(session, "site", SITE, actor="a", note="n", now=NOW - timedelta(minutes=1))
    # Back a minute ago: not silent for 3 minutes yet, though its last reading is an hour old.
    assert watched() == (set(), {other})
    assert store.silent_bins(session, NOW + timedelta(minutes=5) - silent_for)[0].bin_id == other
