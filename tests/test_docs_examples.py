"""The examples in the docs are run, so a page cannot drift from the code it describes."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlalchemy import func, select
from typer.testing import CliRunner

from binwatch.cli import app
from binwatch.database import migrate
from core.errors import FleetError
from core.settings import env_names
from core.sql import make_engine, session_factory
from devices.contract import (
    DEPOSITS_MAX,
    SEQ_MAX,
    TEMP_C_MAX,
    TEMP_C_MIN,
    WEIGHT_KG_MAX,
    Event,
    Reading,
    Status,
)
from devices.fleet import Known, import_fleet, known_ids, load_fleet
from devices.models import Area, AreaContact, Bin, DeadLetter, Operator, Site
from devices.registry import add_dead_letters
from ingest.decode import REASONS

DOCS = Path(__file__).resolve().parents[1] / "docs"


def read(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def code_blocks(page: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", read(page), flags=re.S | re.M)


def test_the_fleet_pages_example_imports_as_the_page_says(
    tmp_path: Path, registry_url: str
) -> None:
    example, _partial, _operators = code_blocks("fleet.md", "yaml")
    path = tmp_path / "my-city.yaml"
    path.write_text(example, encoding="utf-8")
    fleet = load_fleet(path)

    url = registry_url
    migrate(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        import_fleet(session, fleet)
        session.commit()
        count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
        assert count(Area) == 4  # the city and the 3 areas under it
        assert count(Operator) == 1 and count(Site) == 1 and count(AreaContact) == 2
        bins = set(session.scalars(select(Bin.id)))
    engine.dispose()
    assert len(bins) == 9
    assert {"jiazhou-shuian-s1-recyclable", "jiazhou-shuian-s2-residual"} <= bins
    assert "jiazhou-shuian-gate-hazardous" in bins


def test_the_fleet_pages_partial_file_adds_what_the_page_says(tmp_path: Path) -> None:
    example, partial, _operators = code_blocks("fleet.md", "yaml")
    (tmp_path / "my-city.yaml").write_text(example, encoding="utf-8")
    (tmp_path / "more.yaml").write_text(partial, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    migrate(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        import_fleet(session, load_fleet(tmp_path / "my-city.yaml"))
        with pytest.raises(
            FleetError, match=r"more\.yaml:2: .*district .shizhong. is not in the reg"
        ):
            load_fleet(tmp_path / "more.yaml")  # alone, it refers to what is not there
        more = load_fleet(tmp_path / "more.yaml", known=known_ids(session))
        added = import_fleet(session, more)
        again = import_fleet(session, more)
        tongjiang = session.get_one(Area, "tongjiang")
        bins = set(session.scalars(select(Bin.id).where(Bin.site_id == "tongjiang-garden")))
    engine.dispose()
    # "one community and one site with 4 bins, and changes nothing else"
    assert (added.areas.created, added.sites.created, added.bins.created) == (1, 1, 4)
    assert added.updated == 0 and added.created == 6
    assert again.created == again.updated == 0
    assert tongjiang.parent_id == "lvxin" and len(bins) == 4


def test_the_fleet_pages_operator_side_adds_what_the_page_says(tmp_path: Path) -> None:
    example, _partial, operators = code_blocks("fleet.md", "yaml")
    (tmp_path / "my-city.yaml").write_text(example, encoding="utf-8")
    (tmp_path / "operators.yaml").write_text(operators, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    migrate(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        import_fleet(session, load_fleet(tmp_path / "my-city.yaml"))
        side = load_fleet(tmp_path / "operators.yaml", known=known_ids(session))
        added = import_fleet(session, side)
        again = import_fleet(session, side)
    engine.dispose()
    # "one depot, two vehicles and two crews; importing it again changes nothing"
    assert (added.depots.created, added.vehicles.created, added.crews.created) == (1, 2, 2)
    assert added.created == 5 and added.updated == 0
    assert again.created == again.updated == 0
    shown = re.search(r"`(vehicles\[0\]\.depot: depot .*?)`", read("fleet.md"))
    assert shown is not None
    # the page's error: the first vehicle sent from another company's transfer station
    stray = operators.replace("depot: lvyuan-yard", "depot: jiejing-transfer", 1)
    path = tmp_path / "stray.yaml"
    path.write_text(stray, encoding="utf-8")
    known = Known(operators=frozenset({"op-lvyuan"}), depots={"jiejing-transfer": "op-jiejing"})
    with pytest.raises(FleetError) as raised:
        load_fleet(path, known=known)
    assert shown.group(1) in str(raised.value)


def test_the_fleet_pages_site_depot_error_is_what_the_loader_says(tmp_path: Path) -> None:
    example, _partial, _operators = code_blocks("fleet.md", "yaml")
    shown = re.search(r"`(sites\[0\]\.depot: depot .*?)`", read("fleet.md"))
    assert shown is not None
    path = tmp_path / "my-city.yaml"
    known = Known(depots={"jiejing-transfer": "op-jiejing", "lvyuan-yard": "op-lvyuan"})
    # the compound of the small complete file, served from another company's transfer station
    for depot in ("jiejing-transfer", "lvyuan-yard"):
        named = f"    operator: op-lvyuan\n    depot: {depot}\n"
        path.write_text(example.replace("    operator: op-lvyuan\n", named), encoding="utf-8")
        if depot == "jiejing-transfer":
            with pytest.raises(FleetError) as raised:
                load_fleet(path, known=known)
            assert str(raised.value) == f"{path}:21: {shown.group(1)}"
        else:  # the page's own yard
            assert load_fleet(path, known=known).sites[0].depot == depot


def test_the_fleet_pages_errors_are_what_the_loader_says(tmp_path: Path) -> None:
    example, _partial, _operators = code_blocks("fleet.md", "yaml")
    (shown,) = code_blocks("fleet.md", "text")
    path = tmp_path / "my-city.yaml"
    broken = example.replace("lat: 29.5521", "lat: 129.5521")
    path.write_text(broken.replace("stream: hazardous", "stream: batteries"), encoding="utf-8")
    with pytest.raises(FleetError) as raised:
        load_fleet(path)
    said = [line.removeprefix(f"{tmp_path}/") for line in str(raised.value).splitlines()]
    assert said == shown.splitlines()


def test_the_fleet_pages_reference_error_is_what_the_loader_says(tmp_path: Path) -> None:
    example, _partial, _operators = code_blocks("fleet.md", "yaml")
    shown = re.search(r"`(my-city.yaml:\d+: sites\[0\].operator: .*?)`", read("fleet.md"))
    assert shown is not None
    path = tmp_path / "my-city.yaml"
    path.write_text(example.replace("operator: op-lvyuan", "operator: op-lvyan"), encoding="utf-8")
    with pytest.raises(FleetError) as raised:
        load_fleet(path)
    assert str(raised.value) == f"{tmp_path}/{shown.group(1)}"


def _section_of(page: str, block: str) -> str:
    text = read(page)
    return re.findall(r"^## (.*)$", text[: text.index(block)], flags=re.M)[-1]


def test_every_example_of_the_device_contract_is_valid_for_its_topic() -> None:
    blocks = code_blocks("device-contract.md", "json")
    models: dict[str, type[BaseModel]] = {"A reading": Reading, "An event": Event, "Status": Status}
    checked = 0
    for block in blocks:
        section = _section_of("device-contract.md", block)
        model = next(m for title, m in models.items() if section.startswith(title))
        document = json.loads(block)
        for element in document if isinstance(document, list) else [document]:
            model.model_validate_json(json.dumps(element))
            checked += 1
    assert checked >= 6  # two readings, an offline array of two, an event, a status


def test_the_device_contracts_bounds_are_the_models() -> None:
    text = read("device-contract.md")
    assert f"0 … {DEPOSITS_MAX:,}" in text and f"0 … {WEIGHT_KG_MAX:,.0f}" in text
    assert f"{TEMP_C_MIN:.0f} … {TEMP_C_MAX:,.0f}".replace("-", "−") in text
    assert SEQ_MAX == 2**53 - 1 and "2⁵³ − 1" in text
    for field in Reading.model_fields:
        assert f"| `{field}` |" in text, f"the reading table misses {field}"


def test_the_reasons_a_bin_can_cause_are_ingests_reasons() -> None:
    text = read("device-contract.md")
    table = text[text.index("| reason | what is wrong |") : text.index("The city's administrator")]
    named = set(re.findall(r"^\| (`[a-z_]+`(?:, `[a-z_]+`)*) \|", table, flags=re.M))
    named = {reason.strip("`") for cell in named for reason in cell.split(", ")}
    assert named and named <= set(REASONS), named - set(REASONS)


def test_dead_letters_are_listed_per_bin(registry_url: str) -> None:
    url = registry_url
    migrate(url)
    engine = make_engine(url)
    now = datetime.now(UTC)
    with session_factory(engine)() as session:
        add_dead_letters(
            session,
            [
                DeadLetter(
                    received_at=now,
                    topic=f"binwatch/v1/bins/{bin_id}/telemetry",
                    reason="out_of_range",
                    detail=f"fill_pct of {bin_id}",
                    payload=b"{}",
                    payload_size=2,
                    bin_id=bin_id,
                )
                for bin_id in ("bin-a", "bin-b", "bin-a")
            ],
        )
    engine.dispose()
    shown = CliRunner().invoke(
        app,
        ["deadletters", "list", "--bin", "bin-a"],
        env={"BINWATCH_DATABASE_URL": url, "COLUMNS": "200"},
    )
    assert shown.exit_code == 0, shown.output
    assert shown.output.count("fill_pct of bin-a") == 2 and "bin-b" not in shown.output


def test_the_architecture_diagram_is_the_import_contract() -> None:
    """docs/architecture.md draws the layers that import-linter enforces, in the same order."""
    contracts = tomllib.loads((DOCS.parent / "pyproject.toml").read_text(encoding="utf-8"))
    layers = contracts["tool"]["importlinter"]["contracts"][0]["layers"]
    text = read("architecture.md")
    diagram = text[text.index("## Layers") :].split("```")[1]
    drawn = []
    for line in diagram.splitlines():
        row = " | ".join(cell.split()[0] for cell in line.strip(" │").split("│") if cell.strip())
        if row in layers:
            drawn.append(row)
    assert drawn == layers


def test_the_deployment_page_names_only_settings_that_exist() -> None:
    """Every BINWATCH_* variable docs/deployment.md tells an operator to set is a setting (the
    tests' own BINWATCH_TEST_* aside), so a renamed setting cannot leave the page behind."""
    named = set(re.findall(r"\bBINWATCH_[A-Z0-9_]*[A-Z0-9]\b", read("deployment.md")))
    settings = {f"BINWATCH_{name.upper()}" for name in env_names()}
    assert "BINWATCH_INGEST_FIRST_WORKER" in named
    assert {n for n in named if not n.startswith("BINWATCH_TEST_")} - settings == set()
