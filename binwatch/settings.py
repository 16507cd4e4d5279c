"""The one configuration object. Built in each entry point and passed down; nothing else reads
the environment, so tests configure by constructing it rather than by fighting `os.environ`."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from binwatch.errors import ConfigError


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    host: str
    port: int
    username: str | None
    password: str | None


class Settings(BaseSettings):
    """Every knob binwatch has, read from `BINWATCH_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="BINWATCH_", extra="ignore")

    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="mqtt://user:pass@host:port")
    topic_prefix: str = Field("binwatch/v1", description="MQTT topic prefix of contract v1")
    influx_url: str = Field("http://127.0.0.1:8086", description="InfluxDB v1-compatible HTTP API")
    influx_db: str = Field("binwatch", description="InfluxDB database (bucket mapped via DBRP)")
    influx_username: str | None = Field(None, description="InfluxDB 1.x user")
    influx_password: SecretStr | None = Field(None, description="InfluxDB 1.x password")
    influx_token: SecretStr | None = Field(
        None, description="InfluxDB 2/3 token (Authorization: Token)"
    )
    raw_retention: str = Field(
        "90d", description="how long raw readings are kept (InfluxQL duration)"
    )
    database_url: str = Field(
        "sqlite:///var/binwatch.db", description="registry database (SQLAlchemy URL)"
    )
    database_pool_size: int = Field(
        5, ge=1, description="registry connections each process keeps open (pool size)"
    )
    database_max_overflow: int = Field(
        10, ge=0, description="registry connections opened beyond the pool at peaks"
    )
    database_pool_timeout_s: float = Field(
        30, gt=0, description="seconds to wait for a free registry connection before failing"
    )
    database_connect_timeout_s: int = Field(
        10, ge=1, description="seconds to wait for PostgreSQL to accept a connection"
    )
    database_statement_timeout_s: float = Field(
        30, ge=0, description="PostgreSQL cancels a registry statement after this long (0: never)"
    )
    timezone: str = Field("Asia/Shanghai", description="the city's local time zone")

    ingest_client_id: str = Field(
        "binwatch-ingest", description="MQTT client id of ingest (stable: persistent session)"
    )
    ingest_share_group: str = Field(
        "binwatch-ingest", description="shared-subscription group used with --workers > 1"
    )
    ingest_batch_size: int = Field(5000, ge=1, description="points per InfluxDB write")
    ingest_batch_seconds: float = Field(
        0.25, gt=0, description="longest a reading waits for its batch"
    )
    ingest_buffer: int = Field(
        20000, ge=1, le=65535, description="unacknowledged messages held (MQTT 5 Receive Maximum)"
    )
    ingest_max_payload: int = Field(
        256 * 1024, ge=1024, description="largest MQTT payload accepted, bytes"
    )
    ingest_metrics_port: int = Field(
        9108, ge=0, le=65535, description="Prometheus /metrics port of ingest (0: off)"
    )

    api_host: str = Field("127.0.0.1", description="address the API binds to")
    api_port: int = Field(8000, ge=1, le=65535, description="port the API binds to")
    api_url: str = Field(
        "http://127.0.0.1:8000", description="where the API answers (the simulator's crews call it)"
    )

    collection_deadline_kitchen_h: float = Field(
        12, gt=0, description="hours from request to completion for kitchen waste"
    )
    collection_deadline_hazardous_h: float = Field(
        24, gt=0, description="hours from request to completion for hazardous waste"
    )
    collection_deadline_recyclable_h: float = Field(
        48, gt=0, description="hours from request to completion for recyclables"
    )
    collection_deadline_residual_h: float = Field(
        48, gt=0, description="hours from request to completion for residual waste"
    )
    collection_escalate_after_h: float = Field(
        4, gt=0, description="hours from escalation level 1 (community) to level 2 (squad)"
    )
    collection_verify_window_min: float = Field(
        60, gt=0, description="minutes after completion for a reading to show the bin emptied"
    )
    collection_emptied_pct: float = Field(
        20, gt=0, le=100, description="fill at or below which a reading verifies a completion"
    )
    collection_kitchen_hour: int = Field(
        18, ge=0, le=23, description="local hour by which used kitchen bins get a request"
    )
    collection_work_start_hour: int = Field(
        7, ge=0, le=23, description="local hour operators' working day starts (forecast rule)"
    )
    collection_webhook_attempts: int = Field(
        5, ge=1, le=20, description="webhook deliveries tried before giving up on one"
    )

    alert_temp_raise_c: float = Field(
        60, description="temperature at or over which a bin raises an overheat (fire-risk) alert"
    )
    alert_temp_clear_c: float = Field(
        45, description="temperature at or under which an overheat alert clears (hysteresis)"
    )
    alert_temp_rise_c_per_min: float = Field(
        5, gt=0, description="temperature rise, °C per minute, that raises an overheat alert"
    )
    alert_battery_raise_pct: float = Field(
        15, ge=0, le=100, description="battery under which a battery alert is raised"
    )
    alert_battery_clear_pct: float = Field(
        25, ge=0, le=100, description="battery at or over which a battery alert clears"
    )
    alert_full_for_min: float = Field(
        120, gt=0, description="minutes at 100 % fill that raise a full-too-long alert"
    )
    alert_full_clear_pct: float = Field(
        90, gt=0, le=100, description="fill under which a full-too-long alert clears"
    )
    alert_skew_raise_s: float = Field(
        300, gt=0, description="device clock offset, seconds, that raises a clock alert"
    )
    alert_skew_clear_s: float = Field(
        60, gt=0, description="device clock offset, seconds, under which a clock alert clears"
    )
    alert_report_interval_s: float = Field(
        60, gt=0, description="the bins' reporting interval, seconds (offline detection)"
    )
    alert_offline_intervals: float = Field(
        3, gt=0, description="reporting intervals of silence after which a bin is offline"
    )
    alert_event_hold_min: float = Field(
        30, gt=0, description="minutes without a repeat after which an event's alert clears"
    )
    alert_gap_hold_min: float = Field(
        60, gt=0, description="minutes without a new seq gap after which a gap alert clears"
    )
    alert_webhook_attempts: int = Field(
        5, ge=1, le=20, description="webhook deliveries tried per alert notice and recipient"
    )

    admin_token: SecretStr | None = Field(
        None, description="an admin API key kept only here, for a fresh install (unset it later)"
    )
    api_token: SecretStr | None = Field(
        None, description="the API key the simulator's crews send (an operator or admin key)"
    )
    api_rate_per_s: float = Field(
        20, gt=0, description="requests per second one API key may make, sustained (per replica)"
    )
    api_rate_burst: int = Field(
        100, ge=1, description="requests one API key may make at once before being slowed"
    )
    api_max_body: int = Field(
        64 * 1024, ge=1024, description="largest request body the API accepts, bytes"
    )
    ingest_max_future_s: float = Field(
        300, ge=0, description="readings stamped further ahead of ingest's clock are rejected"
    )
    ingest_max_past_s: float = Field(
        30 * 24 * 3600, gt=0, description="readings older than this are rejected (offline buffers)"
    )

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_has_no_wildcards(cls, value: str) -> str:
        if (
            not value
            or any(c in value for c in "#+")
            or value.startswith("/")
            or value.endswith("/")
        ):
            raise ValueError(
                "topic prefix must be a plain topic like binwatch/v1 (no wildcards, no edge '/')"
            )
        return value

    def as_env(self) -> dict[str, str]:
        """These settings as BINWATCH_* variables, for child processes."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is not None:
                secret = value.get_secret_value() if isinstance(value, SecretStr) else value
                env[f"BINWATCH_{name.upper()}"] = str(secret)
        return env

    def mqtt_endpoint(self) -> MqttEndpoint:
        """The broker address and credentials from `mqtt_url`."""
        parts = urlsplit(self.mqtt_url)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ConfigError(
                f"BINWATCH_MQTT_URL must look like mqtt://user:pass@host:port, got {self.mqtt_url!r}"
            )
        return MqttEndpoint(
            host=parts.hostname,
            port=parts.port or 1883,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )
