"""Where the stored data ends: each bin's last reading in InfluxDB, so a restarted simulator (the
demo's) continues from there instead of replaying a period that is stored already."""

from __future__ import annotations

from datetime import UTC, datetime

from core.coverage import NOTHING_YET
from core.errors import SinkRejected
from core.influx import InfluxClient
from core.telemetry import RAW_RP
from simulator.model import Resumed


def stored_ends(influx: InfluxClient, *, since: datetime) -> dict[str, Resumed]:
    """Each bin's newest reading at or after `since` (older ones do not matter to a run that
    starts at `since` anyway, and bounding the range keeps the query cheap)."""
    try:
        series = influx.query(
            f"SELECT fill_pct, battery_pct, seq FROM {RAW_RP}.telemetry WHERE time >= $since "
            "GROUP BY bin ORDER BY time DESC LIMIT 1",
            params={"since": round(since.timestamp() * 1000) * 1_000_000},
        )
    except SinkRejected as exc:
        if any(answer in exc.message for answer in NOTHING_YET):
            return {}
        raise
    ends: dict[str, Resumed] = {}
    for s in series:
        for row in s.rows():
            ends[s.tags["bin"]] = Resumed(
                ts=datetime.fromtimestamp(row["time"] / 1000, tz=UTC),
                seq=row["seq"],
                fill_pct=float(row["fill_pct"]),
                battery_pct=row["battery_pct"],
            )
    return ends
