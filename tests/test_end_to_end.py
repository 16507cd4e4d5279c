"""The whole path on real servers: simulator → Mosquitto → ingest → InfluxDB → API."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings
from devices.registry import BinTags
from ingest.service import Ingestor
from simulator.publisher import run_simulation
from tests.conftest import count_points
from tests.helpers import ADMIN_HEADERS, wait_for

READINGS = 5000
SEED = 2021


def test_every_published_reading_is_stored_once_and_served_by_the_api(
    settings: Settings, pilot_bins: dict[str, BinTags], ingest: Ingestor
) -> None:
    bins = list(pilot_bins.values())
    rounds = math.ceil(READINGS / len(bins))
    # A fixed start, so the same run can be published again; recent, to stay within retention.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=rounds + 1)
    published = run_simulation(
        settings, bins, interval_s=60, speed=0, seed=SEED, rounds=rounds, start=start
    )
    expected = rounds * len(bins)
    assert published.published == expected >= READINGS

    wait_for(lambda: count_points(settings) >= expected, timeout=60, what=f"{expected} points")
    assert count_points(settings) == expected
    # The simulator also published each bin's retained status, online first and offline last.
    statuses = 2 * len(bins)
    wait_for(
        lambda: count_points(settings, "device_status") >= statuses, timeout=30, what="statuses"
    )
    assert count_points(settings, "device_status") == statuses
    stored = ingest.metrics.value("binwatch_ingest_stored_points_total")
    assert stored == expected + statuses

    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as api:
        for bin_id in sorted(published.last)[:: max(1, len(bins) // 25)]:
            sent = published.last[bin_id]
            latest = api.get(f"/api/v1/bins/{bin_id}").json()["latest"]
            assert datetime.fromisoformat(latest["time"]) == sent.ts
            assert latest["fill_pct"] == sent.fill_pct
            assert latest["seq"] == sent.seq
            assert latest["deposits"] == sent.deposits
            assert latest["contaminated"] == sent.contaminated

    # Redelivery: the very same readings again (same seed, same start) overwrite, never add.
    again = run_simulation(
        settings, bins, interval_s=60, speed=0, seed=SEED, rounds=rounds, start=start
    )
    assert again.last == published.last
    wait_for(
        lambda: ingest.metrics.value("binwatch_ingest_stored_points_total") >= 2 * stored,
        timeout=60,
        what="the redelivered readings to be written",
    )
    assert count_points(settings) == expected
    assert count_points(settings, "device_status") == statuses
