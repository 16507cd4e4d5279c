"""`binwatch grafana`: puts binwatch's Grafana setup into a Grafana that already runs, and writes
the site coordinates the city map needs into InfluxDB.

docker-compose provisions Grafana from files (`dashboards/provisioning/`); a Grafana run by
someone else cannot mount them, so `push` sends the same things over Grafana's HTTP API: the
folder, the datasource (built from the provisioning file itself, so the two cannot drift) and
every dashboard JSON. It reads before it writes and writes only what differs, so a second push
changes nothing. This module is the Grafana boundary: grafana-client's exceptions (and the
`OSError`s of the HTTP library under it) become `GrafanaError` here and nowhere else.

`sites` copies each site's coordinates and grid tags from the registry into the InfluxDB
measurement `sites`, because InfluxQL cannot join across databases and the geomap panel can only
join what one datasource returns. It also writes `policy_ranges`: which retention policy serves
which length of time range, which the dashboards' hidden `rp` variable selects from with Grafana's
`${__from}` and `${__to}`, so long ranges read the hourly rollups and short ones raw readings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import yaml
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import BinwatchError, SinkError
from core.influx import InfluxClient, quote_ident
from core.lineprotocol import FieldValue, point, tag_set
from core.settings import Settings, url_problem
from core.sql import database_engine
from core.telemetry import RAW_RP, ROLLUP_RP, SITE_TAG_KEYS
from devices.models import Site
from devices.registry import bin_tags

REPO_DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"  # in a checkout
DATASOURCE_FILE = Path("provisioning/datasources/binwatch.yaml")
# What `push` takes from the provisioning file. Not `isDefault`: in a Grafana that serves other
# teams it would take the default away from their datasource, and the dashboards name ours by
# uid anyway. Not `editable`, which only provisioning knows.
DATASOURCE_KEYS = ("name", "uid", "type", "access", "url", "user", "jsonData")
# Grafana numbers what it stores; those two say nothing about the content.
DASHBOARD_BOOKKEEPING = ("id", "version")
# A Grafana on the same network answers in milliseconds; dashboards are a few dozen KiB.
GRAFANA_TIMEOUT_S = 30.0

# Site coordinates change only when the registry does, so they live in their own retention
# policy that never expires, one point per site at time 0: rewriting a site overwrites it.
SITES_RETENTION_POLICY = "registry"
SITES_MEASUREMENT = "sites"
# One point per retention policy: tag `rp` (its name), fields `policy` (the name again: a Grafana
# variable takes its values from a field), `shortest_ms` and `longest_ms`. A dashboard whose
# range lasts at least the shortest and less than the longest reads that policy.
POLICY_RANGES_MEASUREMENT = "policy_ranges"
# Ranges of two days and more read the hourly rollups. Shorter ones read raw readings: there the
# hour still being rolled up (the continuous query writes an hour when it ends) is a visible
# share of the range, and Grafana's interval is minutes, finer than the rollup. From two days on
# the missing hour is under 2 % of the range, and the raw readings would cost 12 times the
# points (a reading every 5 minutes): 250 k per field at two days for the pilot fleet, 870 k at
# the Site and Operator dashboards' 7 days, which read 73 k bin-hours instead.
HOURLY_FROM_MS = 2 * 24 * 3600 * 1000
POLICY_RANGES_MS = ((RAW_RP, 0, HOURLY_FROM_MS), (ROLLUP_RP, HOURLY_FROM_MS, 2**63 - 1))

Action = Literal["created", "updated", "unchanged"]


class GrafanaError(BinwatchError):
    """Grafana refused a request (`status` is its HTTP status) or could not be reached (None)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Change:
    """What `push` did to one object: `kind` is folder, datasource or dashboard."""

    kind: str
    name: str
    action: Action

    def __str__(self) -> str:
        return f"{self.action:<9} {self.kind} {self.name}"


def datasource_definition(dashboards_dir: Path, values: Mapping[str, str]) -> dict[str, Any]:
    """The provisioned datasource with its `$VAR` / `${VAR}` placeholders filled from `values`,
    as Grafana fills them from its environment when it reads the file."""
    path = dashboards_dir / DATASOURCE_FILE
    [source] = yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]

    def expand(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: expand(item) for key, item in value.items()}
        if isinstance(value, str):
            return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m[1] or m[2]], value)
        return value

    definition = {key: expand(source[key]) for key in DATASOURCE_KEYS if key in source}
    # An empty secret (InfluxDB without authentication) is left out: Grafana would not mark it
    # as set, and every later push would take it for missing and write again.
    secrets = expand(source.get("secureJsonData", {}))
    definition["secureJsonData"] = {key: value for key, value in secrets.items() if value}
    return definition


def load_dashboards(dashboards_dir: Path) -> list[dict[str, Any]]:
    """Every dashboard JSON of the folder, in file-name order."""
    return [
        json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(dashboards_dir.glob("*.json"))
    ]


def push(
    api: GrafanaApi,
    *,
    folder: str,
    datasource: dict[str, Any],
    dashboards: list[dict[str, Any]],
) -> list[Change]:
    """Bring the folder, the datasource and the dashboards in Grafana in line with ours,
    writing only what differs; returns what happened to each, in the order it was done."""
    folder_uid, folder_change = _ensure_folder(api, folder)
    changes = [folder_change, _ensure_datasource(api, datasource)]
    changes += [_ensure_dashboard(api, board, folder_uid) for board in dashboards]
    return changes


def _ensure_folder(api: GrafanaApi, title: str) -> tuple[str, Change]:
    for existing in _call(api.folder.get_all_folders):
        if existing["title"] == title:
            return existing["uid"], Change("folder", title, "unchanged")
    # A uid derived from the title keeps the folder's URL the same on every Grafana.
    uid = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "binwatch"
    created = _call(api.folder.create_folder, title, uid=uid)
    return created["uid"], Change("folder", title, "created")


def _ensure_datasource(api: GrafanaApi, wanted: dict[str, Any]) -> Change:
    existing = _get_or_none(api.datasource.get_datasource_by_uid, wanted["uid"])
    if existing is None:
        _call(api.datasource.create_datasource, wanted)
        return Change("datasource", wanted["name"], "created")
    if _datasource_matches(existing, wanted):
        return Change("datasource", wanted["name"], "unchanged")
    _call(api.datasource.update_datasource_by_uid, wanted["uid"], wanted)
    return Change("datasource", wanted["name"], "updated")


def _datasource_matches(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Grafana never returns secrets, only which are set (`secureJsonFields`): a changed
    password alone is therefore not noticed, and every other field is compared."""
    for key, value in wanted.items():
        if key == "secureJsonData":
            stored = existing.get("secureJsonFields") or {}
            if not all(stored.get(name) for name in value):
                return False
        elif key == "jsonData":
            # Grafana adds defaults of its own to jsonData; only ours must be as we say.
            stored_json = existing.get("jsonData") or {}
            if any(stored_json.get(name) != item for name, item in value.items()):
                return False
        elif existing.get(key) != value:
            return False
    return True


def _ensure_dashboard(api: GrafanaApi, board: dict[str, Any], folder_uid: str) -> Change:
    title = board["title"]
    existing = _get_or_none(api.dashboard.get_dashboard, board["uid"])
    if existing is not None:
        in_folder = existing.get("meta", {}).get("folderUid") == folder_uid
        if in_folder and _content(existing["dashboard"]) == _content(board):
            return Change("dashboard", title, "unchanged")
    _call(
        api.dashboard.update_dashboard,
        {
            "dashboard": {**_content(board), "id": None},
            "folderUid": folder_uid,
            "overwrite": True,
            "message": "binwatch grafana push",
        },
    )
    return Change("dashboard", title, "created" if existing is None else "updated")


def _content(board: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in board.items() if key not in DASHBOARD_BOOKKEEPING}


def _get_or_none(method: Callable[..., Any], *args: Any) -> Any:
    """A GET that answers None for Grafana's 404 instead of raising."""
    try:
        return _call(method, *args)
    except GrafanaError as exc:
        if exc.status == 404:
            return None
        raise


def _call(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return method(*args, **kwargs)
    except GrafanaClientError as exc:
        raise GrafanaError(
            f"Grafana refused {method.__name__}: {exc.message}", status=exc.status_code
        ) from exc
    except (GrafanaException, OSError) as exc:
        # OSError: niquests' connection errors, which grafana-client lets through.
        raise GrafanaError(f"Grafana unreachable: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    """What the system said of a failed connection (`[Errno 111] Connection refused`), not the
    client's account of it, which named urllib3's pool and the repr of its connection object
    (`HTTPConnectionPool(host=…): Max retries exceeded … <urllib3.connection.HTTPConnection
    object at 0x7f…>`); the error's own text when it quotes no system error."""
    said = re.search(r"\[Errno -?\d+\] [^'\")\]]+|Failed to resolve '[^']+'", str(exc))
    return said.group(0).strip() if said else str(exc)


def write_sites(settings: Settings) -> int:
    """Replace the `sites` measurement with the registry's sites that have bins (tags: site and
    its grid levels; fields: lat, lon, name), and the `policy_ranges` measurement with
    POLICY_RANGES_MS; returns how many sites were written. Dropping first removes sites that
    left the registry or moved to another community, and policies no longer used."""
    engine = database_engine(settings)
    try:
        with Session(engine) as session:
            tags_by_site = {tags.site: tags for tags in bin_tags(session).values()}
            sites = session.scalars(select(Site).where(Site.id.in_(tags_by_site))).all()
    finally:
        engine.dispose()
    lines = []
    for site in sites:
        grid = {
            key: value
            for key, value in tags_by_site[site.id].as_tags().items()
            if key in SITE_TAG_KEYS
        }
        fields: dict[str, FieldValue] = {
            "lat": site.latitude,
            "lon": site.longitude,
            "name": site.name,
        }
        lines.append(point(SITES_MEASUREMENT, tag_set(grid), fields, 0))
    policies = [
        point(
            POLICY_RANGES_MEASUREMENT,
            tag_set({"rp": name}),
            {"policy": name, "shortest_ms": shortest, "longest_ms": longest},
            0,
        )
        for name, shortest, longest in POLICY_RANGES_MS
    ]
    influx = InfluxClient(settings)
    try:
        influx.ensure_database(settings.raw_retention)  # this may run before ingest ever did
        influx.query(
            f"CREATE RETENTION POLICY {quote_ident(SITES_RETENTION_POLICY)} ON "
            f"{quote_ident(settings.influx.db)} DURATION INF REPLICATION 1"
        )
        for measurement in (SITES_MEASUREMENT, POLICY_RANGES_MEASUREMENT):
            influx.query(f"DROP SERIES FROM {quote_ident(measurement)}")
        influx.write(lines + policies, retention_policy=SITES_RETENTION_POLICY)
    finally:
        influx.close()
    return len(lines)


grafana_app = typer.Typer(
    help="Grafana: push the dashboards to a running Grafana, write what they read besides readings.",
    no_args_is_help=True,
)


@grafana_app.command("push")
def push_command(
    url: Annotated[str, typer.Option(help="Grafana's address, e.g. https://grafana.example.org")],
    token: Annotated[
        str,
        typer.Option(
            help="a Grafana service-account token with the Admin role (datasources need it)"
        ),
    ],
    folder: Annotated[str, typer.Option(help="Grafana folder for the dashboards")] = "binwatch",
    influx_url: Annotated[
        str | None,
        typer.Option(help="InfluxDB as Grafana's server reaches it [BINWATCH_INFLUX_URL]"),
    ] = None,
    influx_db: Annotated[
        str | None, typer.Option(help="InfluxDB database [BINWATCH_INFLUX_DB]")
    ] = None,
    influx_user: Annotated[
        str | None,
        typer.Option(
            help="InfluxDB user for Grafana, ideally read-only [BINWATCH_INFLUX_USERNAME]"
        ),
    ] = None,
    influx_password: Annotated[
        str | None, typer.Option(help="its password [BINWATCH_INFLUX_PASSWORD]")
    ] = None,
    dashboards: Annotated[
        Path | None,
        typer.Option(
            help="folder holding the dashboard JSON and provisioning/ (the repository's "
            "dashboards/, the default when binwatch runs from a checkout)",
            exists=True,
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Create or update the folder, the datasource and the dashboards in a running Grafana;
    print what was created, updated or left unchanged."""
    for option, address in (("--url", url), ("--influx-url", influx_url)):
        if address is not None and (problem := url_problem(address, ("http", "https"))):
            raise typer.BadParameter(f"{address!r}: {problem}", param_hint=option)
    if dashboards is None:
        if not REPO_DASHBOARDS.is_dir():  # an installed binwatch does not carry them
            raise typer.BadParameter(
                "pass the repository's dashboards/ folder: this binwatch is installed, not run "
                "from a checkout",
                param_hint="--dashboards",
            )
        dashboards = REPO_DASHBOARDS
    settings = Settings()
    password = settings.influx.password.get_secret_value() if settings.influx.password else ""
    datasource = datasource_definition(
        dashboards,
        {
            "BINWATCH_INFLUX_URL": influx_url or settings.influx.url,
            "BINWATCH_INFLUX_DB": influx_db or settings.influx.db,
            "BINWATCH_INFLUX_USERNAME": influx_user or settings.influx.username or "",
            "BINWATCH_INFLUX_PASSWORD": influx_password or password,
        },
    )
    api = GrafanaApi.from_url(url, credential=token, timeout=GRAFANA_TIMEOUT_S)
    try:
        changes = push(
            api, folder=folder, datasource=datasource, dashboards=load_dashboards(dashboards)
        )
    except GrafanaError as exc:
        typer.echo(f"error: {exc} ({url})", err=True)
        raise typer.Exit(1) from exc
    for change in changes:
        typer.echo(str(change))
    written = sum(change.action != "unchanged" for change in changes)
    typer.echo(f"{written} of {len(changes)} changed")


@grafana_app.command("sites")
def sites_command() -> None:
    """Write the registry's sites (coordinates and grid tags) to InfluxDB for the city map, and
    which retention policy serves which time range; run it after every `binwatch fleet import`."""
    try:
        count = write_sites(Settings())
    except SinkError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"wrote {count} sites and {len(POLICY_RANGES_MS)} policy ranges to "
        f"{SITES_RETENTION_POLICY}.{SITES_MEASUREMENT} and "
        f"{SITES_RETENTION_POLICY}.{POLICY_RANGES_MEASUREMENT}"
    )
