"""MQTT contract v1: topics and the wire models both sides use.

The simulator serialises these models and ingest parses them, so nobody writes contract JSON by
hand. Models are strict (`"50"` is not a number, `true` is not a count) and forbid unknown fields,
because a bin that sends something else is misconfigured and should be told so, not guessed at.
The topic prefix carries the version: a v2 contract gets its own prefix and its own models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from core.times import epoch_ms


class Stream(StrEnum):
    """The four national-standard waste streams; every bin holds exactly one."""

    recyclable = "recyclable"
    hazardous = "hazardous"
    kitchen = "kitchen"
    residual = "residual"


class SiteType(StrEnum):
    agency = "agency"
    school = "school"
    compound = "compound"


class TopicKind(StrEnum):
    telemetry = "telemetry"
    event = "event"
    status = "status"
    cmd = "cmd"


BIN_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_BIN_ID = re.compile(BIN_ID_PATTERN)


def is_id(value: str) -> bool:
    """Whether `value` has the form of every id of the registry (bins, sites, areas, accounts)."""
    return _BIN_ID.fullmatch(value) is not None


# A bin logs in to the broker as its id, beside the services', operators' and people's accounts
# (security/mqtt_auth.py), whose names say which they are: a bin may not have one of those
# names. A site called `admin-centre` made its bins `admin-centre-s1-kitchen` …, each issued an
# account that read every alert of the city and could not publish; a bin `collector` took the
# collector's password; `manager-…` and `operator-…` bins stopped `mqtt-auth issue` for the fleet.
ACCOUNT_NAMES = ("ingest", "collector", "alerter", "simulator")
ACCOUNT_PREFIXES = ("ingest-", "simulator-", "operator-", "manager-", "admin-")


def account_name_problem(bin_id: str) -> str | None:
    """Why `bin_id` cannot be a bin's (its MQTT account's) name, or None."""
    if bin_id in ACCOUNT_NAMES or bin_id.startswith(ACCOUNT_PREFIXES):
        return (
            f"bin id {bin_id!r} is the name of a broker account (a bin logs in as its id):"
            f" a bin's id is none of {', '.join(ACCOUNT_NAMES)} and starts with none of"
            f" {', '.join(ACCOUNT_PREFIXES)}"
        )
    return None


# Device clocks before 2000 or after 2100 are not clocks; a value in that range read as seconds
# instead of milliseconds is the commonest firmware mistake, so it gets its own message.
_EPOCH_MS_MIN = 946_684_800_000
_EPOCH_MS_MAX = 4_102_444_800_000


def parse_ts(value: Any) -> datetime:
    """Accept RFC 3339 with an offset, or integer epoch milliseconds; anything else is refused."""
    if isinstance(value, bool):
        raise ValueError("ts must be an RFC 3339 string or epoch milliseconds, not a boolean")
    if isinstance(value, int):
        if _EPOCH_MS_MIN // 1000 <= value <= _EPOCH_MS_MAX // 1000:
            raise ValueError(f"ts {value} looks like epoch seconds; send epoch milliseconds")
        if not _EPOCH_MS_MIN <= value <= _EPOCH_MS_MAX:
            raise ValueError(f"ts {value} is not epoch milliseconds between 2000 and 2100")
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str):
        if "\x00" in value:  # fromisoformat reads up to a NUL and ignores what follows it
            raise ValueError(f"ts {value[:40]!r} holds a NUL character")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"ts {value[:40]!r} is not an RFC 3339 time") from None
        if parsed.tzinfo is None:
            raise ValueError(
                "ts has no UTC offset; RFC 3339 needs one, e.g. 2026-11-27T08:00:00+08:00"
            )
        if not _EPOCH_MS_MIN <= parsed.timestamp() * 1000 <= _EPOCH_MS_MAX:
            raise ValueError(f"ts {value[:40]!r} is not between 2000 and 2100")
        return parsed.astimezone(UTC)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    raise ValueError("ts must be an RFC 3339 string or epoch milliseconds")


Timestamp = Annotated[
    datetime,
    BeforeValidator(parse_ts),
    PlainSerializer(epoch_ms, return_type=int, when_used="json"),
]


# Every number a bin sends must fit every store downstream: InfluxDB and SQLite hold signed
# 64-bit integers and finite floats, and Grafana (JavaScript) reads integers exactly only up to
# 2^53. The limits below are the physical ones of a bin, well inside those (docs/ingest.md).
SEQ_MAX = 2**53 - 1  # a counter that never wraps in any store, at any reporting rate
DEPOSITS_MAX = 1_000_000  # per reading: more than a deposit a second over a 30-day buffer
WEIGHT_KG_MAX = 10_000.0  # ten tonnes: beyond the largest compactor container
TEMP_C_MIN = -60.0  # colder than any city a bin stands in
TEMP_C_MAX = 1000.0  # a sensor in a fire reads high, but not beyond this


class _Wire(BaseModel):
    # allow_inf_nan: JSON's 1e400 parses as inf, and NaN/Infinity literals as themselves. Lone
    # surrogates ("\\ud800"), which no UTF-8 store can hold, pydantic refuses in every string.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class Reading(_Wire):
    """One measurement as a bin sends it on `…/bins/{bin_id}/telemetry`."""

    ts: Timestamp
    seq: int | None = Field(None, ge=0, le=SEQ_MAX)
    fill_pct: float = Field(ge=0, le=100)
    deposits: int | None = Field(None, ge=0, le=DEPOSITS_MAX)
    contaminated: int | None = Field(None, ge=0, le=DEPOSITS_MAX)
    weight_kg: float | None = Field(None, ge=0, le=WEIGHT_KG_MAX)
    battery_pct: float | None = Field(None, ge=0, le=100)
    temp_c: float | None = Field(None, ge=TEMP_C_MIN, le=TEMP_C_MAX)

    @model_validator(mode="after")
    def _contaminated_within_deposits(self) -> Reading:
        if self.contaminated is not None:
            if self.deposits is None:
                raise ValueError("contaminated needs deposits in the same reading")
            if self.contaminated > self.deposits:
                raise ValueError(
                    f"contaminated ({self.contaminated}) exceeds deposits ({self.deposits})"
                )
        return self


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("holds a NUL character, which no PostgreSQL text can hold")
    return value


# A string a bin sends may reach the registry (an event's detail becomes its alert's): a NUL in
# it failed every write of it on PostgreSQL, as a lone surrogate would on any store. The length
# bound stays inside, beside the check: pydantic refuses lone surrogates only in a constrained
# string.
Detail = Annotated[str, Field(max_length=1000), AfterValidator(_no_nul)]


class Event(_Wire):
    """Something that happened at a bin, on `…/bins/{bin_id}/event`."""

    ts: Timestamp
    type: Literal["fire", "tilt", "lid_open", "fault"]
    detail: Detail | None = None


class Status(_Wire):
    """Retained presence on `…/bins/{bin_id}/status`; the bin's will says `online: false`."""

    ts: Timestamp
    online: bool


@dataclass(frozen=True, slots=True)
class BinTopic:
    bin_id: str
    kind: TopicKind


class Topics:
    """Builds and parses contract-v1 topics under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._bins = f"{prefix}/bins/"

    def bin(self, bin_id: str, kind: TopicKind) -> str:
        return f"{self._bins}{bin_id}/{kind.value}"

    def dispatch(self, operator_id: str) -> str:
        return f"{self.prefix}/operators/{operator_id}/dispatch"

    def routes(self, operator_id: str) -> str:
        """Where an operator's planned routes of the day are published."""
        return f"{self.prefix}/operators/{operator_id}/routes"

    def simulator_faults(self) -> str:
        """Where `binwatch demo --inject` tells the demo's simulator which fault to play (demo
        only: the simulator's account alone may read or write it)."""
        return f"{self.prefix}/simulator/faults"

    def inbound_filters(self) -> list[str]:
        """What ingest subscribes to: everything bins send to the platform."""
        return [
            f"{self._bins}+/{kind.value}"
            for kind in (TopicKind.telemetry, TopicKind.event, TopicKind.status)
        ]

    def parse_bin_topic(self, topic: str) -> BinTopic:
        """The bin and kind named by a topic; `ValueError` says what is wrong with it."""
        if not topic.startswith(self._bins):
            raise ValueError(f"topic is not under {self._bins}")
        parts = topic[len(self._bins) :].split("/")
        if len(parts) != 2:
            raise ValueError("topic must be <prefix>/bins/<bin_id>/<telemetry|event|status>")
        bin_id, kind = parts
        if not is_id(bin_id):
            raise ValueError(f"bin id {bin_id[:70]!r} must match {BIN_ID_PATTERN}")
        try:
            return BinTopic(bin_id, TopicKind(kind))
        except ValueError:
            raise ValueError(f"unknown topic kind {kind[:30]!r}") from None
