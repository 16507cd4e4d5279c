"""The demo's replay against real Mosquitto, InfluxDB and ingest (with the alert hook): a
restarted simulator continues where the stored data ends, so a period replayed, interrupted and
replayed again is stored exactly once; and replayed history, sent as offline buffers, raises no
clock-skew alert while a live reading from a clock that is behind still does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from alerts import store
from core.influx import InfluxClient
from core.settings import Settings
from core.sql import make_engine
from devices.contract import Reading, TopicKind, Topics
from devices.registry import BinTags
from simulator.model import Resumed
from simulator.publisher import run_simulation
from simulator.resume import stored_ends
from tests.conftest import count_points
from tests.helpers import wait_for
from tests.mqtt_helpers import publish_all
from tests.test_alerts import alert_ingest

pytestmark = [
    pytest.mark.servers,
    pytest.mark.registry_backends(
        "sqlite",
        reason="the replay is the simulator's and ingest's; the registry only names the fleet here",
    ),
]

INTERVAL = timedelta(minutes=1)
SPEED = 600.0  # ten simulated minutes a real second: the replay takes a few seconds


def _stored(settings: Settings) -> dict[str, list[tuple[datetime, int]]]:
    """Every bin's stored (ts, seq), oldest first."""
    influx = InfluxClient(settings)
    try:
        series = influx.query("SELECT seq FROM telemetry GROUP BY bin")
    finally:
        influx.close()
    return {
        s.tags["bin"]: [
            (datetime.fromtimestamp(row["time"] / 1000, tz=UTC), row["seq"]) for row in s.rows()
        ]
        for s in series
    }


def _alerts(settings: Settings, kind: str) -> set[str]:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            return {a.bin_id for a in store.list_alerts(session, kind=kind, limit=1000)[0]}
    finally:
        engine.dispose()


def _resumed(settings: Settings, since: datetime) -> dict[str, Resumed]:
    influx = InfluxClient(settings)
    try:
        return stored_ends(influx, since=since)
    finally:
        influx.close()


def test_a_restarted_replay_continues_where_the_data_ends_and_is_no_clock_skew(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    bins = sorted(pilot_bins.values(), key=lambda t: t.bin)[:12]
    first = datetime.now(UTC).replace(microsecond=0) - 20 * INTERVAL
    with alert_ingest(settings):
        # A fresh start: nothing stored, the replay begins 20 minutes back; cut after 8 rounds.
        assert _resumed(settings, first) == {}
        one = run_simulation(
            settings, bins, interval_s=60, speed=SPEED, seed=3, start=first, rounds=8
        )
        wait_for(lambda: count_points(settings) == one.published, timeout=30, what="pass 1")
        # Two restarts, each until caught up with the clock (then waiting for the next round).
        published = one.published
        for _ in range(2):
            ends = _resumed(settings, first)
            assert set(ends) == {b.bin for b in bins}
            again = run_simulation(
                settings, bins, interval_s=60, speed=SPEED, seed=3, duration_s=4, resume=ends
            )
            published += again.published
            wait_for(
                lambda n=published: count_points(settings) == n,  # type: ignore[misc]
                timeout=30,
                what="restart",
            )
        stored = _stored(settings)
        now = datetime.now(UTC)
        for bin_id, points in stored.items():
            times = [ts for ts, _ in points]
            # One reading a minute from the first replayed one until the clock, each once:
            # exactly what one uninterrupted pass over that window writes.
            assert times[0] == first, bin_id
            expected = (now - first) // INTERVAL + 1
            assert len(times) in (expected, expected - 1), (bin_id, len(times), expected)
            assert times == [first + k * INTERVAL for k in range(len(times))], bin_id
            # The bin's counter continues as a real bin's would across restarts.
            assert [seq for _, seq in points] == list(range(len(points))), bin_id
        assert len(stored) == len(bins)
        assert published == sum(len(p) for p in stored.values())
        # The whole replay arrived up to 20 minutes late, as offline buffers: no clock skew.
        assert _alerts(settings, "clock_skew") == set()
        # A bin's clock is wrong when a live reading (sent alone) is 20 minutes behind; the
        # same reading in an offline buffer is not. (A clock ahead: tests/test_alerts_rules.py;
        # ingest rejects readings more than 5 minutes ahead.)
        others = sorted(set(pilot_bins) - {b.bin for b in bins})
        behind, buffered = others[0], others[1]
        old = Reading(ts=now - 20 * INTERVAL, fill_pct=5).model_dump_json()
        topics = Topics(settings.topic_prefix)
        publish_all(
            settings,
            [
                (topics.bin(behind, TopicKind.telemetry), old.encode()),
                (topics.bin(buffered, TopicKind.telemetry), f"[{old}]".encode()),
            ],
        )
        wait_for(lambda: count_points(settings) == published + 2, timeout=30, what="both stored")
        wait_for(
            lambda: _alerts(settings, "clock_skew") == {behind},
            timeout=30,
            what="a skew alert for the live reading only",
        )
