"""Cost per reading of the history check (ingest/history.py), against a real InfluxDB 1.6 it
starts on a free loopback port: `.venv/bin/python -m bench._history`. Figures for docs/ingest.md.

Four paths: a live reading newer than its bin's newest stored one (no query, the common case);
the first reading of a bin since start (one `last()` per bin); a redelivered or backdated reading
looked up exactly; a backdated array of one bin read back as a time range. Medians of a few
passes, µs per reading, on whatever else the machine is doing.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from binwatch.servers import InfluxServer, free_port
from core.influx import InfluxClient
from core.lineprotocol import tag_set, telemetry_line
from core.settings import Settings
from devices.contract import Reading
from ingest.history import History, InfluxReadings, Key

BINS = 200
PER_BIN = 50  # stored readings per bin, a minute apart
ARRAY = 4700  # the backdated array: one bin's readings, a second apart
PASSES = 5


def _per_reading(action: Callable[[], object], readings: int) -> float:
    times = []
    for _ in range(PASSES):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) / readings * 1e6


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        server = InfluxServer(Path(folder), free_port())
        server.start()
        try:
            _measure(Settings(influx_url=server.url, influx_db="history_bench"))
        finally:
            server.stop()


def _measure(settings: Settings) -> None:
    influx = InfluxClient(settings)
    influx.ensure_database("30d")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    stored: list[tuple[str, Reading]] = []
    for b in range(BINS):
        stored += [
            (f"bin-{b:03d}", Reading(ts=start + timedelta(minutes=n), seq=n, fill_pct=n % 100))
            for n in range(PER_BIN)
        ]
    array = [
        ("bin-array", Reading(ts=start + timedelta(seconds=n), seq=n, fill_pct=n % 100))
        for n in range(ARRAY)
    ]
    lines = [
        telemetry_line(
            tag_set({"bin": bin_id}), r.fill_pct, r.seq, None, None, None, None, None, 0,
            round(r.ts.timestamp() * 1000),
        )
        for bin_id, r in stored + array
    ]  # fmt: skip
    for offset in range(0, len(lines), 5000):
        influx.write(lines[offset : offset + 5000])
    store = InfluxReadings(influx, window_s=30 * 86400, clock=time.time)
    live = [(b, r.model_copy(update={"ts": r.ts + timedelta(days=1)})) for b, r in stored]

    def warm() -> History:
        history = History(store)
        history.stored(stored)
        return history

    history = warm()
    print(
        f"live reading, newer than its bin's newest: {_per_reading(lambda: history.conflicts(live), len(live)):.2f} µs"
    )
    bins = sorted({b for b, _ in stored})
    print(
        f"first reading of a bin since start (last() per bin): {_per_reading(lambda: store.newest(bins), len(bins)):.0f} µs per bin"
    )
    keys: list[Key] = [(b, round(r.ts.timestamp() * 1000)) for b, r in stored[:: PER_BIN // 10]]
    print(
        f"redelivered reading, exact lookup: {_per_reading(lambda: store.values(keys), len(keys)):.0f} µs ({len(keys)} keys)"
    )
    backdated = [(b, round(r.ts.timestamp() * 1000)) for b, r in array]
    print(
        f"backdated array of one bin, range read: {_per_reading(lambda: store.values(backdated), len(backdated)):.1f} µs ({len(backdated)} readings)"
    )
    influx.close()


if __name__ == "__main__":
    main()
