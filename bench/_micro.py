"""Per-reading cost of each stage of ingest's decode path, in one process without servers:
`.venv/bin/python -m bench._micro`. Supports the profile in docs/performance.md with µs figures.

Each stage is timed over the same realistic payloads (the bench's templates for the pilot fleet),
with the garbage collector settled as in an ingest worker (`settle_gc`); figures are medians of
several passes, µs per reading, on whatever else the machine is doing.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from itertools import islice
from unittest.mock import patch

from binwatch.commands.ingest import settle_gc
from core.lineprotocol import point, tag_set
from core.times import epoch_ms
from devices.contract import Reading, Topics
from devices.fleet import default_fleet_path, load_fleet
from devices.registry import BinTags
from ingest import wire
from ingest.decode import decode

READINGS = 20_000
PASSES = 5


def _bins() -> list[BinTags]:
    """BinTags of the default fleet without a database (what `bin_tags` would return)."""
    import tempfile

    from sqlalchemy.orm import Session

    from binwatch.database import migrate
    from core.sql import make_engine
    from devices.fleet import import_fleet
    from devices.registry import bin_tags

    url = f"sqlite:///{tempfile.mkdtemp()}/registry.db"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        import_fleet(session, load_fleet(default_fleet_path()))
        tags = bin_tags(session)
    engine.dispose()
    return list(tags.values())


def main() -> None:
    from bench._payloads import build_spec

    bins = _bins()
    spec = build_spec(
        bins, prefix="m/binwatch/v1", start=datetime.now(UTC) - timedelta(days=20), interval_s=60
    )
    topics = Topics(spec.prefix)
    tags = {t.bin: tag_set(asdict(t)) for t in bins}
    messages = list(islice(spec.messages(), READINGS))
    texts = [payload.decode() for _, payload in messages]
    documents = [json.loads(text) for text in texts]
    readings = [Reading.model_validate(d) for d in documents]
    fields = [
        {
            "fill_pct": float(r.fill_pct), "seq": r.seq, "deposits": r.deposits,
            "contaminated": r.contaminated, "weight_kg": r.weight_kg,
            "battery_pct": r.battery_pct, "temp_c": r.temp_c,
            "overflow": int(r.fill_pct >= 100), "over90": int(r.fill_pct >= 90),
            "received_ms": 1,
        }
        for r in readings
    ]  # fmt: skip
    tag0 = next(iter(tags.values()))
    settle_gc()  # as an ingest worker runs (binwatch/commands/ingest.py)

    def timed(name: str, body: Callable[[], object]) -> None:
        runs = []
        for _ in range(PASSES):
            began = time.perf_counter()
            body()
            runs.append((time.perf_counter() - began) / READINGS * 1e6)
        print(f"  {statistics.median(runs):6.2f} µs  {name}")

    print(f"µs per reading, median of {PASSES} passes over {READINGS:,} readings:")

    def decode_all() -> object:
        return [
            decode(t, p, 1, topics=topics, tags_of=tags.get, max_payload=262144)
            for t, p in messages
        ]

    timed("decode() whole (the fast path: topic, wire.readings, line)", decode_all)
    timed(
        "  ingest.wire.readings (msgspec, parse_ts, Reading built)",
        lambda: [wire.readings(p) for _, p in messages],
    )
    with patch.object(wire, "readings", lambda payload: None):
        timed("decode() whole, the fast path declining (the model path, as before)", decode_all)
    print("  the model path's stages:")
    timed("  topics.parse_bin_topic", lambda: [topics.parse_bin_topic(t) for t, _ in messages])
    timed("  json.loads", lambda: [json.loads(t) for t in texts])
    timed(
        "  Reading.model_validate (incl. parse_ts)",
        lambda: [Reading.model_validate(d) for d in documents],
    )
    timed("  epoch_ms(reading.ts)", lambda: [epoch_ms(r.ts) for r in readings])
    timed("  lineprotocol.point", lambda: [point("telemetry", tag0, f, 1) for f in fields])


if __name__ == "__main__":
    main()
