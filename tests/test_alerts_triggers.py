"""The reading rules end to end: readings published to the real broker, stored by the real
ingest with the alert hook, raise overheat (by rate), seq-gap (with no grace: lost at once),
clock-skew and full-too-long alerts for the bins that sent them and no others, and the readings
that end those conditions clear them. (Fire, battery, offline and a gap's grace on the
alerter's clock: tests/test_alerts.py; every rule's edges: the pure tests in
tests/test_alerts_rules.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from alerts import store
from core.settings import Settings
from core.sql import make_engine
from devices.contract import Reading, TopicKind, Topics
from devices.registry import BinTags
from tests.helpers import wait_for
from tests.mqtt_helpers import publish_all
from tests.test_alerts import alert_ingest

pytestmark = pytest.mark.servers

MINUTE = timedelta(minutes=1)
HOT, GAP = "sz-peoples-government-s1-kitchen", "sz-peoples-government-s1-residual"
SKEW, FULL = "sz-peoples-government-s1-recyclable", "sz-peoples-government-s1-hazardous"


def raising(now: datetime) -> list[tuple[str, Reading]]:
    """Readings that raise one alert of each kind, stamped relative to `now` (the test's, not
    the module's import time: a skew is measured against the clock when ingest reads it)."""
    return [
        # 20 → 30 °C in a minute: 10 °C/min ≥ 5, though far under the 60 °C level.
        (HOT, Reading(ts=now - 3 * MINUTE, fill_pct=10, temp_c=20)),
        (HOT, Reading(ts=now - 2 * MINUTE, fill_pct=10, temp_c=30)),
        # seq 1, then 5: three readings lost on the way.
        (GAP, Reading(ts=now - 3 * MINUTE, seq=1, fill_pct=10)),
        (GAP, Reading(ts=now - 2 * MINUTE, seq=5, fill_pct=10)),
        # The bin's latest reading says it is 20 minutes earlier than it is.
        (SKEW, Reading(ts=now - 20 * MINUTE, fill_pct=10)),
        # At 100 % from 150 minutes ago until now: ≥ 120 minutes (the latest reading on time, or
        # it would be a clock alert too).
        (FULL, Reading(ts=now - 150 * MINUTE, fill_pct=100)),
        (FULL, Reading(ts=now - MINUTE / 2, fill_pct=100)),
    ]


def clearing(now: datetime) -> list[tuple[str, Reading]]:
    """Readings that end those conditions (the gap has none: its alert clears after a hold)."""
    return [
        (HOT, Reading(ts=now - MINUTE, fill_pct=10, temp_c=25)),  # ≤ 45 °C and falling
        (SKEW, Reading(ts=now, fill_pct=10)),  # in step again (within 60 s)
        (FULL, Reading(ts=now, fill_pct=10)),  # emptied: under 90 %
    ]


def _publish(settings: Settings, readings: list[tuple[str, Reading]]) -> None:
    topics = Topics(settings.topic_prefix)
    publish_all(
        settings,
        [
            (topics.bin(bin_id, TopicKind.telemetry), r.model_dump_json(exclude_none=True).encode())
            for bin_id, r in readings
        ],
    )


def _states(settings: Settings) -> dict[tuple[str, str], str]:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            alerts = store.list_alerts(session, limit=1000)[0]
    finally:
        engine.dispose()
    return {(alert.bin_id, alert.type): alert.state for alert in alerts}


def test_reading_rules_raise_and_clear_through_the_real_ingest(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    raised = {
        (HOT, "overheat"): "active",
        (GAP, "seq_gap"): "active",
        (SKEW, "clock_skew"): "active",
        (FULL, "full_too_long"): "active",
    }
    # Skipped readings lost at once, as with one worker that never delivers out of order.
    settings = settings.model_copy(update={"alert_gap_grace_s": 0})
    with alert_ingest(settings):
        now = datetime.now(UTC).replace(microsecond=0)
        _publish(settings, raising(now))
        wait_for(lambda: _states(settings) == raised, timeout=30, what=f"alerts {raised}")
        _publish(settings, clearing(now))
        # The gap has no "over" signal of its own: the alerter clears it after its hold time.
        cleared = {key: "active" if key[0] == GAP else "cleared" for key in raised}
        wait_for(lambda: _states(settings) == cleared, timeout=30, what=f"alerts {cleared}")
