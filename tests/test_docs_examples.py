"""The examples in the docs are run, so a page cannot drift from the code it describes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from binwatch.errors import FleetError
from devices.db import migrate, session_factory
from devices.fleet import import_fleet, load_fleet
from devices.models import Area, AreaContact, Bin, Operator, Site
from devices.registry import make_engine

DOCS = Path(__file__).resolve().parents[1] / "docs"


def read(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def code_blocks(page: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", read(page), flags=re.S | re.M)


def test_the_fleet_pages_example_imports_as_the_page_says(
    tmp_path: Path, registry_url: str
) -> None:
    (example,) = code_blocks("fleet.md", "yaml")
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


def test_the_fleet_pages_errors_are_what_the_loader_says(tmp_path: Path) -> None:
    (example,) = code_blocks("fleet.md", "yaml")
    (shown,) = code_blocks("fleet.md", "text")
    path = tmp_path / "my-city.yaml"
    broken = example.replace("lat: 29.5521", "lat: 129.5521")
    path.write_text(broken.replace("stream: hazardous", "stream: batteries"), encoding="utf-8")
    with pytest.raises(FleetError) as raised:
        load_fleet(path)
    said = [line.removeprefix(f"{tmp_path}/") for line in str(raised.value).splitlines()]
    assert said == shown.splitlines()


def test_the_fleet_pages_reference_error_is_what_the_loader_says(tmp_path: Path) -> None:
    (example,) = code_blocks("fleet.md", "yaml")
    shown = re.search(r"`(my-city.yaml:\d+: sites\[0\].operator: .*?)`", read("fleet.md"))
    assert shown is not None
    path = tmp_path / "my-city.yaml"
    path.write_text(example.replace("operator: op-lvyuan", "operator: op-lvyan"), encoding="utf-8")
    with pytest.raises(FleetError) as raised:
        load_fleet(path)
    assert str(raised.value) == f"{tmp_path}/{shown.group(1)}"
