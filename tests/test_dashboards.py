"""The Grafana dashboards in `dashboards/*.json`, checked without Grafana (none runs here).

Structure: what Grafana would refuse or silently break on (schema version, panel ids, datasource
references, undefined variables), and the project's own rules (the seven grid filters everywhere,
accuracy as a ratio of sums, no query scanning all history by accident).

Queries: every panel query and every template-variable query is taken from the JSON, its
variables and macros filled in the way Grafana fills them, and run against a real InfluxDB that
the simulator filled through the real ingest (and the hourly rollups backfilled from it). Each
must run without error and return data, once with every filter at "All" and once with two values
chosen in each (the chained variable queries decide which, as they would for a person clicking
through them), and a query that reads the retention policy `$rp` once with each policy.

Grafana fills a query in two steps, and `grafana_query` follows both:
- the browser (`templateSrv.replace(query, vars, 'regex')`, public/app/plugins/datasource/
  influxdb/datasource.ts): a dashboard variable becomes its custom "All" value unescaped, or its
  values regex-escaped, several joined as `(a|b)`; `${__from}` and `${__to}` become the range's
  ends in epoch milliseconds;
- the server (`Query.Build`, pkg/tsdb/influxdb/models/query.go): `$timeFilter` becomes
  `time >= <from>ms and time <= <to>ms`, then `$interval`, `$__interval_ms` and `$__interval`
  become the interval the browser computed (range / max data points, rounded to Grafana's
  ladder, at least the panel's min interval). Nothing else is replaced: a macro of another
  datasource (`$__timeFilter` is SQL's) reaches InfluxDB verbatim, which the structure test
  refuses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from sqlalchemy.orm import Session

from alerts import store as alert_store
from alerts.rules import AlertType, Finding
from binwatch.grafana import HOURLY_FROM_MS, write_sites
from collection import store as collection_store
from collection.lifecycle import COLLECTOR, Actor, Role, Status
from collection.rules import Policy, Rule
from compliance.rollups import backfill
from core.errors import SinkRejected
from core.influx import InfluxClient
from core.settings import Settings
from core.sql import make_engine
from core.telemetry import RAW_RP, ROLLUP_RP
from devices.contract import Event, TopicKind, Topics
from devices.registry import BinTags, bin_tags
from simulator.publisher import run_simulation
from tests.collection_helpers import running_alerter, running_collector
from tests.conftest import count_points, running_ingest
from tests.helpers import wait_for
from tests.mqtt_helpers import publish_all

pytestmark = pytest.mark.registry_backends(
    "sqlite",
    reason="the dashboards read InfluxDB only; the collector's and alerter's exports that fill it"
    " from the registry run on both backends in tests/test_collection.py and tests/test_alerts.py",
)

REPO = Path(__file__).resolve().parents[1]
DASHBOARD_FILES = sorted((REPO / "dashboards").glob("*.json"))
DATASOURCE_FILE = REPO / "dashboards/provisioning/datasources/binwatch.yaml"
COMPOSE_FILE = REPO / "docker-compose.yml"

# The schemaVersion each Grafana major saves (apps/dashboard/pkg/migration/schemaversion):
# 12.0 writes 41, and every later 12.x loads 41 and migrates it forward in memory.
SCHEMA_VERSION_BY_GRAFANA_MAJOR = {12: 41}
GRID_FILTERS = ("district", "street", "community", "site_type", "operator", "site", "stream")
# The hidden variable naming the retention policy a panel reads: raw readings or hourly rollups.
POLICY_VARIABLE = "rp"
POLICIES = (RAW_RP, ROLLUP_RP)
# What Grafana's InfluxQL backend replaces itself (see the module docstring).
BACKEND_MACROS = ("timeFilter", "interval", "__interval_ms", "__interval")
# Grafana's global variables that the browser fills from the dashboard's time range.
TIME_RANGE_VARIABLES = ("__from", "__to")
# Grafana's variable syntax: $name, [[name]] and ${name[.field][:format]}
# (public/app/features/variables/utils.ts, variableRegex).
VARIABLE_REFERENCE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}"
)
# InfluxQL aliases name series with these; they are not dashboard variables.
ALIAS_PATTERNS = re.compile(r"\$(tag_\w+|col|m|measurement)\b")
ACCURACY = '1 - sum("contaminated") / sum("checked_deposits")'
# What a query may read without a time filter: a bin's last status may be weeks old, the site
# coordinates are one point per site at time 0, and a request waiting or an alert live now may
# have begun long before the range.
TIMELESS = (
    'FROM "device_status"',
    'FROM "registry"."sites"',
    'last("open")',
    'last("overdue")',
    'last("live")',
)
# Panel width in pixels stands in for max data points when a panel sets none; a full-width panel
# on a common screen is about this wide.
DEFAULT_MAX_DATA_POINTS = 1000
# Grafana's interval ladder (packages/grafana-data/src/datetime/rangeutil.ts, roundInterval):
# below the first number, the interval becomes the second (both ms).
INTERVAL_LADDER = (
    (1500, 1000),
    (3500, 2000),
    (7500, 5000),
    (12500, 10000),
    (17500, 15000),
    (25000, 20000),
    (45000, 30000),
    (90000, 60000),
    (210000, 120000),
    (450000, 300000),
    (750000, 600000),
    (1050000, 900000),
    (1500000, 1200000),
    (2700000, 1800000),
    (5400000, 3600000),
    (9000000, 7200000),
    (16200000, 10800000),
    (24300000, 21600000),
    (64800000, 43200000),
    (604800000, 86400000),
)
DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

EventType = Literal["fire", "tilt", "lid_open", "fault"]
SIMULATED_ROUNDS = 12
# The deadline of the requests of every other bin in the test data, so those miss it.
SHORT_DEADLINE = timedelta(minutes=2)
READING_INTERVAL_S = 300
EVENT_TYPES: tuple[EventType, ...] = ("fire", "tilt", "lid_open", "fault")


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


DASHBOARDS = {path.stem: load(path) for path in DASHBOARD_FILES}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside rows."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def variables(board: dict[str, Any]) -> list[dict[str, Any]]:
    return list(board["templating"]["list"])


def referenced(text: str) -> set[str]:
    return {m[1] or m[2] or m[4] for m in VARIABLE_REFERENCE.finditer(text)}


def test_there_are_the_four_dashboards() -> None:
    assert set(DASHBOARDS) == {"city-overview", "site", "operator", "device-health"}
    uids = [board["uid"] for board in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("name", DASHBOARDS)
def test_schema_version_fits_the_pinned_grafana(name: str) -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    image = compose["services"]["grafana"]["image"]
    major = int(image.rsplit(":", 1)[1].split(".")[0])
    assert major in SCHEMA_VERSION_BY_GRAFANA_MAJOR, f"check the dashboards against {image}"
    assert DASHBOARDS[name]["schemaVersion"] == SCHEMA_VERSION_BY_GRAFANA_MAJOR[major]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_panels_have_unique_ids_and_fit_the_grid(name: str) -> None:
    board = DASHBOARDS[name]
    ids = [panel["id"] for panel in panels(board)]
    assert len(set(ids)) == len(ids), f"duplicate panel ids in {name}: {ids}"
    cells: set[tuple[int, int]] = set()
    for panel in panels(board):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not area & cells, f"{panel['title']!r} overlaps another panel"
        cells |= area


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_datasource_is_the_provisioned_influxdb(name: str) -> None:
    [provisioned] = yaml.safe_load(DATASOURCE_FILE.read_text(encoding="utf-8"))["datasources"]
    expected = {"type": provisioned["type"], "uid": provisioned["uid"]}
    board = DASHBOARDS[name]
    refs = [("variable " + v["name"], v.get("datasource")) for v in variables(board)]
    for panel in panels(board):
        refs.append((panel["title"], panel.get("datasource")))
        refs += [(f"{panel['title']} {t['refId']}", t.get("datasource")) for t in panel["targets"]]
    wrong = [(where, ref) for where, ref in refs if ref != expected]
    assert not wrong, f"not the provisioned datasource {expected}: {wrong}"
    assert "annotations" not in board, "the built-in annotation would need the Grafana datasource"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_variable_used_is_defined_before_use(name: str) -> None:
    board = DASHBOARDS[name]
    defined: set[str] = set(TIME_RANGE_VARIABLES)
    for variable in variables(board):
        used = referenced(variable["query"]) - defined
        assert not used, f"variable {variable['name']} uses {used} before they are defined"
        defined.add(variable["name"])
    for panel in panels(board):
        assert not referenced(panel["title"]) - defined, f"{panel['title']!r}"
        for target in panel["targets"]:
            used = referenced(target["query"]) - defined - set(BACKEND_MACROS)
            assert not used, f"{panel['title']!r} uses undefined {sorted(used)}"
            alias = ALIAS_PATTERNS.sub("", target.get("alias", ""))
            assert not referenced(alias) - defined, f"{panel['title']!r} alias {alias!r}"


def test_every_dashboard_filters_by_the_same_grid_variables() -> None:
    """Same names and queries everywhere, so a filter means the same on every dashboard; the
    policy variable last, hidden, one value, chosen anew whenever the time range changes."""
    queries = {
        name: {v["name"]: v["query"] for v in variables(board)}
        for name, board in DASHBOARDS.items()
    }
    first = next(iter(queries.values()))
    assert tuple(first) == (*GRID_FILTERS, POLICY_VARIABLE)
    for name, mapping in queries.items():
        assert mapping == first, f"{name} defines the variables differently"
    for name, board in DASHBOARDS.items():
        *grid, policy = variables(board)
        assert policy["hide"] == 2 and policy["refresh"] == 2 and policy["skipUrlSync"]
        assert not policy["multi"] and not policy["includeAll"]
        for variable in grid:
            single = name == "site" and variable["name"] == "site"
            # One site at a time on the site dashboard; elsewhere any selection and "All" (.*
            # rather than a list of every value, which would grow with the fleet).
            assert variable["multi"] is not single and variable["includeAll"] is not single
            assert single or variable["allValue"] == ".*"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_queries_follow_the_project_rules(name: str) -> None:
    board = DASHBOARDS[name]
    for panel in panels(board):
        for target in panel["targets"]:
            query, where = target["query"], f"{name}: {panel['title']!r}"
            assert target.get("rawQuery") is True, where
            if "contaminated" in query:
                assert ACCURACY in query, f"{where}: accuracy must be a ratio of sums"
                assert '"checked_deposits" > 0' in query, f"{where}: no deposits must be null"
            if not any(source in query for source in TIMELESS):
                assert "$timeFilter" in query, f"{where} would scan all of history"
            if "telemetry" in query or "events" in query:
                assert all(f"/^${key}$/" in query for key in GRID_FILTERS), (
                    f"{where} ignores a filter"
                )
            if "timeFrom" in panel:
                # "Now" panels read each bin's latest reading: the rollups lag by up to an hour.
                assert f"${POLICY_VARIABLE}" not in query, f"{where} is 'now': raw readings only"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_panels_have_units_and_time_ranges(name: str) -> None:
    board = DASHBOARDS[name]
    assert board["time"]["to"] == "now" and re.fullmatch(r"now-\d+[hd]", board["time"]["from"])
    for panel in panels(board):
        defaults = panel["fieldConfig"]["defaults"]
        if panel["type"] in ("stat", "bargauge", "timeseries"):
            assert "unit" in defaults, f"{panel['title']!r} has no unit"
        if panel["type"] in ("stat", "bargauge"):
            assert defaults["thresholds"]["steps"], f"{panel['title']!r} has no thresholds"


# --------------------------------------------------------------------------- against InfluxDB


@dataclass(frozen=True)
class Selection:
    """A variable's current value as Grafana holds it: "All", or some of its values."""

    values: tuple[str, ...]
    all_value: str | None = None

    def regex(self) -> str:
        """The 'regex' format of Grafana's templateSrv (kbn.regexEscape, joined with |)."""
        if self.all_value is not None:
            return self.all_value
        escaped = [re.sub(r"[\\^$*+?.()|[\]{}/]", r"\\\g<0>", value) for value in self.values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @property
    def ms(self) -> int:
        return int((self.end - self.start).total_seconds() * 1000)


def parse_duration_ms(text: str) -> int:
    match = re.fullmatch(r">?(\d+)(ms|s|m|h|d|w)", text)
    assert match, f"not a Grafana interval: {text!r}"
    return int(match[1]) * DURATION_MS[match[2]]


def format_interval(ms: int) -> str:
    """gtime.FormatInterval: the largest whole unit."""
    for unit in ("d", "h", "m", "s"):
        if ms >= DURATION_MS[unit]:
            return f"{ms // DURATION_MS[unit]}{unit}"
    return f"{ms}ms"


def panel_interval_ms(panel: dict[str, Any], span: TimeRange) -> int:
    """What the browser computes as $__interval for this panel (rangeutil.calculateInterval)."""
    raw = span.ms / panel.get("maxDataPoints", DEFAULT_MAX_DATA_POINTS)
    rounded = next((value for limit, value in INTERVAL_LADDER if raw < limit), 604800000)
    minimum = parse_duration_ms(panel["interval"]) if "interval" in panel else 1
    return max(rounded, minimum)


def grafana_query(
    query: str, selections: dict[str, Selection], *, span: TimeRange, interval_ms: int = 1
) -> str:
    """`query` as InfluxDB receives it from Grafana (both steps of the module docstring)."""

    def variable(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[4]
        return selections[name].regex() if name in selections else match[0]

    start_ms, end_ms = (int(moment.timestamp() * 1000) for moment in (span.start, span.end))
    ends = {"__from": Selection((str(start_ms),)), "__to": Selection((str(end_ms),))}
    selections = {**ends, **selections}
    text = VARIABLE_REFERENCE.sub(variable, query)
    text = text.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    interval = format_interval(interval_ms)
    text = text.replace("$interval", interval)
    text = text.replace("$__interval_ms", str(interval_ms))
    return text.replace("$__interval", interval)


def resolve_variables(
    influx: InfluxClient, board: dict[str, Any], span: TimeRange, *, pick: int | None
) -> dict[str, Selection]:
    """Run the variable queries in order, each with the selections before it, as Grafana does
    on load; `pick=None` selects "All" where allowed, else the first `pick` values."""
    selections: dict[str, Selection] = {}
    for variable in variables(board):
        result = influx.query(grafana_query(variable["query"], selections, span=span))
        # Grafana's ResponseParser takes each row's second column: the tag value of SHOW TAG
        # VALUES (key, value), the first field of a SELECT (time, field).
        options = [row[1] for series in result for row in series.values]
        assert options, f"variable {variable['name']} has no values"
        if not variable["multi"]:
            selections[variable["name"]] = Selection((options[0],))
        elif pick is None:
            selections[variable["name"]] = Selection(tuple(options), variable["allValue"])
        else:
            selections[variable["name"]] = Selection(tuple(options[:pick]))
    return selections


def late_bins(bins: list[BinTags]) -> list[BinTags]:
    """The bins whose requests `run_requests` gives SHORT_DEADLINE."""
    return bins[::2]


def run_requests(settings: Settings, bins: list[BinTags], start: datetime) -> None:
    """Every bin's request through its whole life (opened, dispatched, acknowledged, escalated,
    completed, disputed) and a second one left waiting, straight in the registry, then the
    collector's export step writes the `collections` points. The late bins' requests have
    SHORT_DEADLINE: the first is completed after it, the second is escalated at it and stays
    overdue."""
    policy = Policy.of(settings.collection)
    short = replace(policy, deadlines=dict.fromkeys(policy.deadlines, SHORT_DEADLINE))
    late = {tags.bin for tags in late_bins(bins)}
    engine = make_engine(settings.database_url)
    try:
        with Session(engine, expire_on_commit=False) as session:
            for tags in bins:
                deadlines = short if tags.bin in late else policy
                at = start
                first = collection_store.open_request(
                    session,
                    bin_id=tags.bin,
                    rule=Rule.manual,
                    reason="test",
                    now=at,
                    policy=deadlines,
                    actor=COLLECTOR,
                ).request
                crew = Actor(Role.operator, first.operator_id)
                steps = [
                    (Status.dispatched, COLLECTOR),
                    (Status.acknowledged, crew),
                    (Status.completed, crew),
                    (Status.disputed, COLLECTOR),
                ]
                for i, (status, actor) in enumerate(steps, start=1):
                    if status is Status.completed:
                        assert collection_store.escalate(
                            session,
                            first,
                            level=1,
                            now=start + timedelta(minutes=i),
                            actor=COLLECTOR,
                            note="test",
                        )
                    at = start + timedelta(minutes=i, seconds=30)
                    collection_store.transition(session, first.id, status, actor=actor, now=at)
                second = collection_store.open_request(
                    session,
                    bin_id=tags.bin,
                    rule=Rule.manual,
                    reason="test again",
                    now=at + timedelta(minutes=1),
                    policy=deadlines,
                    actor=COLLECTOR,
                ).request
                if tags.bin in late:
                    assert collection_store.escalate(
                        session,
                        second,
                        level=1,
                        now=second.due_at,
                        actor=COLLECTOR,
                        note="test",
                    )
    finally:
        engine.dispose()
    with running_collector(settings) as collector:
        collector.export(datetime.now(UTC))


def raise_alerts(settings: Settings, bins: list[BinTags], start: datetime) -> None:
    """A fire alert (critical) and a tilt alert per bin, the tilt one cleared, then the alerter's
    export step writes the `alerts` points."""
    prefix = settings.topic_prefix
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            for tags in bins:
                for kind in (AlertType.fire, AlertType.tilt):
                    finding = Finding(kind, True)
                    alert_store.raise_alert(session, tags.bin, finding, now=start, prefix=prefix)
            session.commit()
            for tags in bins:
                tilt = alert_store.live_alert(session, tags.bin, AlertType.tilt)
                assert tilt is not None
                end = start + timedelta(minutes=10)
                alert_store.clear(session, tilt, now=end, note="test", prefix=prefix)
            session.commit()
    finally:
        engine.dispose()
    with running_alerter(settings) as alerter:
        alerter.export(datetime.now(UTC))


def dashboard_range(board: dict[str, Any], now: datetime) -> TimeRange:
    return TimeRange(
        now - timedelta(milliseconds=parse_duration_ms(board["time"]["from"][4:])), now
    )


def dead_lettered(settings: Settings) -> int:
    client = InfluxClient(settings)
    try:
        result = client.query('SELECT sum("count") FROM "deadletters"')
    finally:
        client.close()
    return int(result[0].values[0][1]) if result else 0


@dataclass(frozen=True)
class Filled:
    influx: InfluxClient
    bins: list[BinTags]


@pytest.fixture(scope="module")
def filled(module_settings: Settings) -> Iterator[Filled]:
    """The pilot fleet's last hour through the real ingest: readings and statuses from the
    simulator, one event of each type per bin, and the sites for the map and the policy ranges;
    the readings rolled up hourly; two collection requests and two alerts per bin, exported by
    the collector and the alerter. Filled once for the module's tests, which only read it."""
    engine = make_engine(module_settings.database_url)
    with Session(engine) as session:
        bins = list(bin_tags(session).values())
    engine.dispose()
    settings = early_afternoon(module_settings, datetime.now(UTC))
    with running_ingest(settings):
        yield from _fill(settings, bins)


def early_afternoon(settings: Settings, now: datetime) -> Settings:
    """These settings in a fixed-offset zone where `now` is 13:00 or so. The simulated bins
    follow the local clock: at night almost nothing is deposited, so some of the few bins a
    narrowed selection keeps checked no deposit in the hour simulated, and the accuracy panels
    had no data whenever the suite ran at night in Shanghai (a run at 01:30 there failed)."""
    offset_h = (13 - now.hour + 12) % 24 - 12
    return settings.model_copy(update={"timezone": f"Etc/GMT{-offset_h:+d}"})  # POSIX's sign


def _fill(settings: Settings, bins: list[BinTags]) -> Iterator[Filled]:
    now = datetime.now(UTC)
    start = now - timedelta(seconds=SIMULATED_ROUNDS * READING_INTERVAL_S)
    run_simulation(
        settings,
        bins,
        interval_s=READING_INTERVAL_S,
        speed=0,
        seed=3,
        rounds=SIMULATED_ROUNDS,
        start=start,
    )
    topics = Topics(settings.topic_prefix)
    events = [
        (
            topics.bin(tags.bin, TopicKind.event),
            Event(ts=start + timedelta(minutes=i), type=kind, detail=f"test {kind}")
            .model_dump_json(exclude_none=True)
            .encode(),
        )
        for tags in bins
        for i, kind in enumerate(EVENT_TYPES)
    ]
    # Two messages ingest must dead-letter: one not JSON, one from a bin nobody registered.
    bad = [
        (topics.bin(bins[0].bin, TopicKind.telemetry), b"not json"),
        (topics.bin("unregistered-bin", TopicKind.telemetry), events[0][1]),
    ]
    publish_all(settings, events + bad)
    expected = {
        "telemetry": SIMULATED_ROUNDS * len(bins),
        "events": len(events),
        # The simulator says online at the start and offline at the end.
        "device_status": 2 * len(bins),
    }
    wait_for(
        lambda: {m: count_points(settings, m) for m in expected} == expected,
        timeout=30,
        what=f"ingest to store {expected}",
    )
    wait_for(
        lambda: dead_lettered(settings) == len(bad), timeout=30, what="the dead letters' counts"
    )
    assert write_sites(settings) == len({tags.site for tags in bins})
    run_requests(settings, bins, start)
    raise_alerts(settings, bins, start)
    client = InfluxClient(settings)
    try:
        rolled_up = backfill(client, start, now, timezone=settings.timezone)
        assert rolled_up.hourly >= len(bins)
        # Per bin: the first request's six points (one of them the escalation) and the second
        # request's one, plus its escalation for the late bins; two alerts raised, one cleared.
        exported = {
            "collections": 7 * len(bins) + len(late_bins(bins)),
            "alerts": 3 * len(bins),
        }
        counted = {
            m: int(client.query(f'SELECT count("{field}") FROM "{m}"')[0].values[0][1])
            for m, field in (("collections", "request_id"), ("alerts", "alert_id"))
        }
        assert counted == exported
        yield Filled(client, bins)
    finally:
        client.close()


@pytest.mark.servers
def test_every_query_runs_and_returns_data(filled: Filled) -> None:
    filled_influx = filled.influx
    now = datetime.now(UTC)
    failures: list[str] = []
    ran = rolled_up = 0
    for name, board in DASHBOARDS.items():
        board_range = dashboard_range(board, now)
        for pick in (None, 2):
            selections = resolve_variables(filled_influx, board, board_range, pick=pick)
            for panel in panels(board):
                span = board_range
                if "timeFrom" in panel:
                    span = TimeRange(
                        now - timedelta(milliseconds=parse_duration_ms(panel["timeFrom"])), now
                    )
                for target in panel["targets"]:
                    # A query reading $rp runs with each policy, whichever the range chose.
                    switches = POLICY_VARIABLE in referenced(target["query"])
                    for policy in POLICIES if switches else selections[POLICY_VARIABLE].values:
                        query = grafana_query(
                            target["query"],
                            {**selections, POLICY_VARIABLE: Selection((policy,))},
                            span=span,
                            interval_ms=panel_interval_ms(panel, span),
                        )
                        where = f"{name} / {panel['title']} / {target['refId']} (pick={pick})"
                        ran += 1
                        rolled_up += switches and policy == ROLLUP_RP
                        try:
                            if not filled_influx.query(query):
                                failures.append(f"{where}: no data from {query}")
                        except SinkRejected as exc:
                            failures.append(f"{where}: {exc.message} in {query}")
    assert not failures, "\n".join(failures)
    assert ran > 150
    assert rolled_up > 40


@pytest.mark.servers
def test_the_policy_follows_the_length_of_the_range(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    """Raw readings below two days, the hourly rollups from two days on, at any end."""
    write_sites(settings)
    [query] = {
        v["query"]
        for board in DASHBOARDS.values()
        for v in variables(board)
        if v["name"] == POLICY_VARIABLE
    }
    end = datetime(2025, 3, 1, 12, tzinfo=UTC)
    two_days = timedelta(milliseconds=HOURLY_FROM_MS)
    expected = {
        timedelta(hours=1): RAW_RP,
        timedelta(hours=24): RAW_RP,
        two_days - timedelta(milliseconds=1): RAW_RP,
        two_days: ROLLUP_RP,
        timedelta(days=7): ROLLUP_RP,
        timedelta(days=400): ROLLUP_RP,
    }
    influx = InfluxClient(settings)
    try:
        for length, policy in expected.items():
            for moment in (end, datetime.now(UTC)):
                span = TimeRange(moment - length, moment)
                result = influx.query(grafana_query(query, {}, span=span))
                chosen = [row["policy"] for series in result for row in series.rows()]
                assert chosen == [policy], f"{length} ending {moment}: {chosen}"
    finally:
        influx.close()


def panel_value(influx: InfluxClient, board: str, title: str, now: datetime) -> dict[str, float]:
    """What the panel shows with every filter at "All": its value per series (by alias tag)."""
    [panel] = [p for p in panels(DASHBOARDS[board]) if p["title"] == title]
    span = dashboard_range(DASHBOARDS[board], now)
    selections = resolve_variables(influx, DASHBOARDS[board], span, pick=None)
    [target] = panel["targets"]
    result = influx.query(grafana_query(target["query"], selections, span=span))
    return {"/".join(s.tags.values()) or "all": s.values[0][1] for s in result}


@pytest.mark.servers
def test_the_now_panels_count_what_waits_now(filled: Filled) -> None:
    """Every bin's second request waits, the late bins' are overdue; every bin's fire alert is
    live and its tilt alert cleared; the late bins' first requests missed their deadline."""
    now = datetime.now(UTC)
    filled_influx, bins = filled.influx, filled.bins
    late = len(late_bins(bins))
    assert panel_value(filled_influx, "city-overview", "Requests waiting now", now) == {
        "all": len(bins)
    }
    assert panel_value(filled_influx, "city-overview", "Requests overdue now", now) == {"all": late}
    assert panel_value(filled_influx, "device-health", "Alerts active now", now) == {
        "all": len(bins)
    }
    by_type = panel_value(filled_influx, "device-health", "Alerts active now by type", now)
    assert by_type == {"fire": len(bins), "tilt": 0}
    within = panel_value(filled_influx, "operator", "Completed within deadline by operator", now)
    assert set(within) == {tags.operator for tags in bins}
    completed_in_time = sum(
        within[operator] * sum(t.operator == operator for t in bins) for operator in within
    )
    assert round(completed_in_time) == len(bins) - late
