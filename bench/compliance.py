"""Compliance report latency over a year of rollups and collection requests for the default
pilot fleet.

Starts its own InfluxDB (free port, temporary folder) and registry, writes one rollup point per
bin and hour for a year straight into `hourly.telemetry` as line protocol (a year of readings
through MQTT and ingest would be 227 M messages and measure ingest, not reports; the rollup is
what long reports read), builds the per-site daily tier from it with the backfill that `binwatch
rollups backfill` runs, and registers a year of collection requests (about one per bin every two
days). Then it times a site report, a district report and a ranking through the real API app,
read from the hourly tier alone and with the daily tier (what `source=auto` picks beyond a day),
and how each grows with the window (1, 3, 12 months) and with the number of sites (a community,
a street, a district, the city). Prints medians of `--runs` runs.

    .venv/bin/python bench/compliance.py [--runs 7] [--days 365]
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
import random  # noqa: E402
import secrets  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

from fastapi.testclient import TestClient  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from sqlalchemy import insert  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from api.main import create_app  # noqa: E402
from binwatch.database import migrate  # noqa: E402
from binwatch.servers import InfluxServer, free_port  # noqa: E402
from collection.models import CollectionRequest  # noqa: E402  # noqa: E402
from compliance.rollups import backfill  # noqa: E402
from core.influx import InfluxClient  # noqa: E402
from core.lineprotocol import point, tag_set  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.sql import make_engine  # noqa: E402  # noqa: E402  # noqa: E402
from core.telemetry import ROLLUP_MEASUREMENT, ROLLUP_RP, ensure_rollups  # noqa: E402
from devices.fleet import default_fleet_path, import_fleet, load_fleet  # noqa: E402
from devices.registry import BinTags, bin_tags  # noqa: E402  # noqa: E402

TARGET_MS = 300.0
ADMIN_TOKEN = secrets.token_urlsafe(32)  # the city administrator's view: every site in scope
BATCH = 20_000  # points per write: a few MB, well inside one POST
HOUR_MS = 3_600_000
SITE = "jiazhou-shuian"
DISTRICT = "shizhong"
AREAS = ("xiaoba", "lvxin", "shizhong", "pilot-city")  # community → street → district → city


def load_year(influx: InfluxClient, bins: dict[str, BinTags], end: datetime, days: int) -> int:
    """One rollup point per bin and hour for `days` days before `end`, deterministic."""
    rng = random.Random(2021)
    end_ms = int(end.timestamp() * 1000)
    first_ms = end_ms - days * 24 * HOUR_MS
    tags = {bin_id: tag_set(vars_of(tag)) for bin_id, tag in bins.items()}
    lines: list[str] = []
    written = 0
    for ts in range(first_ms, end_ms, HOUR_MS):
        for bin_id in bins:
            deposits = rng.randint(0, 30)
            contaminated = rng.randint(0, deposits // 5)
            full = rng.random() < 0.02
            fields: dict[str, float | int | None] = {
                "deposits": deposits,
                "contaminated": contaminated,
                "checked_deposits": deposits,
                "readings": 60,
                "overflow": rng.randint(1, 12) / 12 if full else 0.0,
                "over90": rng.randint(1, 12) / 12 if full or rng.random() < 0.05 else 0.0,
                "fill_pct": round(rng.uniform(5, 100), 1),
                "battery_pct": round(rng.uniform(10, 100), 1),
                "temp_c": round(rng.uniform(-5, 35), 1),
            }
            lines.append(point(ROLLUP_MEASUREMENT, tags[bin_id], fields, ts))
            if len(lines) >= BATCH:
                influx.write(lines, retention_policy=ROLLUP_RP)
                written += len(lines)
                lines = []
    if lines:
        influx.write(lines, retention_policy=ROLLUP_RP)
        written += len(lines)
    return written


def load_requests(session: Session, bins: dict[str, BinTags], end: datetime, days: int) -> int:
    """About one request per bin every two days over `days` days before `end`: most completed
    within hours, 1 in 10 late, 1 in 50 disputed, 1 in 20 escalated, the last few still open."""
    rng = random.Random(2022)
    first = end - timedelta(days=days)
    rows = []
    for bin_id, tag in bins.items():
        created = first + timedelta(minutes=rng.randint(0, 2 * 24 * 60))
        while created < end:
            deadline = created + timedelta(hours=24 if tag.stream != "kitchen" else 12)
            took = timedelta(minutes=rng.randint(30, 600 if rng.random() > 0.1 else 2_000))
            completed = created + took if created + took < end else None
            disputed = completed is not None and rng.random() < 0.02
            status = "disputed" if disputed else ("verified" if completed else "dispatched")
            rows.append(
                {
                    "bin_id": bin_id, "site_id": tag.site, "operator_id": tag.operator,
                    "stream": tag.stream, "rule": "threshold", "reason": "fill at 90 %",
                    "status": status, "created_at": created, "due_at": deadline,
                    "updated_at": completed or created, "completed_at": completed,
                    "escalation_level": 1 if rng.random() < 0.05 else 0,
                    "webhook_attempts": 0,
                }
            )  # fmt: skip
            created += timedelta(minutes=rng.randint(24 * 60, 3 * 24 * 60))
    session.execute(insert(CollectionRequest), rows)
    session.commit()
    return len(rows)


def vars_of(tag: BinTags) -> dict[str, str]:
    return {name: getattr(tag, name) for name in BinTags.__slots__}


def median_ms(call: Callable[[], object], runs: int) -> float:
    call()  # warm InfluxDB's caches and the app
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def fetch(api: TestClient, path: str, params: dict[str, str]) -> Callable[[], object]:
    def call() -> object:
        response = api.get(path, params=params)
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
        return response.json()

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per figure (median)")
    parser.add_argument("--days", type=int, default=365, help="days of hourly rollups to load")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="binwatch-bench-") as tmp:
        server = InfluxServer(Path(tmp) / "influxdb", free_port())
        server.start()
        try:
            run(server, Path(tmp), args.runs, args.days)
        finally:
            server.stop()


def run(server: InfluxServer, tmp: Path, runs: int, days: int) -> None:
    settings = Settings(
        influx_url=server.url,
        influx_db="bench",
        database_url=f"sqlite:///{tmp / 'registry.db'}",
        admin_token=SecretStr(ADMIN_TOKEN),
    )
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with Session(engine) as session:
        import_fleet(session, load_fleet(default_fleet_path()))
        bins = bin_tags(session)
        began = time.perf_counter()
        requests = load_requests(session, bins, end, days)
        print(f"registered {requests:,} collection requests in {time.perf_counter() - began:.0f} s")
    engine.dispose()
    influx = InfluxClient(settings)
    influx.ensure_database(settings.raw_retention)
    ensure_rollups(influx, settings.timezone)
    began = time.perf_counter()
    points = load_year(influx, bins, end, days)
    print(f"loaded {points:,} rollup points ({len(bins)} bins × {days} days × 24 h) "
          f"in {time.perf_counter() - began:.0f} s")  # fmt: skip
    began = time.perf_counter()
    built = backfill(influx, end - timedelta(days=days), end, timezone=settings.timezone)
    print(f"built the daily tier: {built.daily:,} site-day points "
          f"in {time.perf_counter() - began:.0f} s (binwatch rollups backfill)")  # fmt: skip
    influx.close()

    def window(span_days: int, source: str = "daily", **extra: str) -> dict[str, str]:
        start = end - timedelta(days=span_days)
        return {"start": start.isoformat(), "end": end.isoformat(), "source": source, **extra}

    year = min(days, 365)
    with TestClient(
        create_app(settings), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as api:
        rows = [
            ("site report, 12 months", f"/api/v1/compliance/sites/{SITE}", window(year)),
            ("district report, 12 months", f"/api/v1/compliance/areas/{DISTRICT}", window(year)),
            ("ranking of agencies, 12 months", "/api/v1/rankings", window(year, site_type="agency")),
            ("site report, 12 months by day", f"/api/v1/compliance/sites/{SITE}", window(year, every="1d")),
            ("district report, 12 months by month", f"/api/v1/compliance/areas/{DISTRICT}", window(year, every="1mo")),
        ]  # fmt: skip
        print(f"\nmedian of {runs} runs, ms (target < {TARGET_MS:.0f} ms, with the daily tier)")
        print(f"  {'report':<40} {'hourly':>8} {'daily':>8}")
        for label, path, params in rows:
            hourly = median_ms(fetch(api, path, {**params, "source": "hourly"}), runs)
            took = median_ms(fetch(api, path, params), runs)
            verdict = "ok" if took < TARGET_MS else "SLOW"
            print(f"  {label:<40} {hourly:8.1f} {took:8.1f}  {verdict}")

        print("\nby window length, with the daily tier (median ms)")
        print(f"  {'report':<28} {'1 month':>9} {'3 months':>9} {'12 months':>9}")
        for label, path, extra in (
            ("site", f"/api/v1/compliance/sites/{SITE}", {}),
            ("district", f"/api/v1/compliance/areas/{DISTRICT}", {}),
            ("ranking (agencies)", "/api/v1/rankings", {"site_type": "agency"}),
        ):
            cells = [
                median_ms(fetch(api, path, window(span, **extra)), runs) for span in (30, 91, year)
            ]
            print(f"  {label:<28} " + " ".join(f"{cell:9.1f}" for cell in cells))

        print("\nby number of sites, 12 months, with the daily tier (median ms)")
        for area in AREAS:
            body = fetch(api, f"/api/v1/compliance/areas/{area}", window(year))()
            assert isinstance(body, dict)
            sites, bin_count = len(body["sites"]), body["metrics"]["bins"]
            took = median_ms(fetch(api, f"/api/v1/compliance/areas/{area}", window(year)), runs)
            kind = body["subject"]["kind"]
            print(f"  {kind:<10} {area:<12} {sites:3d} sites {bin_count:4d} bins {took:8.1f} ms")


if __name__ == "__main__":
    main()
