"""History is not rewritten in silence, through the real broker, ingest and InfluxDB: a reading
whose (bin, ts) is stored with other values is dead-lettered (`rewrites_history`), an identical
one (a QoS 1 redelivery) passes, and a restarted ingest, which remembers nothing, still knows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.influx import InfluxClient
from core.settings import Settings
from devices.contract import Reading, TopicKind, Topics
from devices.registry import BinTags
from ingest.history import EXACT_LOOKUPS_MAX
from ingest.service import Ingestor
from tests.conftest import count_points, dead_letter_parts, running_ingest
from tests.helpers import wait_for
from tests.mqtt_helpers import publish_all

T = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def _json(reading: Reading) -> bytes:
    return reading.model_dump_json(exclude_none=True).encode()


def _array(*readings: Reading) -> bytes:
    return b"[" + b",".join(_json(reading) for reading in readings) + b"]"


def _handled(ingest: Ingestor, count: int) -> None:
    wait_for(
        lambda: ingest.metrics.value("binwatch_ingest_received_messages_total") >= count,
        timeout=15,
        what=f"{count} messages handled",
    )


def test_a_bin_cannot_rewrite_its_stored_readings(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    bin_id = sorted(pilot_bins)[0]
    topic = Topics(settings.topic_prefix).bin(bin_id, TopicKind.telemetry)
    first = Reading(ts=T, seq=1, fill_pct=40.0, deposits=10, contaminated=1)
    rewrite = Reading(ts=T, seq=1, fill_pct=40.0, deposits=10, contaminated=9)
    later = Reading(ts=T + timedelta(minutes=1), seq=2, fill_pct=41.0)
    twice = [
        Reading(ts=T + timedelta(minutes=2), seq=3, fill_pct=1.0),
        Reading(ts=T + timedelta(minutes=2), seq=3, fill_pct=2.0),
    ]
    backfill = [Reading(ts=T - timedelta(minutes=m), fill_pct=30.0) for m in range(1, 6)]
    with running_ingest(settings) as ingest:
        publish_all(settings, [(topic, _json(first))])
        _handled(ingest, 1)
        publish_all(settings, [(topic, _json(rewrite)), (topic, _json(first))])
        publish_all(settings, [(topic, _json(later)), (topic, _array(*twice))])
        publish_all(settings, [(topic, _array(*backfill))])  # an offline buffer, never stored
        _handled(ingest, 6)
        assert dead_letter_parts(settings) == {"rewrites_history": 2}
        # the first of two values in one message wins; the redelivery and the rest are stored
        assert ingest.metrics.value("binwatch_ingest_stored_points_total") == 2 + 1 + 1 + 5
    with running_ingest(settings) as ingest:  # remembers nothing: InfluxDB is asked
        publish_all(settings, [(topic, _json(rewrite)), (topic, _json(first))])
        _handled(ingest, 2)
        assert ingest.metrics.value("binwatch_ingest_stored_points_total") == 1
    assert dead_letter_parts(settings) == {"rewrites_history": 3}
    assert count_points(settings) == 1 + 1 + 1 + 5
    influx = InfluxClient(settings)
    try:
        (series,) = influx.query(
            'SELECT "contaminated", "fill_pct" FROM "telemetry" WHERE time >= $t AND time <= $u',
            params={"t": int(T.timestamp() * 1e9), "u": int(twice[0].ts.timestamp() * 1e9)},
        )
    finally:
        influx.close()
    rows = {row["time"]: (row["contaminated"], row["fill_pct"]) for row in series.rows()}
    assert rows[int(T.timestamp() * 1000)] == (1, 40)
    assert rows[int(twice[0].ts.timestamp() * 1000)] == (None, 1)


def test_a_backdated_array_is_checked_against_a_range_read_back(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    bin_id = sorted(pilot_bins)[1]
    topic = Topics(settings.topic_prefix).bin(bin_id, TopicKind.telemetry)
    buffer = [
        Reading(ts=T + timedelta(seconds=10 * n), seq=n, fill_pct=float(n % 100))
        for n in range(EXACT_LOOKUPS_MAX * 3)
    ]
    changed = [*buffer[:-1], buffer[-1].model_copy(update={"fill_pct": 99.5})]
    with running_ingest(settings) as ingest:
        publish_all(settings, [(topic, _array(*buffer))])
        _handled(ingest, 1)
    with running_ingest(settings) as ingest:
        newer = Reading(ts=T + timedelta(hours=1), fill_pct=1.0)  # the bin's newest is now later
        publish_all(settings, [(topic, _json(newer))])
        _handled(ingest, 1)
        publish_all(settings, [(topic, _array(*buffer)), (topic, _array(*changed))])
        _handled(ingest, 3)
        stored = ingest.metrics.value("binwatch_ingest_stored_points_total")
        assert stored == 1 + len(buffer) + len(buffer) - 1
    assert dead_letter_parts(settings) == {"rewrites_history": 1}
