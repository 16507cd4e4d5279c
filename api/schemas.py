"""What the API accepts and returns: parameter types with their checks, the reading window, and
the response models (the OpenAPI contract).

Every time leaves the API as an RFC 3339 UTC string with milliseconds (`…T08:00:00.000Z`), since
InfluxDB stores milliseconds and a client should never have to guess a zone."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

from core.errors import InvalidRequest
from core.telemetry import MAX_RAW_RANGE
from core.times import UtcTime, rfc3339
from devices.contract import BIN_ID_PATTERN, SiteType, Stream
from devices.models import Area, Bin, Site

ID_REGEX: Final = f"^{BIN_ID_PATTERN}$"
"""Site, bin and area ids all follow the bin-id rule (they become MQTT topics and InfluxDB tags);
checking it at the edge means a query never sees an id it was not built for."""

EVERY_REGEX: Final = r"^[1-9][0-9]*(s|m|h|d|w)$"
_EVERY = re.compile(EVERY_REGEX)
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}

DEFAULT_RANGE: Final = timedelta(hours=24)
MIN_EVERY: Final = timedelta(minutes=1)
MAX_EVERY: Final = timedelta(days=366)  # also keeps the duration far inside InfluxDB's int64 ns
MAX_BUCKETS: Final = 10_000
# Times outside these cannot hold data (devices.contract accepts 2000–2100) and, far enough out,
# overflow InfluxDB's int64 nanoseconds, which would turn a typo into an upstream error.
EARLIEST: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2200, 1, 1, tzinfo=UTC)


# --- parameters -----------------------------------------------------------------------------


def parse_every(value: str | None) -> timedelta | None:
    """An InfluxQL duration as a timedelta; ValueError says what to send instead."""
    if value is None:
        return None
    match = _EVERY.fullmatch(value)
    if match is None:
        raise ValueError(f"every must be a duration like 15m, 1h or 1d (pattern {EVERY_REGEX})")
    seconds = int(value[:-1]) * _UNIT_SECONDS[match.group(1)]
    if seconds > MAX_EVERY.total_seconds():
        raise ValueError("every must be at most 366d")
    duration = timedelta(seconds=seconds)
    if duration < MIN_EVERY:
        raise ValueError("every must be at least 1m")
    return duration


def _check_every(value: str | None) -> str | None:
    parse_every(value)
    return value


_UNENCODED_PLUS = re.compile(r"\d \d\d:?\d\d$")


def _explain_time(value: object) -> object:
    """Turn the two commonest mistakes into messages that say what to send instead."""
    if isinstance(value, str):
        if _UNENCODED_PLUS.search(value):
            raise ValueError("the UTC offset's '+' arrived as a space: URL-encode it as %2B")
        try:
            naive = datetime.fromisoformat(value).tzinfo is None
        except ValueError:
            naive = False  # not ISO at all: pydantic's own message says so
        if naive:
            raise ValueError(
                "time has no UTC offset: add Z or one like +08:00 (e.g. 2026-11-27T08:00:00Z)"
            )
    return value


def _check_time(value: datetime | None) -> datetime | None:
    if value is not None and not EARLIEST <= value < LATEST:
        raise ValueError(f"time must be between {rfc3339(EARLIEST)} and {rfc3339(LATEST)}")
    return value.astimezone(UTC) if value is not None else None


EveryParam = Annotated[str | None, AfterValidator(_check_every)]
TimeParam = Annotated[
    AwareDatetime | None, BeforeValidator(_explain_time), AfterValidator(_check_time)
]


@dataclass(frozen=True, slots=True)
class Window:
    """A checked time range [start, end), and the bucket width when downsampling."""

    start: datetime
    end: datetime
    every: str | None
    timezone: str

    @classmethod
    def build(
        cls,
        *,
        start: datetime | None,
        end: datetime | None,
        every: str | None,
        now: datetime,
        timezone: str,
    ) -> Window:
        """Defaults (the last 24 h) and the checks that need more than one parameter."""
        end = end or now
        start = start or end - DEFAULT_RANGE
        if start >= end:
            raise InvalidRequest("start must be before end")
        span = end - start
        width = parse_every(every)
        if width is None:
            if span > MAX_RAW_RANGE:
                raise InvalidRequest(
                    f"start..end spans {_days(span)}; raw readings cover at most 7 days: "
                    "pass every (e.g. every=1h) to downsample, or narrow start/end"
                )
        elif (buckets := math.ceil(span / width)) > MAX_BUCKETS:
            raise InvalidRequest(
                f"every={every} cuts start..end into {buckets} buckets; the maximum is "
                f"{MAX_BUCKETS}: pass a longer every or narrow start/end"
            )
        return cls(start=start, end=end, every=every, timezone=timezone)


def _days(span: timedelta) -> str:
    return f"{span / timedelta(days=1):.1f} days"


# --- responses ------------------------------------------------------------------------------


Item = TypeVar("Item", bound=BaseModel)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AreaRef(_Out):
    id: str
    name: str


class OperatorRef(_Out):
    id: str
    name: str


Retired = Annotated[
    UtcTime | None,
    Field(
        description="when it was retired (kept for history, no longer expected to report; a"
        " retired site's bins are retired too); null while in service"
    ),
]


class SiteSummary(_Out):
    id: str
    name: str
    site_type: SiteType
    community_id: str
    operator_id: str
    address: str
    latitude: float
    longitude: float
    bin_count: int
    retired_at: Retired = None

    @classmethod
    def of(cls, site: Site, bin_count: int) -> SiteSummary:
        return cls.model_validate({**_columns(site), "bin_count": bin_count})


NextPage = Annotated[
    str | None,
    Field(description="the URL (path and query) of the next page; null on the last page"),
]


class Page(BaseModel, Generic[Item]):
    """One page of a list and how many match in all (`total`), for the list routes' paging."""

    items: list[Item]
    total: int | None = Field(
        description="how many match the filters in all; counted on a first page (no `after`), "
        "null on the pages `next` leads to"
    )
    limit: int
    offset: int
    next: NextPage = None


class SitePage(Page[SiteSummary]):
    """A page of sites (a named subclass keeps the OpenAPI schema's name)."""


class SiteDetail(_Out):
    id: str
    name: str
    site_type: SiteType
    address: str
    latitude: float
    longitude: float
    community: AreaRef
    street: AreaRef | None
    district: AreaRef | None
    operator: OperatorRef
    bin_count: int
    retired_at: Retired = None

    @classmethod
    def of(cls, site: Site, chain: list[Area]) -> SiteDetail:
        """`chain` is the site's community and its ancestors (registry.area_chain)."""
        by_kind = {area.kind: area for area in chain}
        return cls.model_validate(
            {
                **_columns(site),
                "community": site.community,
                "street": by_kind.get("street"),
                "district": by_kind.get("district"),
                "operator": site.operator,
                "bin_count": len(site.bins),
            }
        )


class Reading(BaseModel):
    """One stored reading: the bin's measurement time, when ingest received it, every field."""

    time: UtcTime
    received_at: UtcTime | None
    fill_pct: float
    seq: int | None = None
    deposits: int | None = None
    contaminated: int | None = None
    weight_kg: float | None = None
    battery_pct: float | None = None
    temp_c: float | None = None
    overflow: bool | None = None
    over90: bool | None = None


class Bucket(BaseModel):
    """Readings of one `every`-wide interval; `accuracy` is 1 − Σcontaminated / Σchecked_deposits."""

    time: UtcTime
    fill_pct_mean: float | None
    fill_pct_max: float | None
    deposits: int | None
    contaminated: int | None
    accuracy: float | None
    battery_pct_min: float | None
    temp_c_max: float | None
    readings: int


class BinPublic(_Out):
    id: str
    site_id: str
    station: str
    stream: Stream
    capacity_l: int
    threshold_pct: float
    retired_at: Retired = None


class BinState(BinPublic):
    latest: Reading | None

    @classmethod
    def of(cls, bin_: Bin, latest: Reading | None) -> BinState:
        return cls.model_validate({**_columns(bin_), "latest": latest})


class SiteRef(_Out):
    id: str
    name: str
    site_type: SiteType


class BinDetail(BinState):
    site: SiteRef

    @classmethod
    def of_bin(cls, bin_: Bin, latest: Reading | None) -> BinDetail:
        return cls.model_validate({**_columns(bin_), "latest": latest, "site": bin_.site})


class ReadingSeries(BaseModel):
    """Raw readings (`every` null) or buckets, oldest first; buckets without readings are left
    out and align to the city's local time, so `every=1d` gives local calendar days."""

    bin_id: str
    start: UtcTime
    end: UtcTime
    every: str | None
    rows: list[Reading] | list[Bucket]
    next: NextPage = None


class IngestHealth(BaseModel):
    last_write: UtcTime | None
    lag_ms: float | None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    influxdb: str
    database: str
    ingest: IngestHealth


def _columns(row: Site | Bin) -> dict[str, object]:
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}
