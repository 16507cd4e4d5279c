"""The one configuration object. Built in each entry point and passed down; nothing else reads
the environment, so tests configure by constructing it rather than by fighting `os.environ`.

The settings come in groups, one per part (`settings.ingest.batch_size`, `settings.alert.…`),
and each part takes its group. Every group field is read from `BINWATCH_<GROUP>_<FIELD>` (the
flat names binwatch has always had: `BINWATCH_INGEST_BATCH_SIZE`), and the constructor and
`model_copy` take the same flat names (`Settings(ingest_batch_size=100)`), so environment,
compose files and docs need no change."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, Literal, Self
from urllib.parse import unquote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from core.errors import ConfigError
from core.topic_names import topic_problem

ENV_PREFIX: Final = "BINWATCH_"


class SecretUrl(SecretStr):
    """A URL that may carry credentials (`mqtt://user:pass@host`): its `str()` and `repr()`, so
    every log line and error message, show it with the password as `***`; the whole URL only
    through `get_secret_value()`."""

    def _display(self) -> str:
        return redact_url(self.get_secret_value())


def redact_url(url: str) -> str:
    """`url` with its password, if any, replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def reveal(value: str | SecretStr) -> str:
    """The plain text of a setting that may be a secret (a caller may pass a plain URL)."""
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    """Why `url` is not a `scheme://host[:port]` address of one of `schemes`, or None: a
    setting's URL is checked when a command starts, not at its first use (`localhost:8086`
    failed there as "unsupported protocol 'localhost://'", a typo'd port as a traceback)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number, or out of range)
    except ValueError as exc:
        return f"{exc}; expected {schemes[0]}://host:port"
    if parts.scheme not in schemes or not parts.hostname:
        return f"expected {' or '.join(s + '://' for s in schemes)}host:port"
    return None


def _http_url(value: str | None) -> str | None:
    """A validator: an http(s)://host[:port] URL, or unset."""
    if value is not None and (problem := url_problem(value, ("http", "https"))):
        raise ValueError(problem)
    return value


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)


# A span of time a setting gives (`…_s`, `…_min`, `…_h`, `…_days`; rates such as `…_per_s` or
# `…_rate_pct_h` are not spans) is added to dates: more than this would overflow them at run
# time (a deadline of 1e9 hours fails the request it dates, inf the process), so it is refused
# at start with the setting's name.
SPAN_UNITS: Final = {"s": 1.0, "min": 60.0, "h": 3600.0, "days": 86400.0}
LONGEST_SPAN: Final = timedelta(days=3650)
# `raw_retention`, an InfluxQL duration literal (the units a retention policy takes).
RETENTION_UNITS: Final = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
RETENTION: Final = re.compile(r"(\d{1,9})([wdhms])")


def span_unit(name: str) -> str | None:
    """The unit of a setting that is a span of time, by its name; None for any other."""
    unit = name.rpartition("_")[2]
    if unit not in SPAN_UNITS or "_per_" in name or "rate" in name:
        return None
    return unit


def _fits_the_calendar(value: Any, info: ValidationInfo) -> Any:
    unit = span_unit(info.field_name or "")
    if unit is not None and isinstance(value, int | float):
        longest = LONGEST_SPAN.total_seconds() / SPAN_UNITS[unit]
        if value > longest:
            raise ValueError(
                f"at most {longest:,.0f} {unit} (10 years): a longer span does not fit the "
                "dates it is added to"
            )
    return value


class _Group(BaseModel):
    """One part's settings; validated like the rest, unknown names refused, no infinite or
    NaN number, no span of time past the calendar."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    _spans_fit = field_validator("*")(_fits_the_calendar)


class DatabaseSettings(_Group):
    """The registry database's connections, per process (`BINWATCH_DATABASE_*`; the URL itself
    is `BINWATCH_DATABASE_URL`, a top-level setting). docs/deployment.md has the arithmetic."""

    pool_size: int = Field(
        5, ge=1, description="registry connections each process keeps open (pool size)"
    )
    max_overflow: int = Field(
        10, ge=0, description="registry connections opened beyond the pool at peaks"
    )
    pool_timeout_s: float = Field(
        30, gt=0, description="seconds to wait for a free registry connection before failing"
    )
    connect_timeout_s: int = Field(
        10, ge=1, description="seconds to wait for PostgreSQL to accept a connection"
    )
    statement_timeout_s: float = Field(
        30, ge=0, description="PostgreSQL cancels a registry statement after this long (0: never)"
    )


class InfluxSettings(_Group):
    """InfluxDB: where, which database, and the credentials (`BINWATCH_INFLUX_*`)."""

    url: str = Field("http://127.0.0.1:8086", description="InfluxDB v1-compatible HTTP API")
    db: str = Field("binwatch", description="InfluxDB database (bucket mapped via DBRP)")
    username: str | None = Field(None, description="InfluxDB 1.x user")
    password: SecretStr | None = Field(None, description="InfluxDB 1.x password")
    token: SecretStr | None = Field(None, description="InfluxDB 2/3 token (Authorization: Token)")

    _url_is_http = field_validator("url")(_http_url)


class IngestSettings(_Group):
    """Ingest's MQTT session, batching, buffer and what it accepts (`BINWATCH_INGEST_*`)."""

    client_id: str = Field(
        "binwatch-ingest",
        description="ingest's MQTT client id on a broker without accounts (else its user name)",
    )
    share_group: str = Field(
        "binwatch-ingest", description="shared-subscription group used with --workers > 1"
    )
    first_worker: int = Field(
        0,
        ge=0,
        description="number of this machine's first ingest worker (account ingest-<n>): "
        "machines sharing one broker take ranges that do not overlap",
    )
    batch_size: int = Field(5000, ge=1, description="points per InfluxDB write")
    batch_seconds: float = Field(0.25, gt=0, description="longest a reading waits for its batch")
    buffer: int = Field(
        20000, ge=1, le=65535, description="unacknowledged messages held (MQTT 5 Receive Maximum)"
    )
    max_payload: int = Field(
        256 * 1024, ge=1024, description="largest MQTT payload accepted, bytes"
    )
    metrics_port: int = Field(
        9108, ge=0, le=65535, description="port of ingest's /metrics and /health (0: off)"
    )
    stall_after_s: float = Field(
        30, gt=0, description="ingest's /health is 503 once a message waits unacknowledged longer"
    )
    stop_timeout_s: float = Field(
        8, gt=0, description="longest ingest spends on SIGTERM finishing its batch, seconds"
    )
    max_future_s: float = Field(
        300, ge=0, description="readings stamped further ahead of ingest's clock are rejected"
    )
    max_past_s: float = Field(
        30 * 24 * 3600, gt=0, description="readings older than this are rejected (offline buffers)"
    )
    registry_refresh_s: float = Field(
        10,
        gt=0,
        le=60,
        description="how often ingest re-reads the registry for new, retired and reinstated bins",
    )


class ApiSettings(_Group):
    """The HTTP API: where it listens and answers, its limits (`BINWATCH_API_*`)."""

    host: str = Field("127.0.0.1", description="address the API binds to")
    port: int = Field(8000, ge=1, le=65535, description="port the API binds to")
    url: str = Field(
        "http://127.0.0.1:8000", description="where the API answers (the simulator's crews call it)"
    )

    _url_is_http = field_validator("url")(_http_url)

    token: SecretStr | None = Field(
        None, description="the API key the simulator's crews send (an operator or admin key)"
    )
    crew_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="the crew keys the simulator's crews tap their planned stops with, as a "
        'JSON object of vehicle id to key ({"lvyuan-dry-1": "bw_…"}); a vehicle without one '
        "reports its stops with BINWATCH_API_TOKEN (acknowledge, complete)",
    )

    @field_validator("crew_tokens", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        """From the environment, a JSON object."""
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("must be a JSON object of vehicle id to crew key") from None
        return value

    trusted_proxies: str = Field(
        "127.0.0.1,::1",
        description="the reverse proxies whose X-Forwarded-For names the client: addresses or "
        "networks, comma-separated, or * for any peer (uvicorn's forwarded_allow_ips)",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: str) -> str:
        """Each an IP address or network: a typo would trust nobody, silently, and every person
        behind the proxy would share its address for the console's login lockout."""
        for part in value.split(","):
            if part.strip() != "*":
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"{part.strip()!r} is not an IP address or network") from None
        return value

    rate_per_s: float = Field(
        20, gt=0, description="requests per second one API key may make, sustained (per replica)"
    )
    rate_burst: int = Field(
        100, ge=1, description="requests one API key may make at once before being slowed"
    )
    key_cache_s: float = Field(
        5.0,
        ge=0,
        le=60,
        description="how long a verified API key is remembered in each API process without "
        "reading the registry again: a revoked key still works this long at most (0: look "
        "every request's key up)",
    )
    report_cache_s: float = Field(
        5.0,
        ge=0,
        le=300,
        description="how long each API process remembers a compliance report, ranking or page "
        "of the site list it computed, serving it again without reading InfluxDB or the "
        "registry: an answer reflects the data of at most this long ago (0: compute each)",
    )
    max_body: int = Field(
        64 * 1024, ge=1024, description="largest request body the API accepts, bytes"
    )
    max_concurrency: int = Field(
        16,
        ge=1,
        le=1000,
        description="requests the API serves at once (and registry connections it keeps); "
        "more wait up to BINWATCH_API_QUEUE_WAIT_S, then get 503 with Retry-After",
    )
    queue_wait_s: float = Field(
        1.0, ge=0, le=30, description="how long a request waits for a free slot before a 503"
    )
    influx_concurrency: int = Field(
        8,
        ge=1,
        le=1000,
        description="of the BINWATCH_API_MAX_CONCURRENCY requests, how many may read InfluxDB at "
        "once; the rest stay for registry-only requests when InfluxDB is slow",
    )
    influx_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="longest the API waits for one InfluxDB answer before a 503 (seconds)",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="a connection that has not sent a whole request head this long after "
        "connecting (or after its last answer) is closed",
    )
    stall_timeout_s: float = Field(
        30.0,
        gt=0,
        le=600,
        description="a client that sends none of its request body, or takes none of its answer, "
        "for this long is cut off (it would hold one of the BINWATCH_API_MAX_CONCURRENCY slots)",
    )


class WebhookSettings(_Group):
    """Where and how binwatch may call webhooks (`BINWATCH_WEBHOOK_*`)."""

    allow_private: bool = Field(
        False,
        description="allow webhooks over http and to loopback/private addresses (demo, tests)",
    )
    timeout_s: float = Field(
        10, gt=0, le=120, description="longest a webhook receiver may take per read or write"
    )
    workers_per_destination: int = Field(
        2, ge=1, le=16, description="webhook POSTs in flight at once to one receiver (host:port)"
    )


class MailSettings(_Group):
    """The SMTP server that sends the contacts' e-mail (`BINWATCH_MAIL_*`; no host: no e-mail)."""

    host: str | None = Field(None, description="SMTP server for e-mail notifications (unset: off)")
    port: int = Field(587, ge=1, le=65535, description="SMTP port (587: submission)")
    starttls: bool = Field(True, description="upgrade the connection with STARTTLS before login")
    ca_file: str | None = Field(
        None, description="CA certificates (PEM) to trust for STARTTLS besides the system's"
    )
    username: str | None = Field(None, description="SMTP login (unset: no login)")
    password: SecretStr | None = Field(None, description="SMTP password")
    sender: str = Field("binwatch@localhost", description="the From address of notifications")
    timeout_s: float = Field(10, gt=0, le=120, description="longest the SMTP server may take")


class CollectionSettings(_Group):
    """Collection deadlines, escalation, verification and webhooks (`BINWATCH_COLLECTION_*`)."""

    deadline_kitchen_h: float = Field(
        12, gt=0, description="hours from request to completion for kitchen waste"
    )
    deadline_kitchen_daily_h: float = Field(
        24,
        gt=0,
        description="hours from the kitchen round's request to completion (to the next round: "
        "crews on day shifts clear the day's kitchen waste the next day)",
    )
    deadline_hazardous_h: float = Field(
        24, gt=0, description="hours from request to completion for hazardous waste"
    )
    deadline_recyclable_h: float = Field(
        48, gt=0, description="hours from request to completion for recyclables"
    )
    deadline_residual_h: float = Field(
        48, gt=0, description="hours from request to completion for residual waste"
    )
    escalate_after_h: float = Field(
        4, gt=0, description="hours from escalation level 1 (community) to level 2 (squad)"
    )
    verify_window_min: float = Field(
        60, gt=0, description="minutes after completion for a reading to show the bin emptied"
    )
    emptied_pct: float = Field(
        20, gt=0, le=100, description="fill at or below which a reading verifies a completion"
    )
    kitchen_hour: int = Field(
        18, ge=0, le=23, description="local hour by which used kitchen bins get a request"
    )
    work_start_hour: int = Field(
        7, ge=0, le=23, description="local hour operators' working day starts (forecast rule)"
    )
    webhook_attempts: int = Field(
        5, ge=1, le=20, description="webhook deliveries tried before giving up on one"
    )
    forecast_min_span_min: float = Field(
        60, gt=0, description="forecast: minutes of history since the last emptying it needs"
    )
    forecast_min_readings: int = Field(
        6, ge=3, description="forecast: readings since the last emptying it needs"
    )
    forecast_max_rate_pct_h: float = Field(
        50, gt=0, description="forecast: fastest plausible fill, %/h (faster: a sensor jump)"
    )
    forecast_max_reach: float = Field(
        2, gt=0, description="forecast: looks ahead at most this many times its history's span"
    )
    forecast_day_margin: float = Field(
        1.2,
        ge=1,
        le=3,
        description="route plans: the next day's fill is taken as the last day's gain × this",
    )
    top_up_pct: float = Field(
        50,
        ge=0,
        le=100,
        description="route plans: a bin this full comes along with a stop for its stream nearby",
    )
    top_up_reach_m: float = Field(
        500,
        ge=0,
        le=2000,
        description="route plans: how near (m, straight line) a stop brings bins along (0: same site)",
    )

    def deadline_h(self, stream: str) -> float:
        """Hours from request to completion for a stream (`deadline_<stream>_h`)."""
        hours: float = getattr(self, f"deadline_{stream}_h")
        return hours


class RouteSettings(_Group):
    """Planning the operators' routes of the day (`BINWATCH_ROUTE_*`; docs/collection.md)."""

    circuity: float = Field(
        1.4, ge=1, le=5, description="street distance ÷ straight-line distance (no OSRM)"
    )
    speed_kmh: float = Field(
        20, gt=0, le=120, description="average urban driving speed, lights included (no OSRM)"
    )
    osrm_url: str | None = Field(
        None, description="an OSRM-compatible table service for travel times (unset: straight line)"
    )

    _osrm_url_is_http = field_validator("osrm_url")(_http_url)

    service_s: int = Field(
        120, ge=0, le=3600, description="seconds at a bin: wheel it out, tip it, put it back"
    )
    unload_min: float = Field(
        20, ge=0, le=240, description="minutes to unload a full vehicle at its depot"
    )
    plan_hour: int | None = Field(
        None,
        ge=0,
        le=23,
        description="local hour the collector plans each day (unset: only on request)",
    )
    solver_threads: int = Field(2, ge=1, le=64, description="threads the VROOM solver uses")
    solver_exploration: int = Field(
        3, ge=0, le=5, description="VROOM exploration level: higher plans better, slower"
    )
    photo_max_kb: int = Field(
        8192, ge=16, le=65536, description="largest proof-of-service photo a crew may send, KiB"
    )
    photo_late_h: float = Field(
        24,
        gt=0,
        le=168,
        description="hours after its tap a photo may still follow it (a phone offline overnight)",
    )
    photo_store: Literal["disk", "s3"] = Field(
        "disk", description="where the crews' photos are kept: disk (PHOTO_DIR) or s3 (PHOTO_S3_*)"
    )
    photo_dir: str = Field(
        "var/photos", min_length=1, description="folder the crews' proof-of-service photos go to"
    )
    photo_s3_url: str | None = Field(
        None, description="S3-compatible endpoint, http(s)://host:port (unset: AWS's for REGION)"
    )
    photo_s3_bucket: str | None = Field(
        None, description="bucket the crews' photos go to (PHOTO_STORE=s3); it must exist"
    )
    photo_s3_region: str = Field("us-east-1", description="the bucket's region (signing)")
    photo_s3_access_key: str | None = Field(
        None, description="S3 access key id (unset with SECRET_KEY: boto3's own credentials)"
    )
    photo_s3_secret_key: SecretStr | None = Field(None, description="S3 secret access key")

    @field_validator("photo_s3_url")
    @classmethod
    def _endpoint_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("an S3 endpoint is an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _s3_store_is_complete(self) -> Self:
        if self.photo_store == "s3" and not self.photo_s3_bucket:
            raise ValueError("BINWATCH_ROUTE_PHOTO_STORE=s3 needs BINWATCH_ROUTE_PHOTO_S3_BUCKET")
        if (self.photo_s3_access_key is None) != (self.photo_s3_secret_key is None):
            raise ValueError(
                "set both BINWATCH_ROUTE_PHOTO_S3_ACCESS_KEY and BINWATCH_ROUTE_PHOTO_S3_SECRET_KEY,"
                " or neither"
            )
        return self


class AlertSettings(_Group):
    """The alert rules' levels and delivery (`BINWATCH_ALERT_*`)."""

    temp_raise_c: float = Field(
        60, description="temperature at or over which a bin raises an overheat (fire-risk) alert"
    )
    temp_clear_c: float = Field(
        45, description="temperature at or under which an overheat alert clears (hysteresis)"
    )
    temp_rise_c_per_min: float = Field(
        5, gt=0, description="temperature rise, °C per minute, that raises an overheat alert"
    )
    battery_raise_pct: float = Field(
        15, ge=0, le=100, description="battery under which a battery alert is raised"
    )
    battery_clear_pct: float = Field(
        25, ge=0, le=100, description="battery at or over which a battery alert clears"
    )
    full_for_min: float = Field(
        120, gt=0, description="minutes at 100 % fill that raise a full-too-long alert"
    )
    full_clear_pct: float = Field(
        90, gt=0, le=100, description="fill under which a full-too-long alert clears"
    )
    skew_raise_s: float = Field(
        300, gt=0, description="device clock offset, seconds, that raises a clock alert"
    )
    skew_clear_s: float = Field(
        60, gt=0, description="device clock offset, seconds, under which a clock alert clears"
    )
    report_interval_s: float = Field(
        60, gt=0, description="the bins' reporting interval, seconds (offline detection)"
    )
    offline_intervals: float = Field(
        3, gt=0, description="reporting intervals of silence after which a bin is offline"
    )
    event_hold_min: float = Field(
        30, gt=0, description="minutes without a repeat after which an event's alert clears"
    )
    gap_grace_s: float = Field(
        120,
        ge=0,
        description="seconds a seq gap waits for its skipped readings (overtaken by later ones,"
        " e.g. held by another ingest worker) before they count as lost; 0: lost at once",
    )
    gap_hold_min: float = Field(
        60, gt=0, description="minutes without a new seq gap after which a gap alert clears"
    )
    webhook_attempts: int = Field(
        5, ge=1, le=20, description="webhook deliveries tried per alert notice and recipient"
    )

    # As the rules use them.
    @property
    def full_for(self) -> timedelta:
        return timedelta(minutes=self.full_for_min)

    @property
    def skew_raise(self) -> timedelta:
        return timedelta(seconds=self.skew_raise_s)

    @property
    def skew_clear(self) -> timedelta:
        return timedelta(seconds=self.skew_clear_s)

    @property
    def silent_for(self) -> timedelta:
        """Silence after which a bin is offline."""
        return timedelta(seconds=self.report_interval_s * self.offline_intervals)

    @property
    def event_hold(self) -> timedelta:
        return timedelta(minutes=self.event_hold_min)

    @property
    def gap_grace(self) -> timedelta:
        return timedelta(seconds=self.gap_grace_s)

    @property
    def gap_hold(self) -> timedelta:
        return timedelta(minutes=self.gap_hold_min)


class ConsoleSettings(_Group):
    """The web console's sessions and logins (`BINWATCH_CONSOLE_*`)."""

    secure_cookie: bool = Field(
        False, description="mark the session cookie Secure (set when the console is behind https)"
    )
    idle_min: float = Field(
        30, gt=0, description="a session ends after this long without a request"
    )
    max_age_h: float = Field(12, gt=0, description="a session ends this long after the login")
    account_failures: int = Field(
        5, ge=1, description="failed logins of one account before it is locked for a while"
    )
    address_failures: int = Field(
        20, ge=1, description="failed logins from one address before it is locked for a while"
    )
    lockout_min: float = Field(
        15, gt=0, description="how long failed logins count, and how long a lock lasts"
    )
    tile_url: str = Field(
        "",
        pattern=r"^$|^https?://[^\s\"'<>]*\{z\}[^\s\"'<>]*$",
        description="map tiles behind the console's map, e.g. https://tile.example.org/{z}/{x}/{y}.png"
        " (empty: sites drawn on a plain background)",
    )
    tile_attribution: str = Field(
        "", max_length=300, description="the credit the tile provider asks for, shown on the map"
    )

    @property
    def idle(self) -> timedelta:
        return timedelta(minutes=self.idle_min)

    @property
    def max_age(self) -> timedelta:
        return timedelta(hours=self.max_age_h)

    @property
    def lockout(self) -> timedelta:
        return timedelta(minutes=self.lockout_min)


GROUPS: Final[dict[str, type[_Group]]] = {
    "database": DatabaseSettings,
    "influx": InfluxSettings,
    "ingest": IngestSettings,
    "api": ApiSettings,
    "collection": CollectionSettings,
    "route": RouteSettings,
    "alert": AlertSettings,
    "webhook": WebhookSettings,
    "mail": MailSettings,
    "console": ConsoleSettings,
}
"""Each group's attribute on Settings, which is also its environment prefix."""


class _GroupedEnvironment(PydanticBaseSettingsSource):
    """`BINWATCH_<GROUP>_<FIELD>` for every field of every group (pydantic-settings' own source
    would read a nested group only from one JSON variable or `__`-separated names)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the groups whole

    def __call__(self) -> dict[str, Any]:
        environment = {key.upper(): value for key, value in os.environ.items()}
        found: dict[str, Any] = {}
        for group, model in GROUPS.items():
            for name in model.model_fields:
                value = environment.get(f"{ENV_PREFIX}{group}_{name}".upper())
                if value is not None:
                    found.setdefault(group, {})[name] = value
        return found


def _fold(flat: Mapping[str, Any], into: Mapping[str, Any]) -> dict[str, Any]:
    """`into` with flat group names (`ingest_batch_size`) moved into their group's dict."""
    folded = dict(into)
    for key, value in flat.items():
        group, _, name = key.partition("_")
        if group in GROUPS and name in GROUPS[group].model_fields:
            current = folded.get(group) or {}
            if isinstance(current, BaseModel):
                current = dict(current)
            folded[group] = {**current, name: value}
            folded.pop(key, None)
    return folded


class Settings(BaseSettings):
    """Every knob binwatch has, read from `BINWATCH_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", allow_inf_nan=False)
    _spans_fit = field_validator("*")(_fits_the_calendar)
    mqtt_url: SecretUrl = Field(
        SecretUrl("mqtt://127.0.0.1:1883"), description="mqtt://user:pass@host:port"
    )
    topic_prefix: str = Field("binwatch/v1", description="MQTT topic prefix of contract v1")
    raw_retention: str = Field(
        "90d", description="how long raw readings are kept (InfluxQL duration)"
    )
    database_url: SecretUrl = Field(
        SecretUrl("sqlite:///var/binwatch.db"), description="registry database (SQLAlchemy URL)"
    )
    timezone: str = Field("Asia/Shanghai", description="the city's local time zone")
    admin_token: SecretStr | None = Field(
        None, description="an admin API key kept only here, for a fresh install (unset it later)"
    )
    collector_metrics_port: int = Field(
        9110, ge=0, le=65535, description="Prometheus /metrics port of the collector (0: off)"
    )
    alerter_metrics_port: int = Field(
        9111, ge=0, le=65535, description="Prometheus /metrics port of the alerter (0: off)"
    )
    dead_letter_retention_days: float = Field(
        30, gt=0, description="dead letters older than this are pruned (their counts are kept)"
    )
    dead_letter_max_per_bin: int = Field(
        1000, ge=1, description="dead letters kept per bin; older ones are pruned, counts kept"
    )

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    influx: InfluxSettings = Field(default_factory=InfluxSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    collection: CollectionSettings = Field(default_factory=CollectionSettings)
    route: RouteSettings = Field(default_factory=RouteSettings)
    alert: AlertSettings = Field(default_factory=AlertSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    @field_validator("raw_retention")
    @classmethod
    def _retention_is_an_influxql_duration(cls, value: str) -> str:
        """It is written into InfluxDB's `CREATE RETENTION POLICY` as it is: anything but a
        duration literal would fail there, at the first start, in InfluxDB's words (or run as
        more InfluxQL), and InfluxDB keeps nothing for less than an hour."""
        if value.upper() == "INF":
            return value
        found = RETENTION.fullmatch(value)
        if found is None:
            raise ValueError(
                "an InfluxQL duration such as 90d, 52w or 2160h (one of w d h m s), or INF"
            )
        if int(found.group(1)) * RETENTION_UNITS[found.group(2)] < 3600:
            raise ValueError("at least 1h (InfluxDB keeps nothing for less), or INF to keep all")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: SecretUrl) -> SecretUrl:
        if problem := url_problem(value.get_secret_value(), ("mqtt", "tcp")):
            raise ValueError(f"{problem}, e.g. mqtt://user:pass@127.0.0.1:1883")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretUrl) -> SecretUrl:
        """A SQLAlchemy URL of a backend the registry runs on, whose driver is installed:
        `postgres://` (Heroku's spelling) or a path alone failed in SQLAlchemy at the first
        query, as a traceback."""
        accepted = (
            "a SQLAlchemy URL of SQLite or PostgreSQL, such as sqlite:///var/binwatch.db or "
            "postgresql+psycopg://user:pass@host:5432/binwatch"
        )
        try:
            url = make_url(value.get_secret_value())
            backend = url.get_backend_name()
            if backend not in ("sqlite", "postgresql"):
                raise ValueError(f"{backend!r} is not SQLite or PostgreSQL")
            url.get_dialect().import_dbapi()
        except ImportError as exc:
            raise ValueError(f"its driver is not installed ({exc}); expected {accepted}") from None
        except (ValueError, sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
            raise ValueError(f"{exc}; expected {accepted}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not an IANA time zone, such as Asia/Shanghai or UTC"
            ) from None
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_has_no_wildcards(cls, value: str) -> str:
        if topic_problem(value) or value.startswith("/") or value.endswith("/"):
            raise ValueError(
                "topic prefix must be a plain topic like binwatch/v1 (no wildcards, spaces or"
                " control characters, no edge '/', not '$…')"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _GroupedEnvironment(settings_cls),
            env_settings,
            dotenv_settings,
            file_secret_settings,
        )

    @model_validator(mode="before")
    @classmethod
    def _flat_names_into_groups(cls, data: Any) -> Any:
        """`Settings(ingest_batch_size=100)`: a flat name wins over the environment's value."""
        return _fold(data, data) if isinstance(data, Mapping) else data

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with `update` (flat names, as for the constructor) validated like the
        constructor's arguments; pydantic's own model_copy validates nothing, and would take
        `ingest_buffer` for a new attribute rather than the ingest group's `buffer`."""
        if not update:
            return super().model_copy(deep=deep)
        known = {*type(self).model_fields, *env_names()}
        unknown = sorted(set(update) - {name.lower() for name in known})
        if unknown:
            raise ValueError(f"not settings: {', '.join(unknown)}")
        return self.model_validate({**dict(self), **update})

    def as_env(self) -> dict[str, str]:
        """These settings as BINWATCH_* variables, for child processes."""
        env: dict[str, str] = {}
        for name, value in _flat_items(self):
            if value is not None:
                secret = value.get_secret_value() if isinstance(value, SecretStr) else value
                env[f"{ENV_PREFIX}{name.upper()}"] = str(secret)
        return env

    def mqtt_endpoint(self) -> MqttEndpoint:
        """The broker address and credentials from `mqtt_url`."""
        parts = urlsplit(self.mqtt_url.get_secret_value())
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ConfigError(
                f"BINWATCH_MQTT_URL must look like mqtt://user:pass@host:port, got {self.mqtt_url}"
            )
        return MqttEndpoint(
            host=parts.hostname,
            port=parts.port or 1883,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def _flat_items(settings: Settings) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for name, value in settings:
        if isinstance(value, _Group):
            items += [(f"{name}_{field}", inner) for field, inner in value]
        else:
            items.append((name, value))
    return items


def env_names() -> dict[str, FieldInfo]:
    """Every setting by its flat name (`ingest_batch_size`; the variable is BINWATCH_ + it in
    capitals), for the CLI's help and the check of docker-compose's variables."""
    names: dict[str, FieldInfo] = {}
    for name, info in Settings.model_fields.items():
        if name in GROUPS:
            names |= {
                f"{name}_{field}": inner for field, inner in GROUPS[name].model_fields.items()
            }
        else:
            names[name] = info
    return names
