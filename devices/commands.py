"""`binwatch fleet …`: put the city's fleet file into the registry, or see what a file holds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from binwatch.errors import FleetError
from binwatch.settings import Settings
from devices.contract import SiteType, Stream
from devices.db import migrate, session_factory
from devices.fleet import Fleet, default_fleet_path, import_fleet, load_fleet
from devices.registry import make_engine

fleet_app = typer.Typer(help="The fleet file: areas, operators, sites and bins of the pilot.")

FleetFile = Annotated[
    Path | None,
    typer.Argument(
        help="fleet YAML file (default: the pilot fleet shipped with binwatch)",
        exists=True,
        dir_okay=False,
    ),
]


@fleet_app.command("import")
def import_command(file: FleetFile = None) -> None:
    """Create or update the registry from FILE. Safe to repeat; deletes nothing."""
    settings = Settings()
    fleet = _load_or_exit(file)
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            summary = import_fleet(session, fleet)
    finally:
        engine.dispose()
    table = Table("kind", "created", "updated", "unchanged", title=f"imported into {engine.url!r}")
    for kind, counts in summary.by_kind().items():
        table.add_row(kind, str(counts.created), str(counts.updated), str(counts.unchanged))
    Console().print(table)


@fleet_app.command("show")
def show_command(file: FleetFile = None) -> None:
    """Check FILE and count what it holds, without touching the registry."""
    fleet = _load_or_exit(file)
    table = Table("what", "count", title=(file or default_fleet_path()).name)
    for what, count in _counts(fleet).items():
        table.add_row(what, str(count))
    Console().print(table)


def _load_or_exit(file: Path | None) -> Fleet:
    try:
        return load_fleet(file or default_fleet_path())
    except FleetError as exc:
        Console(stderr=True).print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None


def _counts(fleet: Fleet) -> dict[str, int]:
    kinds = Counter(kind for _loc, _area, kind, _parent in fleet.areas())
    sites = Counter(site.type for site in fleet.sites)
    bins = Counter(planned.stream for site in fleet.sites for planned in site.planned_bins())
    return {
        "districts": kinds["district"],
        "streets": kinds["street"],
        "communities": kinds["community"],
        **{f"sites: {site_type.value}": sites[site_type] for site_type in SiteType},
        **{f"bins: {stream.value}": bins[stream] for stream in Stream},
        "operators": len(fleet.operators),
    }
