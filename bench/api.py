"""The API under load (issue 18), against the real stack on loopback: `binwatch api` process(es),
its own InfluxDB, a registry (SQLite, or PostgreSQL with `--registry postgresql`), the pilot
fleet, a year of data.

Data: a year of bin-hour rollups and the site tiers built from them (as bench/compliance.py
loads them: a year of raw readings through ingest would measure ingest), the last 26 hours of
raw readings of every bin (one every 10 minutes), a year of collection requests (~79,000) and
of alerts (~16,000), and a real admin API key (so every request's key is looked up).

The mix is the calls people make from their screens (weights in MIX): the site overview, a
site's bins with their latest readings, a bin's readings for a day, a site's report for the
last 30 days, a ranking (last 7 days), the alert list, the collection list, and a manual
collection request (then cancelled, timed as `cancel`, so the bin can be asked for again).

Figures (issue 18): (1) open loop: `--users` users each calling every `--gap` s on average
(Poisson), latency counted from when each call was due; targets: no errors, p95 < 300 ms for
every call. (2) closed loop at each of `--clients`: no errors, throughput at the largest
≥ 80 % of the best, and excess load answered by a wait or a 503 with Retry-After, which the
clients honour. The rate limit is raised out of the way. The load generator (bench/_load.py)
runs in this process on the same 2 cores as the API and InfluxDB: its CPU is printed.

`--trees A,B [--rounds N]`: the same figures for the API of each checkout in turn (an exported
tree, with this one's .venv), on the one stack loaded once: an A/B comparison back to back.

`--only cost`: each call alone, one client in a closed loop for `--cost-seconds`: answered calls
per second and the API's and InfluxDB's CPU per answered call, so that a profile's shares can be
read as milliseconds (the manual request is followed by its cancel, counted as one call).

Then (`--only memory`) the API's RSS under 20 clients of maximal raw readings pages plus 5
clients that never read (issue 13's figure).

    .venv/bin/python bench/api.py [--only open,closed] [--workers 1,2] [--days 365]
        [--users 200] [--gap 2] [--open-seconds 60] [--clients 50,100,200,400] [--seconds 20]
        [--cost-seconds 10] [--trees A,B] [--rounds 1]
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
import functools  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from contextlib import ExitStack  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

from sqlalchemy import insert, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from alerts.models import Alert  # noqa: E402
from alerts.rules import SEVERITY, AlertType  # noqa: E402
from bench._load import Answer, Call, FollowUp, Run, closed_loop, open_loop  # noqa: E402
from bench.compliance import load_requests, load_year  # noqa: E402
from binwatch.database import migrate  # noqa: E402
from binwatch.servers import InfluxServer, PostgresServer, free_port  # noqa: E402
from collection.lifecycle import OPEN  # noqa: E402
from collection.models import CollectionRequest  # noqa: E402
from compliance.rollups import backfill  # noqa: E402
from core.influx import InfluxClient  # noqa: E402
from core.lineprotocol import tag_set, telemetry_line  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.sql import make_engine  # noqa: E402
from core.telemetry import ensure_rollups  # noqa: E402
from core.times import rfc3339  # noqa: E402
from devices.fleet import default_fleet_path, import_fleet, load_fleet  # noqa: E402
from devices.registry import BinTags, bin_tags  # noqa: E402
from security.keys import ApiRole, create_key  # noqa: E402
from tests.api_process import ApiProcess  # noqa: E402

P95_TARGET_S = 0.3
HOLD_TARGET = 0.8  # throughput at the most clients / the best throughput
RAW_HOURS = 26
RAW_EVERY_MIN = 10
MIX = {  # call → weight: screens mostly read lists and a site's state; reports less often
    "overview": 3,
    "site_bins": 3,
    "bin_day": 2,
    "site_month": 1,
    "ranking": 1,
    "alerts": 2,
    "collections": 2,
    "manual": 1,
}
MAXIMAL = 20
NON_READERS = 5


# --- data ---------------------------------------------------------------------------------------


def load_raw_day(influx: InfluxClient, bins: dict[str, BinTags], end: datetime) -> int:
    """The last RAW_HOURS hours of raw readings of every bin, one every RAW_EVERY_MIN minutes."""
    rng = random.Random(18)
    end_ms = int(end.timestamp() * 1000)
    step = RAW_EVERY_MIN * 60_000
    lines = []
    for tags in bins.values():
        text = tag_set(dataclasses.asdict(tags))
        for n, ts in enumerate(range(end_ms - RAW_HOURS * 3_600_000, end_ms, step)):
            deposits = rng.randint(0, 5)
            lines.append(
                telemetry_line(
                    text, round(rng.uniform(5, 99), 1), n, deposits, rng.randint(0, deposits),
                    round(rng.uniform(1, 30), 2), round(rng.uniform(20, 100), 1),
                    round(rng.uniform(-5, 35), 1), ts + 150, ts,
                )
            )  # fmt: skip
    for first in range(0, len(lines), 20_000):
        influx.write(lines[first : first + 20_000])
    return len(lines)


def load_alerts(session: Session, bins: dict[str, BinTags], end: datetime, days: int) -> int:
    """About one alert per bin every 10 days over `days` days, cleared after minutes to hours;
    the newest of some bins still active."""
    rng = random.Random(2023)
    kinds = list(AlertType)
    rows = []
    for bin_id, tags in bins.items():
        started = end - timedelta(days=days) + timedelta(hours=rng.randint(0, 240))
        while started < end:
            kind = rng.choice(kinds)
            lasted = timedelta(minutes=rng.randint(5, 600))
            cleared = started + lasted if started + lasted < end else None
            rows.append(
                {
                    "bin_id": bin_id, "site_id": tags.site, "type": kind.value,
                    "severity": SEVERITY[kind].value,
                    "state": "cleared" if cleared else "active", "detail": f"{kind.value} seen",
                    "started_at": started, "last_seen_at": cleared or started,
                    "cleared_at": cleared,
                    "duration_s": lasted.total_seconds() if cleared else None,
                }
            )  # fmt: skip
            started += timedelta(hours=rng.randint(24 * 5, 24 * 15))
    session.execute(insert(Alert), rows)
    session.commit()
    return len(rows)


@dataclasses.dataclass(frozen=True)
class Stack:
    settings: Settings
    token: str
    bins: dict[str, BinTags]
    free_bins: list[str]  # bins without an open collection request: a manual request lands
    end: datetime  # the last whole hour when the data was loaded


def prepare(settings: Settings, days: int, say: Callable[[str], None]) -> Stack:
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with Session(engine) as session:
        import_fleet(session, load_fleet(default_fleet_path()))
        bins = bin_tags(session)
        began = time.monotonic()
        requests = load_requests(session, bins, end, days)
        alerts = load_alerts(session, bins, end, days)
        say(f"registry: {requests:,} collection requests, {alerts:,} alerts "
            f"({time.monotonic() - began:.0f} s)")  # fmt: skip
        token = create_key(session, name="bench", role=ApiRole.admin, now=datetime.now(UTC)).token
        busy = set(
            session.scalars(
                select(CollectionRequest.bin_id).where(CollectionRequest.status.in_(OPEN))
            )
        )
    engine.dispose()
    influx = InfluxClient(settings)
    influx.ensure_database(settings.raw_retention)
    ensure_rollups(influx, settings.timezone)
    began = time.monotonic()
    points = load_year(influx, bins, end, days)
    built = backfill(influx, end - timedelta(days=days), end, timezone=settings.timezone)
    raw = load_raw_day(influx, bins, datetime.now(UTC))
    influx.close()
    say(f"InfluxDB: {points:,} bin-hour rollups, {built.daily:,} site-days, {raw:,} raw readings "
        f"({time.monotonic() - began:.0f} s)")  # fmt: skip
    return Stack(settings, token, bins, sorted(set(bins) - busy), end)


def roll_up_since_end(stack: Stack) -> None:
    """Roll up the hours from the stack's end (the hour when loading began) to the coming one.
    Loading takes minutes; a figure run in a later hour would otherwise rank and report over
    hours the rollups do not cover, which the API reads from raw readings for every bin of a
    site type: ~2 s a ranking instead of ~200 ms (docs/performance.md, fourth round), a
    measure of that hour and not of the API."""
    upto = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    influx = InfluxClient(stack.settings)
    try:
        backfill(influx, stack.end, upto, timezone=stack.settings.timezone)
    finally:
        influx.close()


# --- the mix ------------------------------------------------------------------------------------


def mix(stack: Stack) -> tuple[Callable[[random.Random], Call], FollowUp]:
    """The `pick` and `follow` of the load generator for this stack."""
    bin_ids = sorted(stack.bins)
    sites = sorted({tags.site for tags in stack.bins.values()})
    site_types = sorted({tags.site_type for tags in stack.bins.values()})
    manual_bins = itertools.cycle(stack.free_bins)
    # Requests raised and not yet cancelled, by id: a cancel refused (503) five times in an
    # overloaded figure leaves its bin with an open request for the figures after it.
    raised: dict[int, str] = {}
    names, weights = list(MIX), list(MIX.values())
    month = f"start={rfc3339(stack.end - timedelta(days=30))}&end={rfc3339(stack.end)}"

    def pick(rng: random.Random) -> Call:
        name = rng.choices(names, weights)[0]
        site, bin_id = rng.choice(sites), rng.choice(bin_ids)
        if name == "overview":
            return Call(name, "GET", "/api/v1/sites?limit=100")
        if name == "site_bins":
            return Call(name, "GET", f"/api/v1/sites/{site}/bins")
        if name == "bin_day":
            now = datetime.now(UTC)
            day = f"start={rfc3339(now - timedelta(days=1))}&end={rfc3339(now)}"
            return Call(name, "GET", f"/api/v1/bins/{bin_id}/readings?{day}")
        if name == "site_month":
            return Call(name, "GET", f"/api/v1/compliance/sites/{site}?{month}")
        if name == "ranking":
            return Call(name, "GET", f"/api/v1/rankings?site_type={rng.choice(site_types)}")
        if name == "alerts":
            return Call(name, "GET", "/api/v1/alerts")
        if name == "collections":
            return Call(name, "GET", "/api/v1/collections")
        for _ in stack.free_bins:  # skip a bin whose request is still open: a 409 by right
            manual_bin = next(manual_bins)
            if manual_bin not in raised.values():
                break
        body = {"bin_id": manual_bin, "reason": "bags beside the bin"}
        return Call("manual", "POST", "/api/v1/collections", body)

    def follow(call: Call, answer: Answer) -> Call | None:
        if call.name == "cancel" and answer.status == 200:
            raised.pop(int(call.path.split("/")[-2]), None)
        if call.name != "manual" or answer.status != 201:
            return None
        request_id = json.loads(answer.body)["id"]
        assert call.body is not None
        raised[request_id] = call.body["bin_id"]
        note = {"note": "bench: raised to be measured"}
        return Call("cancel", "POST", f"/api/v1/collections/{request_id}/cancel", note)

    return pick, follow


# --- measuring ----------------------------------------------------------------------------------


def cpu_s(root: int) -> float:
    """User + system CPU seconds of process `root` and its descendants (uvicorn's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    tree, total = {root}, 0.0
    for pid, (ppid, _) in sorted(stats.items()):
        if pid == root or ppid in tree:
            tree.add(pid)
    for pid in tree:
        total += stats.get(pid, (0, 0.0))[1]
    return total


def report(label: str, run: Run, cpu: dict[str, float]) -> dict[str, object]:
    """Print a run's table; return its figures for the JSON file."""
    print(f"\n{label}: {run.ok_per_s:.1f} ok/s over {run.seconds:.1f} s, {run.errors} errors, "
          f"{run.retry_503} × 503 with Retry-After, slowest answer {run.slowest_s:.2f} s")  # fmt: skip
    spent = ", ".join(f"{name} {seconds / run.seconds:.0%}" for name, seconds in cpu.items())
    print(f"  CPU of a core: {spent}, load generator {run.generator_cpu_s / run.seconds:.0%}; "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(
        f"  {'call':<12} {'2xx':>6} {'503':>5} {'err':>4} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    )
    calls = {}
    for name in [*MIX, "cancel"]:
        tally = run.tallies.get(name)
        if tally is None:
            continue
        pct = [tally.percentile(q) for q in (50, 95, 99)]
        cells = " ".join(f"{p * 1000:8.0f}" if p is not None else f"{'-':>8}" for p in pct)
        others = {k: v for k, v in tally.statuses.items() if k not in (200, 201, 503)}
        print(f"  {name:<12} {tally.ok:6d} {tally.statuses[503]:5d} {tally.errors:4d} {cells}"
              + (f"  {others}" if others else ""))  # fmt: skip
        calls[name] = {
            "ok": tally.ok, "statuses": {str(k): v for k, v in tally.statuses.items()},
            "errors": tally.errors, "p50_ms": pct[0] and pct[0] * 1000,
            "p95_ms": pct[1] and pct[1] * 1000, "p99_ms": pct[2] and pct[2] * 1000,
        }  # fmt: skip
    return {
        "ok_per_s": run.ok_per_s, "seconds": run.seconds, "errors": run.errors,
        "retry_503": run.retry_503, "slowest_s": run.slowest_s, "calls": calls,
        "cpu_share": {n: s / run.seconds for n, s in cpu.items()},
        "generator_cpu_share": run.generator_cpu_s / run.seconds,
        "load_average": os.getloadavg()[0],
    }  # fmt: skip


def measured(
    api: ApiProcess, influx: InfluxServer, action: Callable[[], Run]
) -> tuple[Run, dict[str, float]]:
    assert api.process is not None and influx.process is not None
    pids = {"API": api.process.pid, "influxd": influx.process.pid}
    before = {name: cpu_s(pid) for name, pid in pids.items()}
    run = action()
    return run, {name: cpu_s(pid) - before[name] for name, pid in pids.items()}


def figures(
    stack: Stack, influx: InfluxServer, args: argparse.Namespace, tmp: Path
) -> dict[str, object]:
    """Each figure for each worker count and, with `--trees`, each tree in turn, all of it
    `--rounds` times, on the same stack: back to back, so that two versions or worker counts
    meet the same data and, as nearly as these shared cores allow, the same machine."""
    results: dict[str, object] = {}
    verdicts: list[str] = []
    pick, follow = mix(stack)
    trees = [Path(t).resolve() for t in args.trees.split(",")] if args.trees else [None]
    for turn in range(args.rounds):
        for workers in (int(n) for n in args.workers.split(",")):
            for tree in trees:
                name = (
                    f"{workers}"
                    + (f"-{tree.name}" if tree else "")
                    + (f"-round{turn + 1}" if args.rounds > 1 else "")
                )
                print(f"\n=== {workers} worker(s)" + (f", code {tree}" if tree else "")
                      + f", round {turn + 1} of {args.rounds}", flush=True)  # fmt: skip
                roll_up_since_end(stack)
                with ApiProcess(stack.settings, tmp / f"api-{name}.log", workers=workers,
                                code=tree) as api:  # fmt: skip
                    results.update(
                        one_api(api, influx, stack, (pick, follow), args, name, verdicts)
                    )
    print("\ntargets:")
    for verdict in verdicts:
        print(f"  {verdict}")
    return results


def one_api(
    api: ApiProcess,
    influx: InfluxServer,
    stack: Stack,
    calls: tuple[Callable[[random.Random], Call], FollowUp],
    args: argparse.Namespace,
    name: str,
    verdicts: list[str],
) -> dict[str, object]:
    """The figures of `--only` against one running API (`name`: its workers, tree and round)."""
    pick, follow = calls
    results: dict[str, object] = {}
    host, port, token = "127.0.0.1", api.port, stack.token
    closed_loop(host, port, token, pick, follow, clients=20, seconds=3)  # warm every route
    if "open" in args.only:
        run, cpu = measured(api, influx, functools.partial(
            open_loop, host, port, token, pick, follow, users=args.users,
            mean_gap_s=args.gap, seconds=args.open_seconds,
        ))  # fmt: skip
        label = (f"open loop, {name}: {args.users} users, a call every "
                 f"{args.gap:g} s each on average, {args.open_seconds:.0f} s")  # fmt: skip
        results[f"open-{name}"] = report(label, run, cpu)
        slow = [n for n, t in run.tallies.items() if (t.percentile(95) or 0) > P95_TARGET_S]
        met = run.errors == 0 and not slow
        verdicts.append(f"[{'met' if met else 'NOT MET'}] open loop, {name}: "
                        f"no errors ({run.errors}), p95 < 300 ms for every call"
                        + (f" (over: {', '.join(slow)})" if slow else ""))  # fmt: skip
    if "closed" in args.only:
        rates = {}
        for clients in (int(n) for n in args.clients.split(",")):
            run, cpu = measured(api, influx, functools.partial(
                closed_loop, host, port, token, pick, follow, clients=clients,
                seconds=args.seconds,
            ))  # fmt: skip
            label = f"closed loop, {name}: {clients} clients, {args.seconds:.0f} s"
            results[f"closed-{name}-{clients}"] = report(label, run, cpu)
            rates[clients] = (run.ok_per_s, run.errors)
        most = max(rates)
        held = rates[most][0] / max(rate for rate, _ in rates.values())
        errors = sum(e for _, e in rates.values())
        met = errors == 0 and held >= HOLD_TARGET
        verdicts.append(f"[{'met' if met else 'NOT MET'}] closed loop, {name}: "
                        f"no errors ({errors}), {most} clients hold {held:.0%} of the best "
                        f"throughput (≥ {HOLD_TARGET:.0%})")  # fmt: skip
    if "cost" in args.only:
        results[f"cost-{name}"] = costs(api, influx, stack, pick, follow, args)
    if "memory" in args.only:
        memory(api, stack, args.readings)
    return results


def costs(
    api: ApiProcess,
    influx: InfluxServer,
    stack: Stack,
    pick: Callable[[random.Random], Call],
    follow: FollowUp,
    args: argparse.Namespace,
) -> dict[str, object]:
    """Each call of the mix alone, one client: CPU per answered call (`--only cost`)."""
    print(f"\ncost of each call alone, one client, {args.cost_seconds:.0f} s each:")
    print(f"  {'call':<12} {'ok/s':>6} {'API ms':>7} {'influxd ms':>10} {'p50 ms':>7}")
    figures: dict[str, object] = {}
    for name in MIX:

        def only(rng: random.Random, name: str = name) -> Call:
            while (call := pick(rng)).name != name:
                pass
            return call

        run, cpu = measured(api, influx, functools.partial(
            closed_loop, "127.0.0.1", api.port, stack.token, only, follow, clients=1,
            seconds=args.cost_seconds,
        ))  # fmt: skip
        ok = run.tally(name).ok
        per = {who: 1000 * seconds / max(ok, 1) for who, seconds in cpu.items()}
        p50 = run.tally(name).percentile(50)
        print(f"  {name:<12} {ok / run.seconds:6.1f} {per['API']:7.2f} {per['influxd']:10.2f} "
              f"{(p50 or 0) * 1000:7.1f}")  # fmt: skip
        figures[name] = {"ok_per_s": ok / run.seconds, "cpu_ms": per, "p50_ms": p50 and p50 * 1000}
    return figures


def memory(api: ApiProcess, stack: Stack, readings: int) -> None:
    """RSS while MAXIMAL clients fetch 7-day raw pages of a bin holding `readings` readings."""
    busy_id = min(stack.bins)
    busy = stack.bins[busy_id]
    influx = InfluxClient(stack.settings)
    end = int(datetime.now(UTC).timestamp() * 1000) - RAW_HOURS * 3_600_000
    step = 5 * 24 * 3_600_000 // readings
    text = tag_set(dataclasses.asdict(busy))
    for first in range(0, readings, 5000):
        influx.write(
            [
                telemetry_line(text, i % 100 + 0.5, i, i % 7, None, 3.25, 80.0, 21.5,
                               end - (readings - i) * step, end - (readings - i) * step)
                for i in range(first, min(readings, first + 5000))
            ]
        )  # fmt: skip
    influx.close()
    now = datetime.now(UTC)
    path = (f"/api/v1/bins/{busy_id}/readings?start={rfc3339(now - timedelta(days=7))}"
            f"&end={rfc3339(now)}")  # fmt: skip
    idle = api.rss_kib()
    stop = threading.Event()
    peak = idle

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, api.rss_kib())
            time.sleep(0.05)

    def non_reader() -> None:
        with socket.create_connection(("127.0.0.1", api.port)) as conn:
            conn.sendall(
                f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {stack.token}\r\n\r\n".encode()
            )
            stop.wait()

    threads = [threading.Thread(target=sample)] + [
        threading.Thread(target=non_reader) for _ in range(NON_READERS)
    ]
    for thread in threads:
        thread.start()
    run = closed_loop(
        "127.0.0.1", api.port, stack.token, lambda _rng: Call("raw_7d", "GET", path),
        lambda _call, _answer: None, clients=MAXIMAL, seconds=10,
    )  # fmt: skip
    stop.set()
    for thread in threads:
        thread.join()
    print(f"\nmemory: {MAXIMAL} clients of maximal raw readings pages ({readings:,} readings) + "
          f"{NON_READERS} non-readers, 10 s: RSS idle {idle / 1024:.0f} MiB, peak "
          f"{peak / 1024:.0f} MiB, after {api.rss_kib() / 1024:.0f} MiB; {run.ok_per_s:.1f} ok/s, "
          f"statuses {dict(run.tally('raw_7d').statuses)}, slowest {run.slowest_s:.2f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="open,closed", help="open, closed, cost, memory")
    parser.add_argument("--workers", default="1", help="API worker processes, e.g. 1,2")
    parser.add_argument("--registry", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--days", type=int, default=365, help="days of rollups and records")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument(
        "--gap", type=float, default=2.0, help="mean seconds between a user's calls"
    )
    parser.add_argument("--open-seconds", type=float, default=60)
    parser.add_argument("--clients", default="50,100,200,400", help="closed-loop client counts")
    parser.add_argument("--seconds", type=float, default=20, help="per closed-loop figure")
    parser.add_argument("--cost-seconds", type=float, default=10, help="per call, cost figure")
    parser.add_argument("--readings", type=int, default=200_000, help="for the memory figure")
    parser.add_argument(
        "--trees", default="", help="checkouts whose API to compare, e.g. /tmp/main,/tmp/branch"
    )
    parser.add_argument("--rounds", type=int, default=1, help="times to run them all, in turn")
    args = parser.parse_args()
    started = datetime.now(UTC)
    print(f"bench/api.py at {rfc3339(started)}: {args}; {os.cpu_count()} cores, load average "
          f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="binwatch-bench-api-") as folder, ExitStack() as stop:
        tmp = Path(folder)
        influx = InfluxServer(tmp / "influx", free_port())
        influx.start()
        stop.callback(influx.stop)
        database_url = f"sqlite:///{tmp / 'registry.db'}"
        if args.registry == "postgresql":
            postgres = PostgresServer(tmp / "postgres", free_port())
            postgres.start()
            stop.callback(postgres.remove)
            stop.callback(postgres.stop)
            database_url = postgres.database_url()
        settings = Settings(
            influx_url=influx.url,
            influx_db="bench_api",
            database_url=database_url,
            api_rate_per_s=1e6,  # the rate limit out of the way: this measures the API
            api_rate_burst=1_000_000,
        )
        stack = prepare(settings, args.days, lambda line: print(line, flush=True))
        results = figures(stack, influx, args, tmp)
    out = Path("var/bench") / f"api-{started:%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1, default=str))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
