"""CPU per reading of each stage of one ingest worker, in one process, with a real InfluxDB and
SQLite registry but no broker: `.venv/bin/python -m bench._pipeline [--batches N] [--profile]`.

The worker is the production `Ingestor` with both rule hooks (as `binwatch ingest` builds it).
Instead of a broker connection its paho client reads the MQTT 5 PUBLISH packets that Mosquitto
would send for the bench's readings (QoS 1, no properties, the bench's payloads and topics) from
an in-memory socket, 64 KiB per `recv` as from the network. Timed per batch of
`ingest_batch_size` readings, with the thread's CPU clock (`time.thread_time`, so the InfluxDB
server's own CPU is not counted, only ingest's side of the HTTP write):
- **receive**: `loop_read` until the batch is buffered (paho's packet read, the PUBLISH decode,
  `on_message`, `decode`: topic, msgspec, the `Reading`, the line, the buffer append);
- **store**: `_store` (history check, the write to InfluxDB, the hooks, late-hour marks, the
  acknowledgements queued, the statistics point).
Prints medians over the batches after the first (the first pays the hooks' first sight of each
bin), µs per reading, with the conditions. `--profile` also prints cProfile's top functions
of the store and receive stages.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import statistics
import struct
import tempfile
import threading
import time
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from alerts.hook import AlertHook
from bench._payloads import build_spec
from bench.ingest import HISTORY_START, INTERVAL_S, load_registry
from binwatch.commands.ingest import settle_gc
from binwatch.servers import InfluxServer, free_port
from collection.hook import ThresholdHook
from core.settings import Settings
from ingest import paho_buffered
from ingest.service import Ingestor

PUBLISH_QOS1 = 0x32


def publish_packet(topic: str, payload: bytes, mid: int) -> bytes:
    """An MQTT 5 PUBLISH, QoS 1, no properties, as Mosquitto sends it to a subscriber."""
    name = topic.encode()
    body = struct.pack("!H", len(name)) + name + struct.pack("!H", mid) + b"\x00" + payload
    length, size = b"", len(body)
    while True:
        byte, size = size % 128, size // 128
        length += bytes([byte | (128 if size else 0)])
        if not size:
            break
    return bytes([PUBLISH_QOS1]) + length + body


class _StreamSocket:
    """What paho's buffered socket reads from: a byte stream served in chunks, writes dropped."""

    def __init__(self) -> None:
        self.data = memoryview(b"")
        self.sent = 0

    def load(self, data: bytes) -> None:
        self.data = memoryview(data)

    def recv(self, bufsize: int) -> bytes:
        chunk, self.data = self.data[:bufsize], self.data[bufsize:]
        if not chunk:
            raise BlockingIOError
        return bytes(chunk)

    def send(self, data: bytes) -> int:
        self.sent += len(data)
        return len(data)

    def pending(self) -> int:
        return 0

    def fileno(self) -> int:
        return -1


def _packets(spec: Any, count: int, first: int) -> bytes:
    out = []
    for index, (topic, payload) in enumerate(islice(spec.messages(first), count)):
        out.append(publish_packet(topic, payload, (first + index) % 65535 + 1))
    return b"".join(out)


def run(batches: int, profile: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="binwatch-pipeline-"))
    influx = InfluxServer(work / "influxdb", free_port())
    influx.start()
    try:
        registry_url = f"sqlite:///{work / 'registry.db'}"
        bins = load_registry(registry_url)
        settings = Settings(
            mqtt_url="mqtt://127.0.0.1:1",  # never connected
            influx_url=influx.url,
            influx_db="pipeline",
            topic_prefix="bench/pipeline/binwatch/v1",
            database_url=registry_url,
        )
        size = settings.ingest.batch_size
        spec = build_spec(
            list(bins.values()),
            prefix=settings.topic_prefix,
            start=datetime.now(UTC) - HISTORY_START,
            interval_s=INTERVAL_S,
        )
        ingestor = Ingestor(
            settings, on_stored=ThresholdHook(settings), on_arrivals=AlertHook(settings)
        )
        ingestor._prepare_database()  # noqa: SLF001
        ingestor._read_registry()  # noqa: SLF001
        client = ingestor._client  # noqa: SLF001
        stream = _StreamSocket()
        client._sock = paho_buffered._BufferedSocket(stream)  # noqa: SLF001
        ingestor._generation = 1  # noqa: SLF001
        stop = threading.Event()
        settle_gc()
        print(
            f"one ingest worker in-process: {batches} batches of {size:,} readings, {len(bins)}"
            f" bins, payload ~{len(next(spec.messages())[1])} B; Python {platform.python_version()},"
            f" {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"
        )
        receive_us, store_us = [], []
        profiles = (cProfile.Profile(), cProfile.Profile())
        for number in range(batches):
            stream.load(_packets(spec, size, number * size))
            on = profile and number > 0
            began = time.thread_time()
            if on:
                profiles[0].enable()
            while len(ingestor._pending) < size:  # noqa: SLF001
                client.loop_read()
            if on:
                profiles[0].disable()
            received = time.thread_time()
            batch = ingestor._take_batch(stop)  # noqa: SLF001
            if on:
                profiles[1].enable()
            ingestor._store(batch, stop)  # noqa: SLF001
            if on:
                profiles[1].disable()
            stored = time.thread_time()
            client._out_packet.clear()  # noqa: SLF001  (the acks, sent nowhere)
            receive_us.append((received - began) / size * 1e6)
            store_us.append((stored - received) / size * 1e6)
        stored_count = ingestor.influx.query('SELECT count("fill_pct") FROM "telemetry"')
        rec, sto = statistics.median(receive_us[1:]), statistics.median(store_us[1:])
        print(
            f"µs CPU per reading, median of batches 2–{batches} (first batch: "
            f"{receive_us[0]:.1f} + {store_us[0]:.1f}):"
        )
        print(f"  {rec:6.1f}  receive (paho read, PUBLISH, on_message, decode, buffer)")
        print(f"  {sto:6.1f}  store (history, write, hooks, marks, acks, statistics)")
        print(f"  {rec + sto:6.1f}  total; load average {os.getloadavg()[0]:.1f} at end")
        print(f"  stored: {stored_count}")
        if profile:
            for name, prof in zip(("receive", "store"), profiles, strict=True):
                print(f"\n-- cProfile, {name} (tottime, top 25)")
                pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        ingestor.influx.close()
        ingestor.engine.dispose()
    finally:
        influx.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    run(args.batches, args.profile)


if __name__ == "__main__":
    main()
