"""The console's pages with the pilot fleet and a year of data: server time p50/p95 of each page
(target p95 < 200 ms) and the bytes it costs (first load with its assets < 500 KB, a live
update < 50 KB).

Starts its own InfluxDB (free port, temporary folder) and SQLite registry, loads the default
fleet, registers a year of collection requests (bench/compliance.py's `load_requests`) and of
alerts (about one per bin a month, cleared after minutes to hours, 1 in 100 bins with one still
active), writes the raw readings of the last `--raw-days` (every bin every `--every-min`, into
the raw retention policy the pages read) and a year of bin-hour rollups (bench/compliance.py's
`load_year`), with the site tiers and the coverage built from them by the backfill `binwatch
rollups backfill` runs: what the grid pages' and rankings' reports read. Then runs
`binwatch api` as a real process and logs in as a browser does (the login form, its CSRF
token, the session cookie) as the city admin (every site) and as the manager of 嘉州水岸小区.

- server time: the wall time of one GET on loopback (httpx, keep-alive, one request at a time),
  1 warm-up then `--runs` runs, p50 and p95;
- bytes: what the server sends (status line, headers and body as it travels: gzip for the
  static files, which a browser accepts) for the page and every asset it references, with an
  empty cache; a live update is its `/live` partial.

The grid pages (the city, a district, a community: 7 days) and the rankings (the compounds,
the current month) run with the report cache off, so every request computes its figures.

    .venv/bin/python bench/console.py [--quick] [--runs 40] [--days 365] [--raw-days 30]
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
import os  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy import insert  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from alerts.models import Alert  # noqa: E402
from bench.compliance import load_requests, load_year  # noqa: E402
from binwatch.database import migrate  # noqa: E402
from binwatch.servers import InfluxServer, free_port  # noqa: E402
from compliance.rollups import backfill  # noqa: E402
from core.influx import InfluxClient  # noqa: E402
from core.lineprotocol import tag_set, telemetry_line  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.sql import make_engine  # noqa: E402
from core.telemetry import ensure_rollups  # noqa: E402
from devices.fleet import default_fleet_path, import_fleet, load_fleet  # noqa: E402
from devices.registry import BinTags, bin_tags  # noqa: E402
from security.users import UserRole, create_user  # noqa: E402
from tests.api_process import ApiProcess  # noqa: E402

P95_TARGET_MS = 200.0
FIRST_LOAD_TARGET_KB = 500.0
LIVE_TARGET_KB = 50.0
PASSWORD = "bench console 2026"
SITE = "jiazhou-shuian"
CITY, DISTRICT, COMMUNITY = "pilot-city", "shizhong", "xiaoba"  # the pilot fleet's, SITE's
BATCH = 20_000
ASSET = re.compile(r'(?:src|href)="(/console/static/[^"]+)"')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def load_alerts(session: Session, bins: dict[str, BinTags], end: datetime, days: int) -> int:
    """About one alert per bin a month over `days` days before `end`, cleared after minutes to
    hours; 1 in 100 bins (and the benchmark's site) with one still active."""
    rng = random.Random(2023)
    kinds = [
        ("offline", "major"),
        ("battery_low", "minor"),
        ("tilt", "major"),
        ("lid_open", "minor"),
    ]
    rows = []
    for bin_id, tag in bins.items():
        started = end - timedelta(days=days) + timedelta(minutes=rng.randint(0, 30 * 24 * 60))
        while started < end:
            kind, severity = rng.choice(kinds)
            lasted = timedelta(minutes=rng.randint(5, 600))
            rows.append(
                {
                    "bin_id": bin_id, "site_id": tag.site, "type": kind, "severity": severity,
                    "state": "cleared", "detail": "", "started_at": started,
                    "last_seen_at": started + lasted, "cleared_at": started + lasted,
                    "duration_s": lasted.total_seconds(),
                }
            )  # fmt: skip
            started += timedelta(minutes=rng.randint(15 * 24 * 60, 45 * 24 * 60))
        if rng.random() < 0.01 or bin_id == f"{SITE}-s1-kitchen":
            rows.append(
                {
                    "bin_id": bin_id, "site_id": tag.site, "type": "tilt", "severity": "major",
                    "state": "active", "detail": "", "started_at": end - timedelta(minutes=20),
                    "last_seen_at": end, "cleared_at": None, "duration_s": None,
                }
            )  # fmt: skip
    session.execute(insert(Alert), rows)
    session.commit()
    return len(rows)


def load_raw(
    influx: InfluxClient, bins: dict[str, BinTags], end: datetime, days: float, every_min: int
) -> int:
    """Each bin's readings every `every_min` minutes over the last `days` days, as ingest writes
    them (telemetry_line), filling and being emptied."""
    rng = random.Random(2024)
    end_ms = int(end.timestamp() * 1000)
    step_ms = every_min * 60_000
    first_ms = end_ms - int(days * 86_400_000)
    written = 0
    for tag in bins.values():
        tags = tag_set(asdict(tag))
        fill, lines = rng.uniform(0, 60), []
        for seq, ts in enumerate(range(first_ms, end_ms, step_ms)):
            fill = fill + rng.uniform(0, 2) if fill < 95 else rng.uniform(0, 5)
            deposits = rng.randint(0, 6)
            lines.append(
                telemetry_line(
                    tags, round(min(fill, 100.0), 1), seq, deposits, rng.randint(0, deposits // 3),
                    None, round(rng.uniform(30, 100), 1), 21.5, ts + 300, ts,
                )
            )  # fmt: skip
        for offset in range(0, len(lines), BATCH):
            influx.write(lines[offset : offset + BATCH])
        written += len(lines)
    return written


def logged_in(url: str, username: str) -> httpx.Client:
    """A client holding a console session, got through the login form like a browser."""
    client = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
    form = client.get("/console/login")
    token = CSRF.search(form.text)
    assert token, form.text[:300]
    answer = client.post(
        "/console/login",
        data={"username": username, "password": PASSWORD, "csrf": token.group(1)},
    )
    if answer.status_code != 303:
        raise SystemExit(f"login as {username}: {answer.status_code}")
    return client


def wire_bytes(response: httpx.Response) -> int:
    """What the server sent: the status line, the headers and the body as it travelled."""
    head = len(f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n")
    head += sum(len(k) + len(v) + 4 for k, v in response.headers.raw) + 2
    return head + response.num_bytes_downloaded


def first_load_bytes(client: httpx.Client, path: str) -> tuple[int, int]:
    """A page and every asset it names, as a browser with an empty cache gets them (gzip
    accepted); (bytes, number of assets)."""
    page = client.get(path, headers={"Accept-Encoding": "gzip, deflate"})
    assets = sorted(set(ASSET.findall(page.text)))
    total = wire_bytes(page)
    with httpx.Client(base_url=str(client.base_url), timeout=30) as cold:  # no cache, no cookie
        for asset in assets:
            answer = cold.get(asset, headers={"Accept-Encoding": "gzip, deflate"})
            assert answer.status_code == 200, asset
            total += wire_bytes(answer)
    return total, len(assets)


def times_ms(client: httpx.Client, path: str, runs: int) -> list[float]:
    headers = {"HX-Request": "true"} if path.endswith("/live") else {}
    client.get(path, headers=headers)  # warm-up
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        answer = client.get(path, headers=headers)
        samples.append((time.perf_counter() - began) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"{path}: {answer.status_code}")
    return samples


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[18]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and a shorter raw history")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per page (40; quick 20)")
    parser.add_argument("--days", type=int, default=365, help="days of requests, alerts, rollups")
    parser.add_argument(
        "--raw-days", type=float, default=None, help="days of raw readings (30; quick 3)"
    )
    parser.add_argument(
        "--every-min", type=int, default=10, help="minutes between a bin's raw readings"
    )
    args = parser.parse_args()
    runs = args.runs or (20 if args.quick else 40)
    raw_days = args.raw_days or (3.0 if args.quick else 30.0)
    with tempfile.TemporaryDirectory(prefix="binwatch-bench-") as tmp:
        server = InfluxServer(Path(tmp) / "influxdb", free_port())
        server.start()
        try:
            run(
                server,
                Path(tmp),
                runs=runs,
                days=args.days,
                raw_days=raw_days,
                every_min=args.every_min,
            )
        finally:
            server.stop()


def run(
    server: InfluxServer, tmp: Path, *, runs: int, days: int, raw_days: float, every_min: int
) -> None:
    # The report cache off: the grid and rankings rows then compute their figures on every
    # request, a first view's cost (with it, repeated requests within 5 s are answers from memory).
    settings = Settings(
        influx_url=server.url,
        influx_db="bench",
        database_url=f"sqlite:///{tmp / 'registry.db'}",
        api_report_cache_s=0,
    )
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    began = time.perf_counter()
    with Session(engine) as session:
        import_fleet(session, load_fleet(default_fleet_path()))
        bins = bin_tags(session)
        requests = load_requests(session, bins, end, days)
        alerts = load_alerts(session, bins, end, days)
        for username, role, sites in (
            ("bench.admin", UserRole.admin, []),
            ("bench.manager", UserRole.manager, [SITE]),
        ):
            create_user(
                session,
                username=username,
                display_name="",
                password=PASSWORD,
                role=role,
                now=end,
                site_ids=sites,
            )
    engine.dispose()
    influx = InfluxClient(settings)
    influx.ensure_database(settings.raw_retention)
    ensure_rollups(influx, settings.timezone)
    raw = load_raw(influx, bins, end, raw_days, every_min)
    rollups = load_year(influx, bins, end.replace(minute=0), days)
    # The site tiers and the coverage `binwatch rollups backfill` records, as a deployment whose
    # rollups hold its history has (without them every report reads raw readings).
    backfill(influx, end - timedelta(days=days), end, timezone=settings.timezone)
    influx.close()
    print(
        f"loaded in {time.perf_counter() - began:.0f} s: {len(bins)} bins; {requests:,} collection"
        f" requests and {alerts:,} alerts over {days} days; {raw:,} raw readings ({raw_days:g} days,"
        f" every {every_min} min); {rollups:,} bin-hour rollup points ({days} days)"
    )  # fmt: skip

    with ApiProcess(settings, tmp / "api.log") as api:
        admin, manager = logged_in(api.url, "bench.admin"), logged_in(api.url, "bench.manager")
        rows = [
            ("login", "anyone", httpx.Client(base_url=api.url, timeout=30), "/console/login", None),
            ("my sites", "admin (68 sites)", admin, "/console", None),
            ("my sites", "manager (1 site)", manager, "/console", None),
            ("site", "manager (21 bins)", manager, f"/console/sites/{SITE}", f"/console/sites/{SITE}/live"),
            ("map", "admin (68 sites)", admin, "/console/map", "/console/map/live"),
            ("map", "manager (1 site)", manager, "/console/map", "/console/map/live"),
            ("grid", "admin, city (2 parts)", admin, f"/console/grid/{CITY}", None),
            ("grid", "admin, district (3)", admin, f"/console/grid/{DISTRICT}", None),
            ("grid", "admin, community", admin, f"/console/grid/{COMMUNITY}", None),
            ("rankings", "admin, compounds", admin, "/console/rankings", None),
        ]  # fmt: skip
        print(
            f"\n`binwatch api` on loopback, one request at a time, {runs} runs after 1 warm-up;"
            f" {os.cpu_count()} cores shared with whatever else runs"
        )
        print(
            f"  {'page':<10} {'who':<22} {'p50 ms':>7} {'p95 ms':>7} {'first load KB':>14}"
            f" {'assets':>6} {'live p50/p95 ms':>16} {'live KB':>8}  verdict"
        )
        for page, who, client, path, live in rows:
            samples = times_ms(client, path, runs)
            loaded, assets = first_load_bytes(client, path)
            ok = p95(samples) < P95_TARGET_MS and loaded / 1000 < FIRST_LOAD_TARGET_KB
            live_cells = f"{'':>16} {'':>8}"
            if live is not None:
                live_samples = times_ms(client, live, runs)
                live_kb = wire_bytes(client.get(live, headers={"HX-Request": "true"})) / 1000
                ok = ok and p95(live_samples) < P95_TARGET_MS and live_kb < LIVE_TARGET_KB
                live_cells = (
                    f"{statistics.median(live_samples):7.1f}/{p95(live_samples):<8.1f}"
                    f" {live_kb:8.1f}"
                )
            print(
                f"  {page:<10} {who:<22} {statistics.median(samples):7.1f} {p95(samples):7.1f}"
                f" {loaded / 1000:14.1f} {assets:6d} {live_cells}  {'ok' if ok else 'MISSED'}"
            )
        print(
            f"targets: p95 < {P95_TARGET_MS:.0f} ms, first load < {FIRST_LOAD_TARGET_KB:.0f} KB,"
            f" live update < {LIVE_TARGET_KB:.0f} KB (KB = 1,000 bytes)"
        )


if __name__ == "__main__":
    main()
