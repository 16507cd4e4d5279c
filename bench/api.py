"""The API under load, in a real `binwatch api` process on loopback (issue 13): throughput of a
closed loop of N clients, and the API's memory under 20 concurrent maximal readings requests
(plus 5 clients that send a request and never read the answer).

Starts its own InfluxDB (free port, temporary folder) and a SQLite registry with the default
pilot fleet. Throughput is measured over registry reads and latest-reading reads of an empty
database (what the API itself costs, not InfluxDB's scans); then it writes `--readings` raw
readings for one bin spread over the last 6 days (so a 7-day raw request would hold all of them
without the row cap) for the memory run, and prints the figures.

    .venv/bin/python bench/api.py [--clients 50,100] [--seconds 10] [--readings 200000]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where bench/ingest.py would shadow the
# `ingest` package: the repository root goes there instead (as bench/ingest.py does).
_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path[0] = str(_HERE.parent)

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

from sqlalchemy.orm import Session  # noqa: E402

from binwatch.database import migrate  # noqa: E402
from binwatch.servers import InfluxServer, free_port  # noqa: E402
from core.influx import InfluxClient  # noqa: E402
from core.lineprotocol import tag_set  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.sql import make_engine  # noqa: E402
from core.times import rfc3339  # noqa: E402
from devices.fleet import default_fleet_path, import_fleet, load_fleet  # noqa: E402
from devices.registry import BinTags, bin_tags  # noqa: E402
from tests.api_process import ApiProcess, closed_loop  # noqa: E402
from tests.helpers import ADMIN_TOKEN  # noqa: E402

MAXIMAL = 20
NON_READERS = 5


def _write_readings(settings: Settings, tags: BinTags, count: int) -> None:
    influx = InfluxClient(settings)
    end = int(datetime.now(UTC).timestamp() * 1000)
    step = 6 * 24 * 3_600_000 // count
    tag_text = tag_set(dataclasses.asdict(tags))
    for first in range(0, count, 5000):
        influx.write(
            [
                f"telemetry{tag_text} fill_pct={i % 100}.5,deposits={i % 7}i,battery_pct=80.0,"
                f"temp_c=21.5,weight_kg=3.25,seq={i}i {end - (count - i) * step}"
                for i in range(first, min(count, first + 5000))
            ]
        )
    influx.close()


def _non_reader(port: int, path: str, stop: threading.Event) -> None:
    """Sends the request and never reads the answer."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n".encode()
        )
        stop.wait()


def _memory(api: ApiProcess, readings_path: str, seconds: float) -> None:
    idle = api.rss_kib()
    stop = threading.Event()
    peak = idle

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, api.rss_kib())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    non_readers = [
        threading.Thread(target=_non_reader, args=(api.port, readings_path, stop))
        for _ in range(NON_READERS)
    ]
    for thread in non_readers:
        thread.start()
    result = closed_loop(api.url, [readings_path], clients=MAXIMAL, seconds=seconds, timeout=60)
    stop.set()
    sampler.join()
    for thread in non_readers:
        thread.join()
    print(
        f"memory: {MAXIMAL} clients of maximal raw readings pages + {NON_READERS} non-readers, "
        f"{seconds:.0f} s: RSS idle {idle / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB, "
        f"after {api.rss_kib() / 1024:.0f} MiB; {result}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="50,100", help="closed-loop client counts")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--readings", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        influx = InfluxServer(tmp / "influx", free_port())
        influx.start()
        try:
            settings = Settings(
                influx_url=influx.url,
                influx_db="bench_api",
                database_url=f"sqlite:///{tmp / 'registry.db'}",
                admin_token=ADMIN_TOKEN,
                api_rate_per_s=1e6,
                api_rate_burst=1_000_000,
            )
            migrate(settings.database_url)
            engine = make_engine(settings.database_url)
            with Session(engine) as session:
                import_fleet(session, load_fleet(default_fleet_path()))
                tags = bin_tags(session)
            engine.dispose()
            busy = tags[min(tags)]
            influx_client = InfluxClient(settings)
            influx_client.ensure_database(settings.raw_retention)
            influx_client.close()
            now = datetime.now(UTC)
            window = f"start={rfc3339(now - timedelta(days=7))}&end={rfc3339(now)}"
            readings_path = f"/api/v1/bins/{busy.bin}/readings?{window}"
            bins = sorted(tags)[:5]
            sites = sorted({t.site for t in tags.values()})[:3]
            paths = [
                "/api/v1/sites",
                "/api/v1/alerts",
                "/api/v1/collections",
                *(f"/api/v1/bins/{b}" for b in bins),
                *(f"/api/v1/sites/{s}/bins" for s in sites),
            ]
            with ApiProcess(settings, tmp / "api.log") as api:
                for clients in (int(n) for n in args.clients.split(",")):
                    result = closed_loop(
                        api.url, paths, clients=clients, seconds=args.seconds, timeout=60
                    )
                    print(f"throughput: {clients} clients, {args.seconds:.0f} s: {result}")
                _write_readings(settings, busy, args.readings)
                _memory(api, readings_path, args.seconds)
        finally:
            influx.stop()


if __name__ == "__main__":
    main()
