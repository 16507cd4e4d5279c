"""Ingest's CPU per reading draining a backlog: `.venv/bin/python -m bench._drain [--readings N]`.

The flood of `bench/ingest.py` measures CPU per reading at whatever rate the publisher reaches;
on a busy machine that rate falls, batches close on their timer (0.25 s) half empty, and each
batch's fixed costs (the write, the hooks' SQL, the statistics) are shared by fewer readings.
Here the readings wait in the broker first, in ingest's persistent session, so every batch is
full and the figure is ingest's own cost per reading, whatever else the machine does:
1. `binwatch ingest --workers 1` starts (its session and subscriptions made) and stops;
2. the bench's publisher sends N readings (QoS 1), which the broker queues for that session;
3. ingest starts again; its CPU (process tree, user + system) is read once the first batch is
   stored (start-up paid; with a backlog a batch is the whole buffer, 20,000) and again when
   the last is, and divided by the readings between.
Prints the figure with its conditions; repeat it (`--repeats`) and quote the median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy.orm import Session

from bench._payloads import build_spec
from bench.ingest import (
    HISTORY_START,
    INTERVAL_S,
    Context,
    IngestProcess,
    cpu_seconds,
    finish_helper,
    ingest_command,
    publisher_command,
    running_ingest,
    start_helper,
)
from binwatch.database import migrate
from binwatch.servers import InfluxServer, MosquittoServer, free_port
from core.sql import make_engine
from devices.fleet import default_fleet_path, import_fleet, load_fleet
from devices.registry import bin_tags

POLL_S = 0.02  # between reads of the stored count: a batch takes ~0.1 s or more
DRAIN_LIMIT_S = 600.0  # a drain that takes longer has stalled


def drain(ctx: Context, readings: int) -> dict[str, float]:
    settings = ctx.settings(f"drain_{uuid.uuid4().hex[:8]}")
    with running_ingest(ctx, settings, 1):
        pass  # the session and its subscriptions now exist in the broker
    published = finish_helper(
        start_helper(publisher_command(ctx, settings.topic_prefix, "--count", str(readings))),
        timeout=DRAIN_LIMIT_S,
    )
    ingest = IngestProcess(ctx, settings, 1)
    try:
        deadline = time.monotonic() + DRAIN_LIMIT_S
        first: tuple[float, float, float] | None = None
        while time.monotonic() < deadline:
            if ingest.process.poll() is not None:
                raise RuntimeError(f"ingest exited:\n{ingest.log_tail()}")
            try:
                stored = ingest.stored()
            except httpx.HTTPError:
                time.sleep(POLL_S)
                continue
            now = (stored, cpu_seconds(ingest.pid), time.monotonic())
            if first is None and stored >= settings.ingest.batch_size:
                first = now
            if first is not None and stored >= published["published"]:
                break
            time.sleep(POLL_S)
        else:
            raise RuntimeError(f"the backlog did not drain:\n{ingest.log_tail()}")
    finally:
        ingest.stop()
    counted = now[0] - first[0] if first else 0.0
    if not counted:
        raise RuntimeError("the backlog drained in one batch: ask for more readings")
    return {
        "readings": counted,
        "cpu_us_per_reading": (now[1] - first[1]) / counted * 1e6,
        "rate": counted / (now[2] - first[2]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="binwatch-drain-"))
    mqtt = MosquittoServer(work / "mosquitto", free_port())
    influx = InfluxServer(work / "influxdb", free_port())
    try:
        mqtt.start()
        influx.start()
        registry_url = f"sqlite:///{work / 'registry.db'}"
        migrate(registry_url)
        engine = make_engine(registry_url)
        with Session(engine) as session:
            import_fleet(session, load_fleet(default_fleet_path()))
            bins = bin_tags(session)
        engine.dispose()
        spec = build_spec(
            list(bins.values()),
            prefix="bench/db/binwatch/v1",
            start=datetime.now(UTC) - HISTORY_START,
            interval_s=INTERVAL_S,
        )
        spec_path = work / "payloads.json"
        spec_path.write_text(json.dumps(spec.to_json()))
        ctx = Context(
            work, mqtt, influx, registry_url, bins, spec, spec_path, args.readings,
            lambda workers: ingest_command(workers)[0],
        )  # fmt: skip
        print(
            f"ingest draining a backlog of {args.readings:,} readings, {len(bins)} bins,"
            f" {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"
        )
        runs = []
        for repeat in range(args.repeats):
            run = drain(ctx, args.readings)
            runs.append(run)
            print(
                f"  run {repeat + 1}: ingest {run['cpu_us_per_reading']:.1f} µs CPU per reading,"
                f" {run['rate']:,.0f} readings/s over {run['readings']:,.0f};"
                f" load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        cpu = statistics.median(r["cpu_us_per_reading"] for r in runs)
        rate = statistics.median(r["rate"] for r in runs)
        print(f"median: ingest {cpu:.1f} µs CPU per reading, {rate:,.0f} readings/s")
    finally:
        influx.stop()
        mqtt.stop()


if __name__ == "__main__":
    main()
