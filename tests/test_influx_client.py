"""core.influx against a real InfluxDB: what its calls leave for the cyclic collector."""

from __future__ import annotations

import gc
import time
from pathlib import Path

from binwatch.servers import InfluxServer
from core.influx import InfluxClient
from tests.conftest import AttachedServer
from tests.helpers import isolated_settings


def test_an_answer_and_the_body_it_was_sent_are_freed_without_the_cyclic_collector(
    influx_server: InfluxServer | AttachedServer, tmp_path: Path
) -> None:
    """An ingest worker runs the cyclic collector rarely (settle_gc), so an answer that only
    a cycle keeps alive holds its request's body (~0.5 MB per batch written) until a pass: a
    soak's RSS rose by tens of MiB between passes. Every answer, accepted or refused, must be
    freed by reference counting alone."""
    settings = isolated_settings(
        "mqtt://127.0.0.1:1", influx_server.url, f"sqlite:///{tmp_path}/r.db"
    )
    client = InfluxClient(settings)
    client.ensure_database(settings.raw_retention)
    now_ms = time.time_ns() // 1_000_000
    lines = [f"probe,bin=b{n} fill_pct={n}i {now_ms - n}" for n in range(2_000)]
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        client.write(lines)
        assert client.query("SELECT count(fill_pct) FROM probe")[0].values[0][1] == 2_000
        client.ping()
        gc.collect()
        left = {type(found).__module__.split(".")[0] for found in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        client.close()
    assert not left & {"httpx", "httpcore"}


def test_every_retention_the_settings_accept_is_one_influxdb_takes(
    influx_server: InfluxServer | AttachedServer, tmp_path: Path
) -> None:
    """`BINWATCH_RAW_RETENTION` is checked at start (core/settings.py) and written into
    InfluxDB's retention policy as it is: each form the check lets through, from the shortest,
    is one InfluxDB creates and alters to, with the duration it means."""
    settings = isolated_settings(
        "mqtt://127.0.0.1:1", influx_server.url, f"sqlite:///{tmp_path}/r.db"
    )
    client = InfluxClient(settings)
    try:
        for retention, duration in (
            ("3600s", "1h0m0s"),
            ("60m", "1h0m0s"),
            ("2160h", "2160h0m0s"),
            ("90d", "2160h0m0s"),
            ("52w", "8736h0m0s"),
            ("INF", "0s"),
        ):
            client.ensure_database(
                settings.model_copy(update={"raw_retention": retention}).raw_retention
            )
            [policies] = client.query(
                f"SHOW RETENTION POLICIES ON {settings.influx.db}", database=False
            )
            raw = next(row for row in policies.rows() if row["name"] == "raw")
            assert raw["duration"] == duration, retention
    finally:
        client.close()
