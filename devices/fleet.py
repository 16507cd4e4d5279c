"""The fleet file: the city's own description of its grid, operator companies, sites and bins.

City staff edit it, so a mistake is reported as `file:line: where: what is wrong` rather than
as a traceback, and importing it is idempotent so the same file can be applied again after
every edit. See `default_fleet.yaml` for the layout. A file may be partial (a few sites under
areas and operators the registry already has, or new areas under existing ones): its references
are checked against the file and the registry's `Known` ids together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import FleetError
from core.printable import control_character
from core.topic_names import topic_problem
from core.webhook_targets import url_problem
from devices.contract import SiteType, Stream, account_name_problem, is_id
from devices.models import Area, AreaContact, Bin, Crew, Depot, Operator, Site, Vehicle

# Fill level (%) at which a bin asks to be emptied, when the file does not set one. Kitchen
# waste smells and rots, so it goes early; hazardous waste (batteries, lamps, medicines) must
# never overflow onto the ground; dry recyclable and residual bins can run nearly full.
DEFAULT_THRESHOLDS: Final[Mapping[Stream, float]] = MappingProxyType(
    {
        Stream.kitchen: 75.0,
        Stream.hazardous: 70.0,
        Stream.recyclable: 85.0,
        Stream.residual: 85.0,
    }
)
DEFAULT_CAPACITY_L: Final = 240  # the standard wheeled bin at Chinese sorting stations
MAX_STATIONS: Final = 99  # generated bin ids `<site>-s<n>-<stream>`: n has two digits at most

# A fleet file is read whole and every value of it checked, so both are bounded: a wrong file
# (a log, a dump, /dev/zero) or one written to hurt must not take the machine's memory or
# minutes of CPU. 8 MiB is ~430 times the pilot's file (68 sites, 433 bins: 19.4 KB); PyYAML
# read a 1.9 MB file in 3.7 s at 136 MiB peak RSS here, so the largest takes ~16 s.
MAX_FILE_BYTES: Final = 8 * 1024 * 1024
# Values (YAML nodes) with each alias counted as often as it is used: what the checks and the
# import walk. A few aliases can repeat a part of the file without end ("billion laughs": a
# 900-byte file of them made 216,000 communities and took 3 s; one more level, minutes), so
# the bound is what MAX_FILE_BYTES of plain YAML could hold (the pilot's file: 1,763 values).
MAX_VALUES: Final = 1_000_000
# Bins one file may plan: a hundred times the 10,000-bin city. `stations` multiplies (99 of
# them make 396 bins a site), so 3,000 sites in a small file would plan over a million, each
# checked and inserted before anything said no.
MAX_BINS: Final = 1_000_000

Loc = tuple[str | int, ...]
_ID_RULE = "1–64 letters, digits, '_', '.' or '-', starting with a letter or digit"


def _check_id(value: str) -> str:
    """Every id ends up in MQTT topics or InfluxDB tags, so all follow the bin-id rule."""
    if not is_id(value):
        raise PydanticCustomError(
            "id", "'{value}' is not a valid id: use {rule}", {"value": value, "rule": _ID_RULE}
        )
    return value


Id = Annotated[str, AfterValidator(_check_id)]


def _check_topic(value: str) -> str:
    if problem := topic_problem(value):
        raise PydanticCustomError(
            "topic", "{value} cannot be published to: {problem}",
            {"value": repr(value), "problem": problem},
        )  # fmt: skip
    return value


def _one_line_of(what: str) -> Callable[[str], str]:
    """The check of a text that is `what` ("a name"): one line, no control character (a NUL
    among them, which PostgreSQL's text cannot hold)."""

    def check(value: str) -> str:
        # Unicode's line and paragraph separators (Zl, Zp) break a line as a control does.
        if control_character(value, lines=False) or "\u2028" in value or "\u2029" in value:
            raise PydanticCustomError(
                "one_line",
                "{what} is one line of text: no line breaks or control characters",
                {"what": what},
            )
        return value

    return check


# A name is shown as a title: an e-mail's Subject, a chat message's heading, a page's.
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_one_line_of("a name"))]
# An address and a station are shown on the crews' and the managers' pages and in reports; a
# `"\0"` in the file (YAML's escape for NUL) failed the whole import on PostgreSQL with a
# DataError, and SQLite stored it.
Address = Annotated[
    str, Field(min_length=1, max_length=300), AfterValidator(_one_line_of("an address"))
]
Station = Annotated[
    str, Field(min_length=1, max_length=64), AfterValidator(_one_line_of("a station"))
]


class _Spec(BaseModel):
    # Unknown keys are refused: a misspelt `threshold_pc` silently ignored would be worse.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_webhook_url(value: str, info: ValidationInfo) -> str:
    """Refused here what the webhook sender would refuse (core/webhook_targets.py), so a
    bad URL fails the import with its line instead of every delivery later."""
    allow = bool((info.context or {}).get("allow_private_webhooks"))
    if problem := url_problem(value, allow_private=allow):
        raise PydanticCustomError("webhook_url", "{problem}", {"problem": problem})
    return value


WebhookUrl = Annotated[
    str, Field(pattern=r"^https?://\S+$", max_length=500), AfterValidator(_check_webhook_url)
]


class ContactSpec(_Spec):
    """Who hears of an area's escalations and alerts (a community: level 1, a street's squad:
    level 2; docs/collection.md). Webhook secrets never go in this file, which lives in git:
    `binwatch fleet webhook-secret` puts them in the registry."""

    mqtt_topic: Annotated[str, Field(max_length=300), AfterValidator(_check_topic)] | None = None
    webhook_url: WebhookUrl | None = None


class AreaSpec(_Spec):
    id: Id
    # Left out, the entry only names an area the registry has (a partial file hangs new
    # areas or sites under it) and changes nothing of it.
    name: Name | None = None
    contact: ContactSpec | None = None


class StreetSpec(AreaSpec):
    communities: list[AreaSpec]


class DistrictSpec(AreaSpec):
    streets: list[StreetSpec]


class OperatorSpec(_Spec):
    id: Id
    name: Name
    webhook_url: WebhookUrl | None = None


class BinSpec(_Spec):
    """A bin listed by hand, beyond the site's standard stations (say, a lone hazardous bin)."""

    id: Id
    stream: Stream
    station: Station
    capacity_l: int | None = Field(None, gt=0)
    threshold_pct: float | None = Field(None, gt=0, le=100)


@dataclass(frozen=True, slots=True)
class PlannedBin:
    """A bin as it will be stored; `origin` is where the file defines it (for error lines)."""

    id: str
    station: str
    stream: Stream
    capacity_l: int
    threshold_pct: float
    origin: Loc = field(compare=False)


class SiteSpec(_Spec):
    id: Id
    name: Name
    type: SiteType
    community: str
    operator: str
    address: Address
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    stations: int = Field(1, ge=0, le=MAX_STATIONS, description="each station: one bin per stream")
    bins: list[BinSpec] = []
    capacity_l: int = Field(DEFAULT_CAPACITY_L, gt=0, description="default for the site's bins")
    depot: str | None = Field(
        None, description="the depot of its operator whose district it is in (None: the nearest)"
    )

    def planned_bins(self) -> list[PlannedBin]:
        """The station bins (`<site>-s<n>-<stream>`), then the ones listed by hand."""
        generated = [
            PlannedBin(
                f"{self.id}-s{n}-{stream.value}",
                f"s{n}",
                stream,
                self.capacity_l,
                DEFAULT_THRESHOLDS[stream],
                ("stations",),
            )
            for n in range(1, self.stations + 1)
            for stream in Stream
        ]
        listed = [
            PlannedBin(
                b.id,
                b.station,
                b.stream,
                self.capacity_l if b.capacity_l is None else b.capacity_l,
                DEFAULT_THRESHOLDS[b.stream] if b.threshold_pct is None else b.threshold_pct,
                ("bins", i, "id"),
            )
            for i, b in enumerate(self.bins)
        ]
        return generated + listed


LocalTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


def minutes_of(clock: str) -> int:
    """`"07:30"` → 450: minutes after local midnight."""
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class ShiftSpec(_Spec):
    """A vehicle's working hours, local time, within one day."""

    start: LocalTime
    end: LocalTime

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> ShiftSpec:
        if minutes_of(self.end) <= minutes_of(self.start):
            raise ValueError(f"the shift ends ({self.end}) before it starts ({self.start})")
        return self


class BreakSpec(_Spec):
    """A break of `minutes` taken somewhere between `start` and `end` (the planner places it)."""

    start: LocalTime
    end: LocalTime
    minutes: int = Field(gt=0, le=240)

    @model_validator(mode="after")
    def _fits_its_window(self) -> BreakSpec:
        if minutes_of(self.end) - minutes_of(self.start) < self.minutes:
            raise ValueError(
                f"a {self.minutes}-minute break does not fit between {self.start} and {self.end}"
            )
        return self


class DepotSpec(_Spec):
    """Where an operator's vehicles start, end and unload (its yard or transfer station)."""

    id: Id
    operator: str
    name: Name
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class VehicleSpec(_Spec):
    """A collection vehicle: one stream per load, so `streams` are those it may be sent for."""

    id: Id
    operator: str
    depot: str
    name: Name
    streams: list[Stream] = Field(min_length=1)
    capacity_l: int | None = Field(None, gt=0, description="bin contents one load holds")
    capacity_kg: int | None = Field(None, gt=0, description="payload of one load")
    shift: ShiftSpec
    breaks: list[BreakSpec] = []

    @model_validator(mode="after")
    def _consistent(self) -> VehicleSpec:
        if self.capacity_l is None and self.capacity_kg is None:
            raise ValueError("give capacity_l, capacity_kg or both")
        if len(set(self.streams)) != len(self.streams):
            raise ValueError("a stream is listed twice under streams")
        start, end = minutes_of(self.shift.start), minutes_of(self.shift.end)
        for pause in self.breaks:
            if minutes_of(pause.start) < start or minutes_of(pause.end) > end:
                raise ValueError(
                    f"the break {pause.start}–{pause.end} is outside the shift "
                    f"{self.shift.start}–{self.shift.end}"
                )
        return self

    def breaks_json(self) -> list[dict[str, Any]]:
        """The breaks as the registry stores them."""
        return [pause.model_dump() for pause in self.breaks]


class CrewSpec(_Spec):
    """A crew of an operator, and the vehicle it usually drives."""

    id: Id
    operator: str
    name: Name
    vehicle: str | None = None


class Fleet(_Spec):
    city: AreaSpec | None = None
    districts: list[DistrictSpec] = []
    operators: list[OperatorSpec] = []
    sites: list[SiteSpec] = []
    depots: list[DepotSpec] = []
    vehicles: list[VehicleSpec] = []
    crews: list[CrewSpec] = []

    @model_validator(mode="after")
    def _within_the_bins_one_import_takes(self) -> Fleet:
        bins = sum(site.stations * len(Stream) + len(site.bins) for site in self.sites)
        if bins > MAX_BINS:
            raise ValueError(
                f"the file plans {bins:,} bins, over the {MAX_BINS:,} one import takes:"
                " split it into files of fewer sites (a partial file adds to the registry)"
            )
        return self

    def areas(self, city_id: str | None = None) -> Iterator[tuple[Loc, AreaSpec, str, str | None]]:
        """(where, area, kind, parent id) for every area, parents before their children; the
        districts hang under the file's city, or else under `city_id` (the registry's)."""
        city_id = self.city.id if self.city else city_id
        if self.city:
            yield ("city",), self.city, "city", None
        for d, district in enumerate(self.districts):
            yield ("districts", d), district, "district", city_id
            for s, street in enumerate(district.streets):
                yield ("districts", d, "streets", s), street, "street", district.id
                for c, community in enumerate(street.communities):
                    where = ("districts", d, "streets", s, "communities", c)
                    yield where, community, "community", street.id


@dataclass(frozen=True, slots=True)
class Known:
    """What the registry holds that a partial fleet file may refer to without restating it."""

    areas: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)  # id → kind, parent
    operators: frozenset[str] = frozenset()
    depots: Mapping[str, str] = field(default_factory=dict)  # id → operator
    vehicles: Mapping[str, str] = field(default_factory=dict)  # id → operator

    @property
    def city(self) -> str | None:
        """The registry's city, if it has exactly one: a file without `city` hangs its
        districts under it."""
        cities = [area_id for area_id, (kind, _parent) in self.areas.items() if kind == "city"]
        return cities[0] if len(cities) == 1 else None


def known_ids(session: Session) -> Known:
    """The ids a partial file may refer to: the registry's areas (kind, parent) and operators."""
    areas = session.execute(select(Area.id, Area.kind, Area.parent_id))
    return Known(
        areas={area_id: (kind, parent) for area_id, kind, parent in areas},
        operators=frozenset(session.scalars(select(Operator.id))),
        depots={d: o for d, o in session.execute(select(Depot.id, Depot.operator_id))},
        vehicles={v: o for v, o in session.execute(select(Vehicle.id, Vehicle.operator_id))},
    )


def default_fleet_path() -> Path:
    """The pilot's fleet as shipped with binwatch."""
    return Path(__file__).with_name("default_fleet.yaml")


def load_fleet(
    path: Path | str, *, allow_private_webhooks: bool = False, known: Known | None = None
) -> Fleet:
    """Read and check a fleet file; `FleetError` lists every problem as `file:line: reason`.
    Webhook URLs must be https to a public host unless `allow_private_webhooks`
    (`BINWATCH_WEBHOOK_ALLOW_PRIVATE`). References resolve within the file or to `known`
    (the registry the file will be imported into; None: an empty one)."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)  # a bounded read: a size stat() cannot promise
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetError(f"{path}: cannot read the fleet file: {exc}") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise FleetError(
            f"{path}: the file is over {MAX_FILE_BYTES // 2**20} MiB; a fleet file is not"
        )
    root, data, duplicates = _parse(path, text)

    def line_of(loc: Loc) -> int:
        return _line_of(root, loc)

    problems = duplicates
    try:
        fleet = Fleet.model_validate(
            data, context={"allow_private_webhooks": allow_private_webhooks}
        )
    except ValidationError as exc:
        problems += [(line_of(e["loc"]), _where(e["loc"]), _reason(e)) for e in exc.errors()]
        raise _rejected(path, problems) from None
    problems += [
        (line_of(loc), _where(loc), why)
        for loc, why in _reference_problems(fleet, line_of, known or Known())
    ]
    if problems:
        raise _rejected(path, problems)
    return fleet


def _parse(path: Path, text: str) -> tuple[yaml.Node, Any, list[tuple[int, str, str]]]:
    """The YAML node tree (it knows the lines), the plain data built from it, and its keys given
    twice. The tree is sized and its keys compared before the data is built, since building
    it merges `<<: *anchor` keys into the mappings (an overridden key is not given twice)."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise FleetError(f"{path}:1: the file is empty; see default_fleet.yaml for the layout")
        try:
            values = _values(root)
        except _EndlessAlias as exc:
            raise FleetError(
                f"{path}:{exc.line}: an alias inside the part its anchor names repeats it"
                " without end"
            ) from None
        if values > MAX_VALUES:
            raise FleetError(
                f"{path}: the file holds over {MAX_VALUES:,} values with its aliases repeated;"
                " a fleet file does not"
            )
        duplicates = list(_duplicate_keys(root))
        return root, loader.construct_document(root), duplicates
    except RecursionError:  # PyYAML composes and builds nested parts recursively
        raise FleetError(f"{path}: YAML nested too deep; a fleet file nests a few levels") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{mark.line + 1}:" if mark else ""
        context = f" ({exc.context})" if exc.context else ""
        raise FleetError(f"{path}:{line} YAML syntax error: {exc.problem}{context}") from None
    except yaml.YAMLError as exc:
        raise FleetError(f"{path}: YAML error: {exc}") from None
    finally:
        loader.dispose()


def _line_of(root: yaml.Node, loc: Loc) -> int:
    """The 1-based line of the deepest part of `loc` the file has (for a missing field, the
    line of the mapping that lacks it)."""
    node, line = root, root.start_mark.line
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            matches = [(key, value) for key, value in node.value if key.value == part]
            if not matches:
                break
            key, node = matches[-1]  # YAML keeps the last of duplicated keys
            line = key.start_mark.line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line
        else:
            break
    return line + 1


class _EndlessAlias(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _values(root: yaml.Node) -> int:
    """How many values the document holds, each alias counted as often as it is used (the
    node an alias names is the same object wherever it is used, so each is sized once);
    `_EndlessAlias` for an alias inside its own anchor's part, which is endless. Walked without
    recursion, a size capped just over MAX_VALUES."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()  # nodes whose parts are being sized: an alias to one is endless
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, sized = stack.pop()
        key = id(node)
        if sized:
            sizes[key] = min(MAX_VALUES + 1, 1 + sum(sizes[id(c)] for c in _children(node)))
            open_.discard(key)
        elif key in open_:
            raise _EndlessAlias(node.start_mark.line + 1)
        elif key not in sizes:
            open_.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    return sizes[id(root)]


def _duplicate_keys(root: yaml.Node) -> Iterator[tuple[int, str, str]]:
    """YAML silently keeps the last of two equal keys; an editor meant one of them. Each node
    once, however many aliases use it."""
    done: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in done:
            continue
        done.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, _value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    continue  # a list or mapping as key: building the data refuses it
                if key.value in seen:
                    yield (
                        key.start_mark.line + 1,
                        str(key.value),
                        "key appears twice in this mapping",
                    )
                seen.add(key.value)
        stack.extend(_children(node))


def _where(loc: Loc) -> str:
    """`("sites", 3, "bins", 0, "stream")` → `sites[3].bins[0].stream`."""
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    return text.lstrip(".") or "(top level)"


def _reason(error: ErrorDetails) -> str:
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "extra_forbidden":
        return "unknown field (misspelt, or indented under the wrong parent?)"
    return error["msg"].removeprefix("Value error, ")  # pydantic's, before our own words


def _rejected(path: Path, problems: list[tuple[int, str, str]]) -> FleetError:
    return FleetError(
        "\n".join(f"{path}:{line}: {where}: {why}" for line, where, why in sorted(problems))
    )


def _reference_problems(
    fleet: Fleet, line_of: Callable[[Loc], int], known: Known
) -> Iterator[tuple[Loc, str]]:
    """What pydantic cannot see field by field: unique ids and references that resolve, in the
    file or in the registry (`known`)."""
    area_kinds = {area_id: kind for area_id, (kind, _parent) in known.areas.items()}
    first: dict[tuple[str, str], Loc] = {}  # (kind of id, id) → where it was first defined

    def duplicate(kind: str, ident: str, loc: Loc) -> str | None:
        if (kind, ident) in first:
            return f"{kind} id {ident!r} is already used at line {line_of(first[kind, ident])}"
        first[kind, ident] = loc
        return None

    for loc, area, kind, parent in fleet.areas(known.city):
        where = (*loc, "id")
        if problem := duplicate("area", area.id, where) or _existing_area_problem(
            area, kind, parent, known
        ):
            yield where, problem
        if first["area", area.id] == where:  # the first of two entries with one id counts
            area_kinds[area.id] = kind
    for o, operator in enumerate(fleet.operators):
        if problem := duplicate("operator", operator.id, ("operators", o, "id")):
            yield ("operators", o, "id"), problem
    for s, site in enumerate(fleet.sites):
        loc = ("sites", s)
        if problem := duplicate("site", site.id, (*loc, "id")):
            yield (*loc, "id"), problem
        if area_kinds.get(site.community) != "community":
            found = area_kinds.get(site.community)
            detail = f"it is a {found}" if found else "no community in the file or the registry"
            yield (*loc, "community"), f"unknown community {site.community!r} ({detail})"
        if ("operator", site.operator) not in first and site.operator not in known.operators:
            why = "neither under operators nor in the registry"
            yield (*loc, "operator"), f"unknown operator {site.operator!r} ({why})"
        for planned in site.planned_bins():
            origin = (*loc, *planned.origin)
            if not is_id(planned.id):
                yield origin, f"bin id {planned.id!r} is not valid: use {_ID_RULE}"
            elif clash := account_name_problem(planned.id):
                yield origin, clash
            elif problem := duplicate("bin", planned.id, origin):
                yield origin, problem
    yield from _operator_side_problems(fleet, known, duplicate)


def _operator_side_problems(
    fleet: Fleet, known: Known, duplicate: Callable[[str, str, Loc], str | None]
) -> Iterator[tuple[Loc, str]]:
    """Depots, vehicles and crews: unique ids, an operator that exists, and a depot or vehicle
    of that same operator (a vehicle cannot start from another company's yard); and a site's
    depot, of the site's operator."""
    operators = {o.id for o in fleet.operators} | known.operators
    depots = {**known.depots, **{d.id: d.operator for d in fleet.depots}}
    vehicles = {**known.vehicles, **{v.id: v.operator for v in fleet.vehicles}}
    entries: list[tuple[str, Loc, str, str, tuple[str, str | None, dict[str, str]] | None]] = [
        *(("depot", ("depots", i), d.id, d.operator, None) for i, d in enumerate(fleet.depots)),
        *(
            ("vehicle", ("vehicles", i), v.id, v.operator, ("depot", v.depot, depots))
            for i, v in enumerate(fleet.vehicles)
        ),
        *(
            ("crew", ("crews", i), c.id, c.operator, ("vehicle", c.vehicle, vehicles))
            for i, c in enumerate(fleet.crews)
        ),
    ]
    for kind, loc, ident, operator, reference in entries:
        if problem := duplicate(kind, ident, (*loc, "id")):
            yield (*loc, "id"), problem
        if operator not in operators:
            why = "neither under operators nor in the registry"
            yield (*loc, "operator"), f"unknown operator {operator!r} ({why})"
        if reference is None:
            continue
        what, target, owners = reference
        if target is not None and (problem := _owner_problem(what, target, owners, operator)):
            yield (*loc, what), problem
    # A site's depot: its district is one of its own operator's.
    for s, site in enumerate(fleet.sites):
        if site.depot is not None and (
            problem := _owner_problem("depot", site.depot, depots, site.operator)
        ):
            yield ("sites", s, "depot"), problem


def _owner_problem(what: str, target: str, owners: Mapping[str, str], operator: str) -> str | None:
    """Why `target` (a depot, a vehicle: `what`) cannot be `operator`'s: unknown, or another's."""
    if target not in owners:
        return f"unknown {what} {target!r} (neither under {what}s nor in the registry)"
    if owners[target] != operator:
        return f"{what} {target!r} belongs to operator {owners[target]!r}, not {operator!r}"
    return None


def _existing_area_problem(
    area: AreaSpec, kind: str, parent: str | None, known: Known
) -> str | None:
    """An area named by id only must be in the registry, as the same kind under the same parent;
    one with a name may be new (or renamed, or moved: the file says so)."""
    if area.id not in known.areas:
        if area.name is None:
            return f"{kind} {area.id!r} is not in the registry: give its name to create it"
        return None
    known_kind, known_parent = known.areas[area.id]
    if known_kind != kind:
        return f"{area.id!r} is a {known_kind} in the registry, not a {kind}"
    if area.name is None and known_parent != parent:
        return f"{kind} {area.id!r} is under {known_parent!r} in the registry, not {parent!r}"
    return None


@dataclass(frozen=True, slots=True)
class KindCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def __add__(self, other: KindCounts) -> KindCounts:
        return KindCounts(
            self.created + other.created,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
        )


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import did, per kind of record."""

    areas: KindCounts
    contacts: KindCounts
    operators: KindCounts
    sites: KindCounts
    bins: KindCounts
    depots: KindCounts = KindCounts()
    vehicles: KindCounts = KindCounts()
    crews: KindCounts = KindCounts()

    def by_kind(self) -> dict[str, KindCounts]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def total(self) -> KindCounts:
        return sum(self.by_kind().values(), KindCounts())

    @property
    def created(self) -> int:
        return self.total().created

    @property
    def updated(self) -> int:
        return self.total().updated

    @property
    def unchanged(self) -> int:
        return self.total().unchanged


def import_fleet(session: Session, fleet: Fleet) -> ImportSummary:
    """Make the registry say what `fleet` says, in one transaction: records are created or
    updated, and a failure rolls everything back. Importing the same file twice changes nothing.

    Nothing missing from the file is deleted: bins keep their history (readings, collection
    requests) under their ids, so retiring a bin or a site is a deliberate act
    (devices/retirement.py), not a side effect of editing or truncating the YAML.

    `fleet` should come from `load_fleet`, which checks the references the database relies on
    (with `known_ids(session)` for a partial file). Areas named by id only are left as they are.
    """
    city = known_ids(session).city
    try:
        areas = KindCounts()
        for level in ("city", "district", "street", "community"):  # parents exist before children
            areas += _upsert(
                session,
                Area,
                [
                    {"id": area.id, "name": area.name, "kind": kind, "parent_id": parent}
                    for _loc, area, kind, parent in fleet.areas(city)
                    if kind == level and area.name is not None
                ],
            )
        summary = ImportSummary(
            areas=areas,
            # The secrets are set apart (`binwatch fleet webhook-secret`) and left as they are.
            contacts=_upsert(
                session,
                AreaContact,
                [
                    {"area_id": a.id, "mqtt_topic": c.mqtt_topic, "webhook_url": c.webhook_url}
                    for _loc, a, _kind, _parent in fleet.areas()
                    if (c := a.contact) is not None
                ],
                key="area_id",
            ),
            operators=_upsert(
                session,
                Operator,
                [
                    {"id": o.id, "name": o.name, "webhook_url": o.webhook_url}
                    for o in fleet.operators
                ],
            ),
            # Depots before the sites that name them.
            depots=_upsert_depots(session, fleet),
            sites=_upsert(
                session,
                Site,
                [
                    {
                        "id": s.id,
                        "name": s.name,
                        "site_type": s.type.value,
                        "community_id": s.community,
                        "operator_id": s.operator,
                        "address": s.address,
                        "latitude": s.lat,
                        "longitude": s.lon,
                        "depot_id": s.depot,
                    }
                    for s in fleet.sites
                ],
            ),
            bins=_upsert(
                session,
                Bin,
                [
                    {
                        "id": b.id,
                        "site_id": s.id,
                        "station": b.station,
                        "stream": b.stream.value,
                        "capacity_l": b.capacity_l,
                        "threshold_pct": b.threshold_pct,
                    }
                    for s in fleet.sites
                    for b in s.planned_bins()
                ],
            ),
            **_upsert_operator_side(session, fleet),
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return summary


def _upsert_depots(session: Session, fleet: Fleet) -> KindCounts:
    return _upsert(
        session,
        Depot,
        [
            {
                "id": d.id,
                "operator_id": d.operator,
                "name": d.name,
                "latitude": d.lat,
                "longitude": d.lon,
            }
            for d in fleet.depots
        ],
    )


def _upsert_operator_side(session: Session, fleet: Fleet) -> dict[str, KindCounts]:
    """Vehicles (after the depots they start from) before the crews that drive them."""
    return {
        "vehicles": _upsert(
            session,
            Vehicle,
            [
                {
                    "id": v.id,
                    "operator_id": v.operator,
                    "depot_id": v.depot,
                    "name": v.name,
                    "streams": [stream.value for stream in v.streams],
                    "capacity_l": v.capacity_l,
                    "capacity_kg": v.capacity_kg,
                    "shift_start": v.shift.start,
                    "shift_end": v.shift.end,
                    "breaks": v.breaks_json(),
                }
                for v in fleet.vehicles
            ],
        ),
        "crews": _upsert(
            session,
            Crew,
            [
                {"id": c.id, "operator_id": c.operator, "name": c.name, "vehicle_id": c.vehicle}
                for c in fleet.crews
            ],
        ),
    }


_Row = TypeVar("_Row", Area, AreaContact, Operator, Site, Bin, Depot, Vehicle, Crew)


def _upsert(
    session: Session, model: type[_Row], records: list[dict[str, Any]], *, key: str = "id"
) -> KindCounts:
    """Create missing rows, update changed ones, then flush so the next kind can refer to them."""
    existing = {getattr(row, key): row for row in session.scalars(select(model))}
    created = updated = 0
    for record in records:
        row = existing.get(record[key])
        if row is None:
            session.add(model(**record))
            created += 1
            continue
        # Column names get their own variable: `key` is the lookup column for every record.
        changes = {
            column: value for column, value in record.items() if getattr(row, column) != value
        }
        for column, value in changes.items():
            setattr(row, column, value)
        updated += bool(changes)
    session.flush()
    return KindCounts(created, updated, len(records) - created - updated)
