"""Cost of ingest's two rule hooks per batch, in one process without servers:
`.venv/bin/python -m bench._hooks [--batches N] [--workers W]`.

Feeds the bench's readings (the same templates, `ts` and `seq` as `bench/ingest.py` publishes
them) in batches of 5,000 through the collection threshold hook and the alert hook on a fresh
SQLite registry holding the pilot fleet, as ingest would after each write, and prints the µs per
reading of each hook over time, with the sizes of the tables and of the SQLite WAL. With
`--workers 2` each hook instance gets every other message, as on a shared subscription.
A per-batch cost that rises with time, or a WAL that keeps growing, shows up here in seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.hook import AlertHook
from alerts.models import Alert, AlertDelivery, AlertEvent, BinHealth
from binwatch.database import migrate
from collection.hook import ThresholdHook
from core.settings import Settings
from core.sql import make_engine
from devices.arrivals import Arrival
from devices.contract import Reading
from devices.fleet import default_fleet_path, import_fleet, load_fleet
from devices.registry import bin_tags

BATCH = 5_000
RATE = 5_000.0  # readings/s the arrivals' `received_at` advances by, as in the soak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=120, help="batches per worker")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--every", type=int, default=20, help="print every N batches")
    args = parser.parse_args()

    from bench._payloads import build_spec

    work = Path(tempfile.mkdtemp(prefix="binwatch-hooks-"))
    db = work / "registry.db"
    url = f"sqlite:///{db}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        import_fleet(session, load_fleet(default_fleet_path()))
        bins = list(bin_tags(session).values())
    spec = build_spec(
        bins, prefix="binwatch/v1", start=datetime.now(UTC) - timedelta(days=20), interval_s=60
    )
    settings = Settings(database_url=url)
    workers = [(ThresholdHook(settings), AlertHook(settings)) for _ in range(args.workers)]
    messages = spec.messages()
    received = time.time()
    per_batch = BATCH * args.workers
    collection_us: list[float] = []
    alerts_us: list[float] = []
    print(f"µs per reading (median of the last {args.every} batches)")
    for index in range(1, args.batches + 1):
        chunk = list(islice(messages, per_batch))
        for worker, (threshold, alert) in enumerate(workers):
            readings: list[tuple[str, Reading]] = []
            arrivals: list[Arrival] = []
            for position, (topic, payload) in enumerate(chunk[worker :: args.workers]):
                bin_id = topic.split("/")[-2]
                reading = Reading.model_validate_json(payload)
                readings.append((bin_id, reading))
                arrivals.append(Arrival(bin_id, reading, received + position / RATE))
            began = time.perf_counter()
            threshold(readings)
            middle = time.perf_counter()
            alert(arrivals)
            ended = time.perf_counter()
            collection_us.append((middle - began) / len(readings) * 1e6)
            alerts_us.append((ended - middle) / len(readings) * 1e6)
        received += per_batch / RATE
        if index % args.every == 0:
            with Session(engine) as session:
                counts = [
                    session.scalar(select(func.count()).select_from(table)) or 0
                    for table in (Alert, AlertEvent, AlertDelivery, BinHealth)
                ]
            wal = db.with_name(db.name + "-wal")
            wal_kib = os.path.getsize(wal) / 1024 if wal.exists() else 0.0
            print(
                f"batch {index:4d}: collection {statistics.median(collection_us[-args.every :]):6.1f}"
                f"  alerts {statistics.median(alerts_us[-args.every :]):6.1f} µs/reading;"
                f"  alerts {counts[0]}, events {counts[1]}, deliveries {counts[2]},"
                f" bin_health {counts[3]}; db {db.stat().st_size / 1024:.0f} KiB,"
                f" wal {wal_kib:.0f} KiB"
            )
    for threshold, alert in workers:
        threshold.close()
        alert.close()
    engine.dispose()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
