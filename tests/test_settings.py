"""Credentials inside the URL settings never show in a repr, a str or a log line, yet reach the
clients that need them."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.settings import LONGEST_SPAN, SPAN_UNITS, Settings, env_names, reveal, span_unit
from core.sql import make_engine

MQTT = "mqtt://ingest:s3cret-mqtt@127.0.0.1:1883"
DATABASE = "postgresql://binwatch:s3cret-db@db.example:5432/registry"


def test_url_credentials_never_show(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(mqtt_url=MQTT, database_url=DATABASE)
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings %s, broker %s", settings, settings.mqtt_url)
    endpoint = repr(settings.mqtt_endpoint())
    shown = " ".join(
        [repr(settings), str(settings), str(settings.database_url), caplog.text, endpoint]
    )
    assert "s3cret" not in shown
    assert "mqtt://ingest:***@127.0.0.1:1883" in shown
    assert "postgresql://binwatch:***@db.example:5432/registry" in shown


def test_url_credentials_reach_the_clients(tmp_path: Path) -> None:
    settings = Settings(mqtt_url=MQTT, database_url=DATABASE)
    assert settings.mqtt_endpoint().password == "s3cret-mqtt"
    assert reveal(settings.database_url) == DATABASE
    assert settings.as_env()["BINWATCH_MQTT_URL"] == MQTT  # for child processes
    local = Settings(database_url=f"sqlite:///{tmp_path / 'registry.db'}")
    engine = make_engine(local.database_url)  # the secret URL itself is accepted
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT 1").scalar() == 1
    engine.dispose()


def test_a_copy_validates_its_update() -> None:
    copied = Settings().model_copy(update={"mqtt_url": MQTT})
    assert "s3cret" not in repr(copied)
    assert copied.mqtt_endpoint().username == "ingest"


def test_groups_read_the_flat_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINWATCH_INGEST_BATCH_SIZE", "123")
    monkeypatch.setenv("BINWATCH_ALERT_FULL_FOR_MIN", "30")
    monkeypatch.setenv("BINWATCH_INFLUX_DB", "from_env")
    settings = Settings(influx_db="given")  # an argument wins over the environment
    assert settings.ingest.batch_size == 123
    assert settings.alert.full_for == timedelta(minutes=30)
    assert settings.influx.db == "given"
    assert settings.as_env()["BINWATCH_INGEST_BATCH_SIZE"] == "123"


def test_group_values_are_checked_and_copies_take_flat_names() -> None:
    with pytest.raises(ValidationError, match="batch_size"):
        Settings(ingest_batch_size=0)
    copied = Settings().model_copy(update={"ingest_buffer": 200, "api_rate_burst": 3})
    assert (copied.ingest.buffer, copied.api.rate_burst) == (200, 3)
    with pytest.raises(ValueError, match="ingest_bufer"):
        Settings().model_copy(update={"ingest_bufer": 200})
    assert "BINWATCH_COLLECTION_DEADLINE_KITCHEN_H".lower().removeprefix("binwatch_") in env_names()


def test_the_database_group_lives_beside_the_flat_database_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `_fold` splits flat names at the first underscore: database_url must stay top-level.
    monkeypatch.setenv("BINWATCH_DATABASE_URL", DATABASE)
    monkeypatch.setenv("BINWATCH_DATABASE_STATEMENT_TIMEOUT_S", "7.5")
    settings = Settings(database_pool_size=3)
    assert reveal(settings.database_url) == DATABASE
    assert (settings.database.pool_size, settings.database.statement_timeout_s) == (3, 7.5)
    assert settings.database.max_overflow == 10  # the default
    given = Settings(database_url="sqlite:///given.db", database_connect_timeout_s=4)
    assert (reveal(given.database_url), given.database.connect_timeout_s) == (
        "sqlite:///given.db",
        4,
    )
    copied = given.model_copy(update={"database_url": DATABASE, "database_max_overflow": 0})
    assert (reveal(copied.database_url), copied.database.max_overflow) == (DATABASE, 0)
    env = settings.as_env()
    assert env["BINWATCH_DATABASE_URL"] == DATABASE
    assert env["BINWATCH_DATABASE_POOL_SIZE"] == "3"
    with pytest.raises(ValidationError, match="pool_size"):
        Settings(database_pool_size=0)


def test_the_s3_photo_store_needs_a_bucket_and_keeps_its_secret(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert Settings().route.photo_store == "disk"  # as before the store could be chosen
    for variable, value in {
        "BINWATCH_ROUTE_PHOTO_STORE": "s3",
        "BINWATCH_ROUTE_PHOTO_S3_URL": "http://127.0.0.1:7480",
        "BINWATCH_ROUTE_PHOTO_S3_BUCKET": "photos",
        "BINWATCH_ROUTE_PHOTO_S3_ACCESS_KEY": "crew-photos",
        "BINWATCH_ROUTE_PHOTO_S3_SECRET_KEY": "s3cret-key",
    }.items():
        monkeypatch.setenv(variable, value)
    settings = Settings()
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings %s", settings)
    assert "s3cret" not in repr(settings) + caplog.text
    assert settings.route.photo_s3_secret_key is not None
    assert settings.as_env()["BINWATCH_ROUTE_PHOTO_S3_SECRET_KEY"] == "s3cret-key"
    refused = {
        "BINWATCH_ROUTE_PHOTO_S3_BUCKET": "needs BINWATCH_ROUTE_PHOTO_S3_BUCKET",
        "BINWATCH_ROUTE_PHOTO_S3_SECRET_KEY": "set both",
    }
    for variable, message in refused.items():
        with monkeypatch.context() as changed:
            changed.delenv(variable)
            with pytest.raises(ValidationError, match=message):
                Settings()
    with pytest.raises(ValidationError, match="http:// or https://"):
        Settings(route_photo_s3_url="127.0.0.1:7480")
    with pytest.raises(ValidationError, match="photo_store"):
        Settings(route_photo_store="ftp")


def test_spans_of_time_past_the_calendar_are_refused_at_start_with_their_name() -> None:
    """A span is added to dates (a deadline to a request's creation): 1e9 hours passed
    validation and then failed every request it dated, `inf` the process. Every span setting,
    in every group and at the top, is refused beyond 10 years, and no number may be infinite."""
    spans = {name: span_unit(name) for name in env_names() if span_unit(name) is not None}
    assert {"collection_deadline_kitchen_daily_h", "dead_letter_retention_days"} <= spans.keys()
    assert {"api_rate_per_s", "collection_forecast_max_rate_pct_h"}.isdisjoint(spans)
    unbounded = [n for n in spans if not any(hasattr(m, "le") for m in env_names()[n].metadata)]
    assert "collection_deadline_kitchen_daily_h" in unbounded
    for name in unbounded:
        unit = spans[name]
        assert unit is not None
        longest = LONGEST_SPAN.total_seconds() / SPAN_UNITS[unit]
        Settings(**_one(name, longest))  # ten years is still a span (an int field takes it whole)
        with pytest.raises(ValidationError, match=f"(?s){name.partition('_')[2]}.*10 years"):
            Settings(**_one(name, longest * 1.01))
    floats = [name for name, info in env_names().items() if info.annotation in (float, "float")]
    assert "alert_temp_raise_c" in floats
    for name in floats:
        for value in ("inf", "nan"):
            with pytest.raises(ValidationError, match="finite number"):
                Settings(**_one(name, value))


def test_names_that_end_in_a_unit_are_spans_unless_they_are_rates() -> None:
    """The rule is by name, so a new rate must say so (`_per_`, `rate`) or be taken for a span:
    this lists every name ending in a unit that is not a span."""
    not_spans = sorted(
        name
        for name in env_names()
        if name.rpartition("_")[2] in SPAN_UNITS and span_unit(name) is None
    )
    assert not_spans == [
        "alert_temp_rise_c_per_min",
        "api_rate_per_s",
        "collection_forecast_max_rate_pct_h",
    ]


def _one(name: str, value: object) -> dict[str, Any]:
    """One setting by its flat name, as keyword arguments."""
    return {name: value}


def test_the_raw_retention_is_an_influxql_duration_of_an_hour_or_more() -> None:
    """It goes into InfluxDB's CREATE RETENTION POLICY as written: a typo would fail there at
    the first start in InfluxDB's words, and anything after a duration would run as InfluxQL."""
    for good in ("90d", "52w", "2160h", "3600s", "INF"):
        assert Settings(raw_retention=good).raw_retention == good
    for bad, why in (
        ("90d; DROP DATABASE binwatch", "an InfluxQL duration"),
        ("90 d", "an InfluxQL duration"),
        ("1h30m", "an InfluxQL duration"),
        ("90D", "an InfluxQL duration"),
        ("", "an InfluxQL duration"),
        ("30m", "at least 1h"),
        ("0d", "at least 1h"),
    ):
        with pytest.raises(ValidationError, match=f"(?s)raw_retention.*{why}"):
            Settings(raw_retention=bad)


def test_the_topic_prefix_is_a_topic_the_broker_takes_and_one_line_of_the_acl() -> None:
    """It starts every topic binwatch publishes to and every rule `mqtt-auth export` writes:
    a line break in it wrote ACL lines of its own, a control character made every publish
    one the broker drops the connection for (tests/test_fleet.py shows Mosquitto doing so)."""
    for good in ("binwatch/v1", "city/垃圾分类/v1"):
        assert Settings(topic_prefix=good).topic_prefix == good
    for bad in ("", "a/+", "a/#", "/a", "a/", "a b", "a\nuser ingest", "a\x00", "a\x85", "$SYS"):
        with pytest.raises(ValidationError, match=r"(?s)topic_prefix.*a plain topic"):
            Settings(topic_prefix=bad)


def test_the_trusted_proxies_are_addresses_or_networks() -> None:
    """A typo would trust nobody, and every person behind the proxy would share its address for
    the console's login lockout: refused at start."""
    for good in ("127.0.0.1,::1", "10.0.0.0/8, 192.168.1.5", "*"):
        assert Settings(api_trusted_proxies=good).api.trusted_proxies == good
    for bad in ("proxy.internal", "10.0.0.300", "127.0.0.1;10.0.0.1", ""):
        with pytest.raises(ValidationError, match=r"(?s)trusted_proxies.*not an IP address"):
            Settings(api_trusted_proxies=bad)
