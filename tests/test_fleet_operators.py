"""The operators' side of the fleet file (depots, vehicles, crews): every mistake reported with
its line, references to depots and vehicles checked against the file and the registry (and
against the operator that owns them), and importing twice changes nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from binwatch.database import migrate
from core.errors import FleetError
from core.sql import make_engine, session_factory
from devices.fleet import default_fleet_path, import_fleet, known_ids, load_fleet
from devices.fleet_export import export_fleet
from devices.models import Site, Vehicle

HEAD = """\
operators:
  - {id: op-a, name: A}
  - {id: op-b, name: B}
depots:
  - {id: yard-a, operator: op-a, name: Yard A, lat: 29.55, lon: 103.76}
  - {id: yard-b, operator: op-b, name: Yard B, lat: 29.56, lon: 103.77}
vehicles:
"""
GOOD_VEHICLE = """\
  - id: truck-1
    operator: op-a
    depot: yard-a
    name: Truck 1
    streams: [kitchen]
    capacity_l: 6000
    shift: {start: "07:00", end: "15:00"}
    breaks: [{start: "11:00", end: "13:00", minutes: 30}]
crews:
  - {id: crew-1, operator: op-a, name: Crew 1, vehicle: truck-1}
"""


def _load(tmp_path: Path, text: str) -> str:
    path = tmp_path / "city.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FleetError) as refused:
        load_fleet(path)
    return str(refused.value)


def test_a_good_operator_side_loads(tmp_path: Path) -> None:
    path = tmp_path / "city.yaml"
    path.write_text(HEAD + GOOD_VEHICLE, encoding="utf-8")
    fleet = load_fleet(path)
    (truck,) = fleet.vehicles
    assert (truck.capacity_l, truck.capacity_kg, truck.breaks[0].minutes) == (6000, None, 30)
    assert fleet.crews[0].vehicle == "truck-1"


@pytest.mark.parametrize(
    ("change", "line", "expected"),
    [
        (("depot: yard-a", "depot: yard-x"), 10, "vehicles[0].depot: unknown depot 'yard-x'"),
        (
            ("depot: yard-a", "depot: yard-b"),
            10,
            "depot 'yard-b' belongs to operator 'op-b', not 'op-a'",
        ),
        (
            ("capacity_l: 6000", "capacity_l: 0"),
            13,
            "vehicles[0].capacity_l: Input should be greater than 0",
        ),
        (
            ("    capacity_l: 6000\n", ""),
            8,
            "vehicles[0]: give capacity_l, capacity_kg or both",
        ),
        (("[kitchen]", "[kitchen, glass]"), 12, "vehicles[0].streams[1]: Input should be"),
        (('end: "15:00"', 'end: "06:00"'), 14, "the shift ends (06:00) before it starts (07:00)"),
        (
            ('end: "13:00", minutes: 30', 'end: "16:00", minutes: 30'),
            8,
            "the break 11:00–16:00 is outside the shift",
        ),
        (
            ("minutes: 30", "minutes: 180"),
            15,
            "a 180-minute break does not fit between 11:00 and 13:00",
        ),
        (
            ("vehicle: truck-1", "vehicle: truck-9"),
            17,
            "crews[0].vehicle: unknown vehicle 'truck-9'",
        ),
        (
            ("operator: op-a, name: Crew", "operator: op-z, name: Crew"),
            17,
            "unknown operator 'op-z'",
        ),
    ],
)
def test_mistakes_are_reported_with_their_line(
    tmp_path: Path, change: tuple[str, str], line: int, expected: str
) -> None:
    message = _load(tmp_path, HEAD + GOOD_VEHICLE.replace(*change))
    assert f"city.yaml:{line}: " in message and expected in message, message


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    migrate(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        yield session
    engine.dispose()


def test_importing_twice_changes_nothing_and_a_partial_file_uses_the_registrys_depots(
    session: Session, tmp_path: Path
) -> None:
    first = import_fleet(session, load_fleet(default_fleet_path()))
    assert (first.depots.created, first.vehicles.created, first.crews.created) == (2, 6, 6)
    again = import_fleet(session, load_fleet(default_fleet_path()))
    assert (again.created, again.updated) == (0, 0)
    partial = tmp_path / "more.yaml"
    partial.write_text(
        "vehicles:\n"
        "  - {id: lvyuan-kitchen-2, operator: op-lvyuan, depot: lvyuan-yard, name: Kitchen 2,\n"
        "     streams: [kitchen], capacity_kg: 2500, shift: {start: '06:00', end: '14:00'}}\n"
        "  - {id: stray, operator: op-lvyuan, depot: jiejing-transfer, name: Stray,\n"
        "     streams: [kitchen], capacity_kg: 2500, shift: {start: '06:00', end: '14:00'}}\n",
        encoding="utf-8",
    )
    with pytest.raises(
        FleetError, match=re.escape("more.yaml:4: vehicles[1].depot: depot 'jiejing-transfer'")
    ):
        load_fleet(partial, known=known_ids(session))
    partial.write_text("\n".join(partial.read_text().splitlines()[:3]) + "\n", encoding="utf-8")
    added = import_fleet(session, load_fleet(partial, known=known_ids(session)))
    assert (added.vehicles.created, added.created) == (1, 1)
    assert session.get_one(Vehicle, "lvyuan-kitchen-2").capacity_l is None


# A site naming the depot whose district it is in. Line numbers matter: the cases assert them.
DISTRICTS = """\
districts:
  - id: d1
    name: District 1
    streets:
      - id: s1
        name: Street 1
        communities: [{id: c1, name: Community 1}]
sites:
  - {id: garden, name: Garden, type: compound, community: c1, operator: op-a,
     address: 1 Road, lat: 29.55, lon: 103.76, depot: yard-a}
  - {id: school, name: School, type: school, community: c1, operator: op-b,
     address: 2 Road, lat: 29.56, lon: 103.77}
"""


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("depot: yard-a", "depot: yard-x"), "sites[0].depot: unknown depot 'yard-x'"),
        (
            ("depot: yard-a", "depot: yard-b"),
            "sites[0].depot: depot 'yard-b' belongs to operator 'op-b', not 'op-a'",
        ),
    ],
)
def test_a_sites_depot_must_be_one_of_its_operators(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    message = _load(tmp_path, HEAD + GOOD_VEHICLE + DISTRICTS.replace(*change))
    assert f"city.yaml:27: {expected}" in message, message


def test_a_sites_depot_imports_once_exports_and_round_trips(
    session: Session, tmp_path: Path
) -> None:
    path = tmp_path / "city.yaml"
    path.write_text(HEAD + GOOD_VEHICLE + DISTRICTS, encoding="utf-8")
    first = import_fleet(session, load_fleet(path))
    assert (first.sites.created, first.depots.created) == (2, 2)
    assert session.get_one(Site, "garden").depot_id == "yard-a"
    assert session.get_one(Site, "school").depot_id is None  # the nearest depot, as before
    again = import_fleet(session, load_fleet(path, known=known_ids(session)))
    assert (again.created, again.updated) == (0, 0)
    exported = export_fleet(session)
    assert "- id: garden\n" in exported and "  depot: yard-a\n" in exported
    assert exported.count("depot: yard-a") == 2  # the garden's and the truck's; none for the school
    path.write_text(exported, encoding="utf-8")
    assert import_fleet(session, load_fleet(path, known=known_ids(session))).updated == 0
    moved = path.read_text(encoding="utf-8").replace("  depot: yard-a\n  address", "  address")
    path.write_text(moved, encoding="utf-8")
    assert import_fleet(session, load_fleet(path, known=known_ids(session))).sites.updated == 1
    assert session.get_one(Site, "garden").depot_id is None  # the file says none now
