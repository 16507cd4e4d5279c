"""Ingest benchmark: what Mosquitto and InfluxDB can do here, and how much of it binwatch gets.

    .venv/bin/python bench/ingest.py [--quick] [--soak-seconds N] [--profile] [--only FIGURES]

One run, on loopback, with its own Mosquitto and InfluxDB in a temporary folder (both stopped at
the end), measures side by side:

1. broker ceiling: QoS 1 readings/s from one paho publisher process to one plain paho subscriber
   process (MQTT 5, Receive Maximum 65535, acks at once, does nothing else);
2. database ceiling: readings/s InfluxDB accepts from one client posting 5,000-line batches of
   telemetry exactly as ingest builds them;
3. end to end: readings/s from the first publish to the moment a count query finds the last one in
   InfluxDB, through `binwatch ingest --workers 1` and `--workers 2`, and the loss;
3h. the same 1-worker flood with every 20th message hostile (`bench/_hostile.py`): valid readings/s
   stored, their loss, and the dead letters by reason against what was sent;
4. publish-to-queryable latency p50/p99 under a steady 5,000 readings/s;
5. ingest's memory (RSS of its process tree) over a steady soak at that rate;
3r. the same 1-worker flood with the registry (the arrival hooks' database) on SQLite and on a
   PostgreSQL the run starts itself, one after the other in each repetition, and the ratio;
6. the peer: binwatch (1 worker) against Node-RED's per-message and batched flows (installed from
   npm into var/bench/ on first use, `bench/_nodered.py`): each one's highest zero-loss steady
   rate, its loss flooded and through a SIGKILL, and binwatch's rate as a ratio to the best flow's
   (`bench/_peer.py`).

The publisher is `bench/_publisher.py` (pre-serialised payloads, one thread, no pydantic), not the
simulator: it publishes faster than `simulator.publisher` could, so it loads ingest harder. The same
publisher feeds every measurement, so ratios compare like with like. See docs/performance.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where this file would shadow the
# `ingest` package: the repository root goes there instead.
_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager, suppress  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from importlib import metadata  # noqa: E402
from itertools import islice  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench import _hostile, _nodered, _peer, _profile  # noqa: E402
from bench._payloads import PayloadSpec, build_spec  # noqa: E402
from binwatch.database import migrate  # noqa: E402
from binwatch.servers import (  # noqa: E402
    InfluxServer,
    MosquittoServer,
    PostgresServer,
    free_port,
    port_is_free,
    postgres_bin_dir,
)
from core.errors import SinkUnavailable  # noqa: E402
from core.influx import InfluxClient  # noqa: E402
from core.lineprotocol import tag_set  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.sql import make_engine  # noqa: E402  # noqa: E402  # noqa: E402
from core.telemetry import MEASUREMENT  # noqa: E402
from devices.contract import TopicKind, Topics  # noqa: E402
from devices.fleet import default_fleet_path, import_fleet, load_fleet  # noqa: E402
from devices.models import DeadLetter  # noqa: E402
from devices.registry import BinTags, bin_tags  # noqa: E402  # noqa: E402
from ingest.decode import decode  # noqa: E402

PYTHON = sys.executable
RESULTS_DIR = ROOT / "var" / "bench"

# The flood (readings) and the repetitions whose median is quoted; --quick uses the smaller ones.
FLOOD = 200_000
FLOOD_QUICK = 50_000
REPEATS = 3
REPEATS_QUICK = 1
SOAK_S = 300.0
SOAK_QUICK_S = 30.0
# The steady load of the latency and memory figures (readings/s) and the probe's period.
STEADY_RATE = 5_000.0
PROBE_EVERY_S = 0.1
# The latency probe asks InfluxDB this often while a marker is not yet visible: the resolution.
PROBE_POLL_S = 0.01
RSS_EVERY_S = 5.0
# Ingest's buffer depth (received, not yet acknowledged) is read this often in the soak; the
# most seen per RSS sample says whether memory grew with a backlog.
BUFFER_EVERY_S = 1.0
# Latency is measured over at least this long even with a shorter soak.
STEADY_MIN_S = 30.0
# RSS before this much of the soak is warm-up (heap and buffers growing to their working size).
RSS_WARMUP_S = 60.0
RSS_WARMUP_SHARE = 1 / 3
# "Flat memory": the post-warm-up least-squares slope of RSS stays under this.
FLAT_SLOPE_MIB_PER_MIN = 0.5
DB_BATCH = 5_000
# Simulated reporting interval of a bin; the flood's readings start this long ago (inside the
# 90-day retention, so InfluxDB keeps them; far from "now", where the probe's markers live).
INTERVAL_S = 60
HISTORY_START = timedelta(days=20)
# How long ingest may take to start, and to drain after the last publish before we call it loss.
INGEST_START_S = 60.0
SETTLE_S = 60.0
# Polling /metrics costs ingest CPU (its HTTP thread wants the GIL): often enough for ~1 %
# resolution on a flood of several seconds, rarely enough to stay out of the profile.
METRICS_POLL_S = 0.2
# What `--only` can pick: 1 + 2, 3, the hostile flood, the registry backends, 4 + 5, the peer (6).
FIGURES = ("ceilings", "e2e", "hostile", "registry", "steady", "peer")
REGISTRIES = ("sqlite", "postgresql")
# Issue 17's target: the end-to-end rate with the registry on PostgreSQL within 10 % of SQLite's.
TARGET_POSTGRES_RATIO = 0.90
# Node-RED and its InfluxDB nodes, installed from npm by the first run that measures the peer.
NODE_RED_CACHE = RESULTS_DIR / "node-red-4.1"
# Issue 18's target: binwatch's zero-loss rate against the best Node-RED flow's.
TARGET_PEER_RATIO = 1.25
# Targets (docs/performance.md says where they come from).
TARGET_E2E_SHARE = 0.75
TARGET_P99_S = 1.0

# --- small utilities ------------------------------------------------------------------------


def say(text: str = "") -> None:
    print(text, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def cpu_text(per: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.0f}" for name, value in per.items())


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}/s" if value == value else "n/a"


def free_port_pair() -> int:
    """A port p with p + 1 free too (ingest worker i serves metrics on base + i)."""
    for _ in range(50):
        port = free_port()
        if port < 65000 and port_is_free(port + 1):
            return port
    raise RuntimeError("no two consecutive free ports")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the spawned workers of `--workers 2`)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` and its descendants, KiB."""
    total = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def server_pid(server: MosquittoServer | InfluxServer) -> int:
    assert server.process is not None, "server not started"
    return server.process.pid


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) pairs, per minute."""
    if len(points) < 2:
        return float("nan")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if not var:
        return float("nan")
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def versions() -> dict[str, str]:
    def first_line(command: list[str]) -> str:
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except OSError as exc:
            return f"? ({exc})"
        text = (out.stdout or out.stderr).strip()
        return next((line for line in text.splitlines() if line.strip()), "?")

    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    influxd = shutil.which("influxd") or "/usr/bin/influxd"
    found = {
        "python": platform.python_version(),
        "mosquitto": first_line([mosquitto, "-h"]).removeprefix("mosquitto version "),
        "influxdb": first_line([influxd, "version"]),
        "kernel": platform.release(),
    }
    for package in ("paho-mqtt", "httpx", "pydantic", "pydantic-core"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "?"
    return found


def ingest_command(workers: int) -> tuple[list[str], str]:
    """`binwatch ingest --workers N`, or the same command without the CLI module while another
    part of the CLI cannot be imported yet."""
    probe = subprocess.run(
        [PYTHON, "-c", "import binwatch.cli"], cwd=ROOT, capture_output=True, timeout=60
    )
    if probe.returncode == 0:
        return [PYTHON, "-m", "binwatch", "ingest", "--workers", str(workers)], "binwatch ingest"
    code = (
        "import logging, typer; from binwatch.commands.ingest import ingest;"
        " logging.basicConfig(level=logging.INFO,"
        " format='%(asctime)s %(levelname)s %(name)s: %(message)s');"
        " logging.getLogger('httpx').setLevel(logging.WARNING); typer.run(ingest)"
    )
    return [
        PYTHON,
        "-c",
        code,
        "--workers",
        str(workers),
    ], "binwatch.commands.ingest.ingest via typer.run"


# --- the bench ------------------------------------------------------------------------------


@dataclasses.dataclass
class Context:
    work: Path
    mqtt: MosquittoServer
    influx: InfluxServer
    registry_url: str
    bins: dict[str, BinTags]
    spec: PayloadSpec
    spec_path: Path
    flood: int
    ingest_cmd: Callable[[int], list[str]]
    payload_bytes: float = 0.0

    def settings(self, tag: str) -> Settings:
        return Settings(
            mqtt_url=self.mqtt.url,
            influx_url=self.influx.url,
            influx_db=f"bench_{tag}",
            topic_prefix=f"bench/{tag}/binwatch/v1",
            database_url=self.registry_url,
            ingest_client_id=f"bench-ingest-{tag}",
            ingest_share_group=f"bench-ingest-{tag}",
            ingest_metrics_port=free_port_pair(),
        )


def load_registry(url: str) -> dict[str, BinTags]:
    """Migrate the registry at `url`, load the pilot fleet into it and return its bins."""
    migrate(url)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            import_fleet(session, load_fleet(default_fleet_path()))
            return bin_tags(session)
    finally:
        engine.dispose()


def run_json(command: list[str], *, timeout: float) -> dict[str, Any]:
    """Run a helper to the end; its last stdout line is JSON."""
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{command[2]} failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def start_helper(command: list[str]) -> subprocess.Popen[str]:
    """Start a helper and wait for its `ready` line."""
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != "ready":
        process.kill()
        _, err = process.communicate()
        raise RuntimeError(f"{command[2]} did not start: {line} {err[-2000:]}")
    return process


def finish_helper(process: subprocess.Popen[str], *, timeout: float) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    lines = out.strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"helper failed ({process.returncode}): {err[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def publisher_command(ctx: Context, prefix: str, *extra: str) -> list[str]:
    return [
        PYTHON,
        "-m",
        "bench._publisher",
        str(ctx.spec_path),
        "--port",
        str(ctx.mqtt.port),
        "--prefix",
        prefix,
        "--client-id",
        f"bench-pub-{uuid.uuid4().hex[:8]}",
        *extra,
    ]


def count_between(client: InfluxClient, start_ms: int, end_ms: int) -> int:
    result = client.query(
        "SELECT count(received_ms) FROM telemetry"
        f" WHERE time >= {int(start_ms)}ms AND time < {int(end_ms)}ms"
    )
    return int(result[0].values[0][1]) if result else 0


# 1. broker ceiling -------------------------------------------------------------------------


def broker_ceiling(ctx: Context) -> dict[str, Any]:
    settings = ctx.settings(f"broker_{uuid.uuid4().hex[:8]}")
    topic = Topics(settings.topic_prefix).inbound_filters()[0]
    mosquitto_cpu = cpu_seconds(server_pid(ctx.mqtt))
    subscriber = start_helper(
        [
            PYTHON,
            "-m",
            "bench._subscriber",
            "--port",
            str(ctx.mqtt.port),
            "--topic",
            topic,
            "--count",
            str(ctx.flood),
            "--timeout",
            "600",
        ]
    )
    try:
        published = run_json(
            publisher_command(ctx, settings.topic_prefix, "--count", str(ctx.flood)), timeout=900
        )
        received = finish_helper(subscriber, timeout=600)
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
    elapsed = received["t_last"] - published["t_first"]
    per = 1e6 / max(1, received["count"])
    return {
        "readings": ctx.flood,
        "received": received["count"],
        "cpu_us_per_reading": {
            "publisher": published["cpu_s"] * per,
            "mosquitto": (cpu_seconds(server_pid(ctx.mqtt)) - mosquitto_cpu) * per,
            "subscriber": received["cpu_s"] * per,
        },
        "seconds": elapsed,
        "rate": received["count"] / elapsed,
        "publisher_rate": published["published"] / (published["t_last_ack"] - published["t_first"]),
    }


# 2. database ceiling -----------------------------------------------------------------------


def telemetry_lines(ctx: Context, count: int) -> list[str]:
    """The lines ingest would write for the first `count` readings (same decode, same tags)."""
    topics = Topics(ctx.spec.prefix)
    tags = {bin_id: tag_set(dataclasses.asdict(t)) for bin_id, t in ctx.bins.items()}
    lines: list[str] = []
    sizes = 0
    for topic, payload in islice(ctx.spec.messages(), count):
        sizes += len(payload)
        decoded = decode(
            topic,
            payload,
            int(time.time() * 1000),
            topics=topics,
            tags_of=tags.get,
            max_payload=256 * 1024,
        )
        if decoded.rejections:
            raise RuntimeError(f"the bench's own reading was rejected: {decoded.rejections[0]}")
        lines.extend(decoded.lines)
    ctx.payload_bytes = sizes / max(1, count)
    return lines


def database_ceiling(ctx: Context, lines: list[str]) -> dict[str, Any]:
    settings = ctx.settings(f"db_{uuid.uuid4().hex[:8]}")
    client = InfluxClient(settings)
    try:
        client.ensure_database(settings.raw_retention)
        posts: list[float] = []
        retries = 0
        began = time.monotonic()
        for start in range(0, len(lines), DB_BATCH):
            batch = lines[start : start + DB_BATCH]
            while True:
                sent = time.monotonic()
                try:
                    client.write(batch)
                    break
                except SinkUnavailable:  # "engine: error syncing wal" (FACTS.md): retry
                    retries += 1
                    time.sleep(0.1)
            posts.append(time.monotonic() - sent)
        elapsed = time.monotonic() - began
        stored = count_between(client, ctx.spec.start_ms, ctx.spec.end_ms(len(lines)))
    finally:
        client.close()
    return {
        "readings": len(lines),
        "stored": stored,
        "seconds": elapsed,
        "rate": len(lines) / elapsed,
        "post_p50_ms": 1000 * median(posts),
        "post_p99_ms": 1000 * percentile(posts, 0.99),
        "retries": retries,
        "line_bytes": sum(len(line) + 1 for line in lines) / len(lines),
    }


# ingest as a child process -----------------------------------------------------------------


class IngestProcess:
    """`binwatch ingest --workers N` with the run's settings, its metrics, and a warm-up that
    proves every worker is subscribed and writing before anything is measured."""

    def __init__(self, ctx: Context, settings: Settings, workers: int) -> None:
        self.ctx, self.settings, self.workers = ctx, settings, workers
        self.log_path = ctx.work / f"ingest-{settings.influx.db}.log"
        env = {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log_file:  # a restart after a SIGKILL keeps the first log
            self.process = subprocess.Popen(
                ctx.ingest_cmd(workers),
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._http = httpx.Client(timeout=2.0)
        self._warm_ts = int(time.time() * 1000)

    @property
    def pid(self) -> int:
        return self.process.pid

    def metric(self, name: str) -> list[float]:
        """`name` from each worker's /metrics (one value per worker)."""
        values = []
        for worker in range(self.workers):
            url = f"http://127.0.0.1:{self.settings.ingest.metrics_port + worker}/metrics"
            text = self._http.get(url).text
            match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
            values.append(float(match.group(1)) if match else 0.0)
        return values

    def stored(self) -> float:
        return sum(self.metric("binwatch_ingest_stored_points_total"))

    def warm_up(self) -> None:
        deadline = time.monotonic() + INGEST_START_S
        prober = Prober(self.settings, self.ctx.spec.bins[0])
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"ingest exited:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ingest did not warm up:\n{self.log_tail()}")
                try:
                    received = self.metric("binwatch_ingest_received_messages_total")
                except httpx.HTTPError:
                    time.sleep(0.2)
                    continue
                if all(value > 0 for value in received):
                    return
                prober.publish_marker()
                time.sleep(0.1)
        finally:
            prober.close()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def problems(self, *, expected: str | None = None) -> list[str]:
        """The first errors and warnings of its log, but for those containing `expected`."""
        text = self.log_path.read_text(errors="replace")
        return [
            line
            for line in text.splitlines()
            if (" ERROR " in line or "Traceback" in line or " WARNING " in line)
            and not (expected and expected in line)
        ][:20]

    def stop(self) -> int:
        self._http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                for pid in reversed(process_tree(self.process.pid)):
                    with _ignored():
                        os.kill(pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


@contextmanager
def _ignored() -> Iterator[None]:
    with suppress(OSError):
        yield


@contextmanager
def running_ingest(ctx: Context, settings: Settings, workers: int) -> Iterator[IngestProcess]:
    ingest = IngestProcess(ctx, settings, workers)
    try:
        ingest.warm_up()
        yield ingest
    finally:
        code = ingest.stop()
        if code not in (0, -signal.SIGTERM):
            say(f"  ! ingest exited with {code}; log {ingest.log_path}:\n{ingest.log_tail()}")


# 3. end to end -----------------------------------------------------------------------------


def end_to_end(
    ctx: Context, workers: int, *, profile_to: Path | None = None, hostile: bool = False
) -> dict[str, Any]:
    """A flood of `ctx.flood` messages through ingest; with `hostile`, every 20th is hostile
    (`bench._hostile`) and the dead letters they leave are counted by reason."""
    tag = "hostile" if hostile else f"e2e{workers}"
    settings = ctx.settings(f"{tag}_{uuid.uuid4().hex[:8]}")
    client = InfluxClient(settings)
    valid, mixed = _hostile.mix(ctx.spec, ctx.flood) if hostile else (ctx.flood, [])
    extra: list[str] = []
    if mixed:
        path = ctx.work / f"{settings.influx.db}-hostile.json"
        path.write_text(json.dumps(_hostile.to_json(mixed)))
        extra = ["--hostile", str(path)]
    wanted = _hostile.expected(mixed)
    start_ms, end_ms = ctx.spec.start_ms, ctx.spec.end_ms(valid)
    try:
        with running_ingest(ctx, settings, workers) as ingest:
            base = ingest.stored()
            cpu_before = cpu_seconds(ingest.pid)
            servers_before = cpu_seconds(server_pid(ctx.mqtt)), cpu_seconds(server_pid(ctx.influx))
            publisher = start_helper(
                publisher_command(ctx, settings.topic_prefix, "--count", str(valid), *extra)
            )
            spy = None
            if profile_to is not None:
                spy = subprocess.Popen(
                    [
                        str(Path(PYTHON).parent / "py-spy"),
                        "record",
                        "--pid",
                        str(ingest.pid),
                        "--rate",
                        "200",
                        "--format",
                        "raw",
                        "--threads",
                        "--nonblocking",
                        "--output",
                        str(profile_to),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            t_end, stored, last_progress = 0.0, 0, time.monotonic()
            previous = -1.0
            while True:
                now_stored = ingest.stored() - base
                if now_stored != previous:
                    previous, last_progress = now_stored, time.monotonic()
                if now_stored >= valid:
                    stored = count_between(client, start_ms, end_ms)
                    if stored >= valid:
                        t_end = time.time()
                        break
                if time.monotonic() - last_progress > SETTLE_S:
                    stored = count_between(client, start_ms, end_ms)
                    t_end = time.time()
                    break
                time.sleep(METRICS_POLL_S)
            cpu = cpu_seconds(ingest.pid) - cpu_before
            mosquitto_cpu = cpu_seconds(server_pid(ctx.mqtt)) - servers_before[0]
            influx_cpu = cpu_seconds(server_pid(ctx.influx)) - servers_before[1]
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                try:
                    spy.wait(30)
                except subprocess.TimeoutExpired:
                    spy.kill()
            published = finish_helper(publisher, timeout=120)
            # Letters are filed with their batch: they may trail the last valid reading.
            deadline = time.monotonic() + SETTLE_S
            letters = dead_letters(ctx.registry_url, settings.topic_prefix)
            while letters != wanted and time.monotonic() < deadline:
                time.sleep(METRICS_POLL_S)
                letters = dead_letters(ctx.registry_url, settings.topic_prefix)
            # The hostile flood's dead letters are each logged; they are counted above instead.
            problems = ingest.problems(expected="dead-lettered" if mixed else None)
    finally:
        client.close()
    elapsed = t_end - published["t_first"]
    per = 1e6 / max(1, stored)
    return {
        "workers": workers,
        "cpu_us_per_reading": {
            "publisher": published["cpu_s"] * per,
            "mosquitto": mosquitto_cpu * per,
            "ingest": cpu * per,
            "influxdb": influx_cpu * per,
        },
        "readings": published["published"] - len(mixed),
        "stored": stored,
        "loss": published["published"] - len(mixed) - stored,
        "seconds": elapsed,
        "rate": stored / elapsed,
        "ingest_cpu_share": cpu / elapsed,
        "log_problems": problems,
        "hostile_messages": len(mixed),
        "dead_letters_expected": wanted,
        "dead_letters_found": letters,
        "dead_letters_accounted": letters == wanted,
    }


def dead_letters(registry_url: str, prefix: str) -> dict[str, list[int]]:
    """reason -> [letters, readings] filed for topics under `prefix` (one run's)."""
    engine = make_engine(registry_url)
    try:
        with Session(engine) as session:
            rows = session.execute(
                select(DeadLetter.reason, func.count(), func.sum(DeadLetter.parts))
                .where(DeadLetter.topic.startswith(f"{prefix}/"))
                .group_by(DeadLetter.reason)
            ).all()
    finally:
        engine.dispose()
    return {reason: [int(n), int(parts)] for reason, n, parts in rows}


# 4 + 5. steady load: latency probe and memory soak -----------------------------------------


class Prober:
    """Publishes marker readings for one bin with `ts` = now (the flood's readings lie weeks in
    the past, so a marker is never confused with them), QoS 1, on its own connection."""

    def __init__(self, settings: Settings, bin_id: str) -> None:
        self.topic = Topics(settings.topic_prefix).bin(bin_id, TopicKind.telemetry)
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"bench-probe-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        endpoint = settings.mqtt_endpoint()
        self.client.connect(endpoint.host, endpoint.port, keepalive=60)
        self.client.loop_start()
        self._last_ts = 0
        self._seq = 0

    def publish_marker(self) -> tuple[int, float]:
        """(marker ts in ms, wall-clock time of publishing)."""
        ts = max(int(time.time() * 1000), self._last_ts + 1)
        self._last_ts = ts
        self._seq += 1
        payload = f'{{"ts":{ts},"seq":{self._seq},"fill_pct":42.0,"deposits":0}}'
        sent = time.time()
        self.client.publish(self.topic, payload.encode(), qos=1)
        return ts, sent

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def steady(ctx: Context, seconds: float) -> dict[str, Any]:
    settings = ctx.settings(f"steady_{uuid.uuid4().hex[:8]}")
    client = InfluxClient(settings)
    marker_bin = ctx.spec.bins[0]
    latencies: list[float] = []
    broker_legs: list[float] = []
    rss: list[tuple[float, int]] = []
    loads: list[float] = []
    buffer_max: list[int] = []  # most messages in ingest's buffer since the previous RSS sample
    buffer_now = 0
    # (seconds into the run, publish-to-queryable, publish-to-ingest) of every probe.
    series_out: list[tuple[float, float, float]] = []
    cpu_points: list[tuple[float, float]] = []
    lost_markers = 0
    try:
        with running_ingest(ctx, settings, 1) as ingest:
            prober = Prober(settings, marker_bin)
            publisher = start_helper(
                publisher_command(
                    ctx,
                    settings.topic_prefix,
                    "--rate",
                    str(STEADY_RATE),
                    "--seconds",
                    str(seconds),
                )
            )
            began = time.monotonic()
            wall_began = time.time()
            outstanding: dict[int, float] = {}
            next_probe = next_rss = next_buffer = began
            while True:
                now = time.monotonic()
                running = now - began < seconds
                if running and now >= next_probe:
                    ts, sent = prober.publish_marker()
                    outstanding[ts] = sent
                    next_probe += PROBE_EVERY_S
                if now >= next_buffer and running:
                    with suppress(httpx.HTTPError):
                        depth = int(ingest.metric("binwatch_ingest_buffer_messages")[0])
                        buffer_now = max(buffer_now, depth)
                    next_buffer += BUFFER_EVERY_S
                if now >= next_rss and running:
                    rss.append((now - began, rss_kib(ingest.pid)))
                    buffer_max.append(buffer_now)
                    buffer_now = 0
                    loads.append(os.getloadavg()[0])
                    cpu_points.append((now - began, cpu_seconds(ingest.pid)))
                    next_rss += RSS_EVERY_S
                if outstanding:
                    rows = client.query(
                        "SELECT received_ms FROM telemetry WHERE bin = $bin"
                        f" AND time >= {min(outstanding)}ms",
                        params={"bin": marker_bin},
                    )
                    seen = time.time()
                    for series in rows:
                        for ts_ms, received_ms in series.values:
                            sent_at = outstanding.pop(int(ts_ms), None)
                            if sent_at is not None:
                                latencies.append(seen - sent_at)
                                broker_legs.append(received_ms / 1000 - sent_at)
                                series_out.append(
                                    (
                                        sent_at - wall_began,
                                        seen - sent_at,
                                        received_ms / 1000 - sent_at,
                                    )
                                )
                if not running and (not outstanding or now - began > seconds + SETTLE_S):
                    lost_markers = len(outstanding)
                    break
                time.sleep(PROBE_POLL_S)
            prober.close()
            published = finish_helper(publisher, timeout=SETTLE_S + 60)
            end_ms = ctx.spec.end_ms(published["published"])
            deadline = time.monotonic() + SETTLE_S
            stored = count_between(client, ctx.spec.start_ms, end_ms)
            while stored < published["published"] and time.monotonic() < deadline:
                time.sleep(0.5)
                stored = count_between(client, ctx.spec.start_ms, end_ms)
            problems = ingest.problems()
    finally:
        client.close()
    achieved = published["published"] / (published["t_last_ack"] - published["t_first"])
    mib = [(t, kib / 1024) for t, kib in rss]
    warm = min(RSS_WARMUP_S, seconds * RSS_WARMUP_SHARE)
    after_warmup = [(t, v) for t, v in mib if t >= warm]
    cpu_share = (
        (cpu_points[-1][1] - cpu_points[0][1]) / (cpu_points[-1][0] - cpu_points[0][0])
        if len(cpu_points) > 1
        else float("nan")
    )
    return {
        "seconds": seconds,
        "rate_target": STEADY_RATE,
        "rate_achieved": achieved,
        "published": published["published"],
        "stored": stored,
        "loss": published["published"] - stored,
        "probes": len(latencies),
        "probes_lost": lost_markers,
        "latency_p50_s": median(latencies),
        "latency_p99_s": percentile(latencies, 0.99),
        "latency_max_s": max(latencies) if latencies else float("nan"),
        "broker_leg_p50_s": median(broker_legs),
        "broker_leg_p99_s": percentile(broker_legs, 0.99),
        "rss_mib": [[round(t, 1), round(v, 2)] for t, v in mib],
        "buffer_max_messages": buffer_max,
        "loadavg_1min": loads,
        "latency_by_window": by_window(series_out),
        "probe_series": [[round(t, 2), round(a, 3), round(b, 3)] for t, a, b in series_out],
        "rss_first_mib": mib[0][1] if mib else float("nan"),
        "rss_last_mib": mib[-1][1] if mib else float("nan"),
        "rss_max_mib": max(v for _, v in mib) if mib else float("nan"),
        "rss_slope_mib_per_min": slope_per_min(mib),
        "rss_slope_after_warmup_mib_per_min": slope_per_min(after_warmup),
        "rss_warmup_s": warm,
        "ingest_cpu_share": cpu_share,
        "log_problems": problems,
    }


# peer: binwatch against Node-RED (bench/_peer.py) -------------------------------------------


class BinwatchPipeline:
    """`binwatch ingest --workers 1` as a `_peer.Pipeline`: restarted after a SIGKILL with the
    same settings, so the same client id and persistent session."""

    name = "binwatch, 1 worker"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.settings(f"peer_binwatch_{uuid.uuid4().hex[:8]}")
        self.prefix = self.settings.topic_prefix
        self.client = InfluxClient(self.settings)
        self.ingest: IngestProcess | None = None

    def start(self) -> None:
        self.ingest = IngestProcess(self.ctx, self.settings, 1)
        self.ingest.warm_up()

    def count(self, start_ms: int, end_ms: int) -> int:
        return count_between(self.client, start_ms, end_ms)

    def cpu_seconds(self) -> float:
        assert self.ingest is not None
        return cpu_seconds(self.ingest.pid)

    def kill(self) -> None:
        assert self.ingest is not None
        for pid in reversed(process_tree(self.ingest.pid)):
            with _ignored():
                os.kill(pid, signal.SIGKILL)
        self.ingest.stop()  # reaps it and closes its metrics client

    def stop(self) -> None:
        if self.ingest is not None:
            self.ingest.stop()
        self.client.close()

    def problems(self) -> list[str]:
        return self.ingest.problems() if self.ingest is not None else []


class NodeRedPipeline:
    """A Node-RED flow (`bench/_nodered.py`) as a `_peer.Pipeline`, on its own database, which
    the bench creates (the InfluxDB nodes do not)."""

    def __init__(self, ctx: Context, cache: Path, kind: str) -> None:
        self.ctx, self.kind = ctx, kind
        self.name = f"Node-RED, {kind} flow"
        self.settings = ctx.settings(f"peer_nodered_{kind}_{uuid.uuid4().hex[:8]}")
        self.prefix = self.settings.topic_prefix
        self.client = InfluxClient(self.settings)
        self.client.ensure_database(self.settings.raw_retention)
        nodes = _nodered.flow(
            kind,
            mqtt_port=ctx.mqtt.port,
            topic=f"{self.prefix}/bins/+/telemetry",
            client_id=f"bench-nodered-{kind}",
            influx_port=ctx.influx.port,
            database=self.settings.influx.db,
            tags={b: {k: v for k, v in t.as_tags().items() if v} for b, t in ctx.bins.items()},
        )
        self.red = _nodered.NodeRed(cache, ctx.work / f"node-red-{kind}", nodes, free_port())

    def start(self) -> None:
        """Started, then proven subscribed and writing: marker readings (`ts` = now, outside
        every stream's range) until one is stored."""
        self.red.start()
        since = int(time.time() * 1000)
        deadline = time.monotonic() + INGEST_START_S
        prober = Prober(self.settings, self.ctx.spec.bins[0])
        try:
            while count_between(self.client, since, since + 86_400_000) == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} stores nothing; see {self.red.log_path}")
                prober.publish_marker()
                time.sleep(0.2)
        finally:
            prober.close()

    def count(self, start_ms: int, end_ms: int) -> int:
        return count_between(self.client, start_ms, end_ms)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.red.pid)

    def kill(self) -> None:
        self.red.kill()

    def stop(self) -> None:
        self.red.stop()
        self.client.close()

    def problems(self) -> list[str]:
        return self.red.problems()


def same_point(ctx: Context, ours: Settings, theirs: Settings) -> dict[str, Any]:
    """The first reading of every run (the flood's first) as binwatch and a Node-RED flow stored
    it: the same measurement, tags, field names and values? Types and `received_ms` (each
    one's own clock) may differ and are listed, not judged."""

    def stored(settings: Settings) -> tuple[dict[str, Any], dict[str, str]]:
        client = InfluxClient(settings)
        try:
            rows = client.query(
                f"SELECT * FROM {MEASUREMENT} WHERE bin = $bin AND time = {ctx.spec.start_ms}ms",
                params={"bin": ctx.spec.bins[0]},
            )
            kinds = client.query(f"SHOW FIELD KEYS FROM {MEASUREMENT}")
        finally:
            client.close()
        point = rows[0].rows()[0] if rows and rows[0].values else {}
        return (
            {k: v for k, v in point.items() if v is not None},
            {row["fieldKey"]: row["fieldType"] for series in kinds for row in series.rows()},
        )

    (a, a_types), (b, b_types) = stored(ours), stored(theirs)
    differ = sorted(k for k in a.keys() | b.keys() if k != "received_ms" and a.get(k) != b.get(k))
    return {
        "found": bool(a) and bool(b),
        "same": bool(a) and bool(b) and not differ,
        "differ": {k: [a.get(k), b.get(k)] for k in differ},
        "types_differ": {
            k: [a_types.get(k), b_types.get(k)]
            for k in sorted(a_types.keys() | b_types.keys())
            if a_types.get(k) != b_types.get(k)
        },
    }


def finish_publisher(publisher: subprocess.Popen[str]) -> dict[str, Any]:
    """Its result; interrupted (Ctrl-C, SIGTERM), it is killed rather than left publishing."""
    try:
        return finish_helper(publisher, timeout=900)
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.wait()


def peer(ctx: Context, quick: bool) -> dict[str, Any]:
    """binwatch (1 worker) and both Node-RED flows, one after the other, same broker, database,
    publisher and payloads (bench/_peer.py says what is measured)."""
    plan = _peer.QUICK if quick else _peer.FULL
    began = time.monotonic()
    versions = _nodered.install(NODE_RED_CACHE, ctx.work)
    install_s = time.monotonic() - began
    say(f"  Node-RED {versions} in {NODE_RED_CACHE.relative_to(ROOT)} ({install_s:.0f} s)")
    rig = _peer.Rig(
        ctx.spec,
        lambda prefix, first, count, rate: start_helper(
            publisher_command(
                ctx,
                prefix,
                "--first",
                str(first),
                "--count",
                str(count),
                *(["--rate", f"{rate:.1f}"] if rate else []),
            )
        ),
        finish_publisher,
    )
    binwatch_pipe = BinwatchPipeline(ctx)
    binwatch = _peer.measure(rig, binwatch_pipe, plan, say)
    flows = []
    for kind in _nodered.FLOWS:
        pipe = NodeRedPipeline(ctx, NODE_RED_CACHE, kind)
        flows.append(_peer.measure(rig, pipe, plan, say))
        flows[-1]["same_point"] = same_point(ctx, binwatch_pipe.settings, pipe.settings)
        say(f"    written as binwatch writes it: {flows[-1]['same_point']}")
    return {
        "plan": dataclasses.asdict(plan),
        "criteria": {
            "held": f"zero loss, last reading stored within {plan.lag_s:g} s of the last"
            f" publish, publisher at >= {_peer.ACHIEVED_SHARE:.0%} of the rate",
            "fault": f"SIGKILL once {_peer.FAULT_KILL_AT:.0%} of the stream is stored, at"
            f" {_peer.FAULT_RATE_SHARE:.0%} of the pipeline's zero-loss rate",
        },
        "node_red": versions,
        "install_s": install_s,
        "binwatch": binwatch,
        "node_red_flows": flows,
        "summary": _peer.summarise(binwatch, flows),
        "seconds": time.monotonic() - began,
    }


# --- report ---------------------------------------------------------------------------------


def by_window(series: list[tuple[float, float, float]], window_s: float = 30.0) -> list[Any]:
    """[window start s, probes, p50 s, p99 s, publish-to-ingest p50 s] per `window_s`."""
    windows: dict[int, list[tuple[float, float]]] = {}
    for t, latency, leg in series:
        windows.setdefault(int(t // window_s), []).append((latency, leg))
    return [
        [
            key * window_s,
            len(values),
            round(median([v[0] for v in values]), 3),
            round(percentile([v[0] for v in values], 0.99), 3),
            round(median([v[1] for v in values]), 3),
        ]
        for key, values in sorted(windows.items())
    ]


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Medians, shares and targets of the figures that ran (`--only` may skip some)."""
    summary: dict[str, Any] = {}
    targets: dict[str, bool] = {}
    lower = float("nan")
    if results["broker"]:
        broker = median([r["rate"] for r in results["broker"]])
        database = median([r["rate"] for r in results["database"]])
        lower = min(broker, database)
        summary["broker_ceiling_rate"] = broker
        summary["database_ceiling_rate"] = database
        summary["lower_ceiling"] = "broker" if broker <= database else "database"
    e2e = {w: median([r["rate"] for r in results[f"e2e_w{w}"]]) for w in (1, 2)}
    for w, rate in e2e.items():
        summary[f"e2e_rate_w{w}"] = rate
        summary[f"e2e_share_w{w}"] = rate / lower
    if results["broker"] and results["e2e_w2"]:
        targets[f"e2e >= {TARGET_E2E_SHARE:.0%} of the lower ceiling"] = (
            max(e2e.values()) / lower >= TARGET_E2E_SHARE
        )
    loss = sum(r["loss"] for k in ("e2e_w1", "e2e_w2") for r in results[k])
    summary["flood_loss"] = loss
    s = results["steady"]
    if s:
        summary["steady_loss"] = s["loss"]
        summary["latency_p50_s"] = s["latency_p50_s"]
        summary["latency_p99_s"] = s["latency_p99_s"]
        summary["rss_slope_after_warmup_mib_per_min"] = s["rss_slope_after_warmup_mib_per_min"]
    if results["e2e_w1"] or s:
        targets["0 loss"] = loss == 0 and (not s or (s["loss"] == 0 and s["probes_lost"] == 0))
    if results["hostile"]:
        hostile = median([r["rate"] for r in results["hostile"]])
        summary["hostile_rate"] = hostile
        summary["hostile_ratio_to_e2e_w1"] = hostile / e2e[1]
        # Steadier than the rates on a shared machine: ingest's CPU per valid reading.
        summary["hostile_ingest_cpu_ratio"] = median(
            [r["cpu_us_per_reading"]["ingest"] for r in results["hostile"]]
        ) / median([r["cpu_us_per_reading"]["ingest"] for r in results["e2e_w1"]])
        summary["hostile_loss"] = sum(r["loss"] for r in results["hostile"])
        targets[f"0 loss of valid readings, {1 / _hostile.EVERY:.0%} hostile"] = (
            summary["hostile_loss"] == 0
        )
        targets["every hostile message dead-lettered under its reason"] = all(
            r["dead_letters_accounted"] for r in results["hostile"]
        )
    if results["registry_sqlite"]:
        rates = {b: median([r["rate"] for r in results[f"registry_{b}"]]) for b in REGISTRIES}
        summary["registry_rate"] = rates
        summary["registry_ratio"] = rates["postgresql"] / rates["sqlite"]
        summary["registry_loss"] = sum(
            r["loss"] for b in REGISTRIES for r in results[f"registry_{b}"]
        )
        targets[f"registry on PostgreSQL >= {TARGET_POSTGRES_RATIO:.0%} of SQLite's rate"] = (
            summary["registry_ratio"] >= TARGET_POSTGRES_RATIO
        )
        targets["0 loss, registry on either"] = summary["registry_loss"] == 0
    if s:
        targets[f"p99 < {TARGET_P99_S:g} s at {STEADY_RATE:,.0f}/s"] = (
            s["latency_p99_s"] < TARGET_P99_S and s["rate_achieved"] >= 0.95 * STEADY_RATE
        )
        targets[f"flat memory (slope < {FLAT_SLOPE_MIB_PER_MIN} MiB/min after warm-up)"] = (
            s["rss_slope_after_warmup_mib_per_min"] < FLAT_SLOPE_MIB_PER_MIN
        )
    if p := results["peer"]:
        summary["peer"] = p["summary"]
        targets[f"zero-loss rate >= {TARGET_PEER_RATIO:g} × the best Node-RED flow's"] = (
            # Met only against a peer rate that is not a mere lower bound.
            p["summary"]["ratio"] >= TARGET_PEER_RATIO and p["summary"]["best_peer_bounded"]
        )
        targets["0 loss flooded and through a SIGKILL (binwatch)"] = (
            p["binwatch"]["flood"]["loss"] == 0
            and p["binwatch"]["fault"]["loss"] == 0
            and p["binwatch"]["fault"]["mid_stream"]
        )
    summary["targets"] = targets
    return summary


def peer_rows(p: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Figure 6: each pipeline's zero-loss rate, flood and SIGKILL loss, then the ratio."""
    rows = []
    for r in (p["binwatch"], *p["node_red_flows"]):
        steps = r["search"]["steps"]
        rows += [
            (
                f"6 {r['name']}: zero-loss rate",
                fmt_rate(r["zero_loss_rate"]),
                f"{_peer.bound_text(r['search'])}; {len(steps)} streams of"
                f" {p['plan']['step_s']:g} s",
            ),
            (
                "  loss flooded / through a SIGKILL",
                f"{r['flood']['loss']:,} / {r['fault']['loss']:,}",
                f"of {r['flood']['published']:,} (stored {fmt_rate(r['flood']['rate'])},"
                f" {r['flood']['cpu_us_per_reading']:.0f} µs CPU per reading) / of"
                f" {r['fault']['published']:,} at {fmt_rate(r['fault']['rate'])}",
            ),
        ]
    s = p["summary"]
    low, high = s["loadavg_1min_during"]
    rows.append(
        (
            "6 ratio binwatch / best Node-RED flow",
            f"{s['ratio']:.2f}",
            f"{fmt_rate(s['binwatch_zero_loss_rate'])} / {fmt_rate(s['best_peer_zero_loss_rate'])}"
            f" ({s['best_peer']}); load average {low:.1f}–{high:.1f}"
            + (
                ""
                if s["bounded"]
                else "; a lower bound stands in the ratio (that search found no limit of its own)"
            ),
        )
    )
    return rows


def hostile_mix_text() -> str:
    kinds = "; ".join(f"{kind} → {reason}" for kind, reason, _, _ in _hostile.KINDS)
    return f"1 message in {_hostile.EVERY}, in turn: {kinds}"


def print_table(results: dict[str, Any], summary: dict[str, Any]) -> None:
    def runs(key: str) -> str:
        return ", ".join(f"{r['rate']:,.0f}" for r in results[key])

    s = results["steady"]
    rows: list[tuple[str, str, str]] = []
    if results["broker"]:
        rows += [
            (
                "1 broker ceiling (pub → plain sub)",
                fmt_rate(summary["broker_ceiling_rate"]),
                f"runs {runs('broker')}",
            ),
            (
                "2 database ceiling (5,000-line POSTs)",
                fmt_rate(summary["database_ceiling_rate"]),
                f"runs {runs('database')}",
            ),
        ]
    for w in (1, 2):
        if results[f"e2e_w{w}"]:
            share = summary[f"e2e_share_w{w}"]
            rows.append(
                (
                    f"3 end to end, {w} worker{'s' if w > 1 else ''}",
                    fmt_rate(summary[f"e2e_rate_w{w}"]),
                    (f"{share:.0%} of lower ceiling; " if share == share else "")
                    + f"runs {runs(f'e2e_w{w}')}",
                )
            )
    floods = len(results["e2e_w1"]) + len(results["e2e_w2"])
    if floods:
        rows.append(
            ("3 loss (published − stored), floods", str(summary["flood_loss"]), f"{floods} floods")
        )
    if results["hostile"]:
        last = results["hostile"][-1]
        rows += [
            (
                f"3h valid stored, {1 / _hostile.EVERY:.0%} hostile, 1 worker",
                fmt_rate(summary["hostile_rate"]),
                f"{summary['hostile_ratio_to_e2e_w1']:.2f} × clean 1-worker rate, ingest CPU"
                f" per valid reading {summary['hostile_ingest_cpu_ratio']:.2f} × clean;"
                f" runs {runs('hostile')}",
            ),
            (
                "3h loss of valid readings",
                str(summary["hostile_loss"]),
                f"{last['readings']:,} valid + {last['hostile_messages']:,} hostile messages",
            ),
            (
                "3h dead letters [letters, readings]",
                "all found"
                if all(r["dead_letters_accounted"] for r in results["hostile"])
                else "MISMATCH",
                f"expected {last['dead_letters_expected']}, found {last['dead_letters_found']}",
            ),
        ]
    if results["registry_sqlite"]:
        rows += [
            (
                f"3r end to end, 1 worker, registry on {backend}",
                fmt_rate(summary["registry_rate"][backend]),
                f"runs {runs(f'registry_{backend}')}",
            )
            for backend in REGISTRIES
        ]
        rows.append(
            (
                "3r loss, both registries",
                str(summary["registry_loss"]),
                f"{sum(len(results[f'registry_{b}']) for b in REGISTRIES)} floods",
            )
        )
    if s:
        rows += [
            (
                "4 latency p50 / p99 / max",
                f"{s['latency_p50_s'] * 1000:.0f} / {s['latency_p99_s'] * 1000:.0f} /"
                f" {s['latency_max_s'] * 1000:.0f} ms",
                f"{s['probes']} probes at {s['rate_achieved']:,.0f}/s achieved; broker leg p50"
                f" {s['broker_leg_p50_s'] * 1000:.0f} ms",
            ),
            (
                "5 ingest RSS first / last / max",
                f"{s['rss_first_mib']:.1f} / {s['rss_last_mib']:.1f} / {s['rss_max_mib']:.1f} MiB",
                f"slope {s['rss_slope_mib_per_min']:+.2f} MiB/min all,"
                f" {s['rss_slope_after_warmup_mib_per_min']:+.2f} after {s['rss_warmup_s']:.0f} s",
            ),
            (
                "  steady loss",
                str(s["loss"]),
                f"{s['published']:,} published, {s['stored']:,} stored",
            ),
        ]
    if p := results["peer"]:
        rows += peer_rows(p)
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    say("")
    say("=" * 100)
    say(f"{'figure':<{width}}  {'value':>{vwidth}}  notes (medians of the runs listed)")
    say("-" * 100)
    for name, value, note in rows:
        say(f"{name:<{width}}  {value:>{vwidth}}  {note}")
    say("-" * 100)
    if results["broker"] and results["e2e_w2"]:
        lower = min(summary["broker_ceiling_rate"], summary["database_ceiling_rate"])
        say(
            f"ratio e2e / min(ceilings) = {summary['e2e_rate_w1']:,.0f} / {lower:,.0f} ="
            f" {summary['e2e_share_w1']:.2f} (1 worker), {summary['e2e_share_w2']:.2f}"
            f" (2 workers); lower ceiling: {summary['lower_ceiling']}"
        )
    if results["hostile"]:
        say(
            f"ratio hostile / clean (1 worker) = {summary['hostile_rate']:,.0f} /"
            f" {summary['e2e_rate_w1']:,.0f} = {summary['hostile_ratio_to_e2e_w1']:.2f} (ingest CPU"
            f" per valid reading: {summary['hostile_ingest_cpu_ratio']:.2f} × clean);"
            f" hostile mix: {hostile_mix_text()}"
        )
    if results["registry_sqlite"]:
        rates = summary["registry_rate"]
        say(
            f"ratio registry PostgreSQL / SQLite = {rates['postgresql']:,.0f} /"
            f" {rates['sqlite']:,.0f} = {summary['registry_ratio']:.2f}"
        )
    say("targets:")
    for name, met in summary["targets"].items():
        say(f"  [{'met' if met else 'NOT MET'}] {name}")
    say("=" * 100)


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller flood, one run, 30 s soak")
    parser.add_argument("--soak-seconds", type=float, help="steady soak length (default 300)")
    parser.add_argument("--readings", type=int, help="flood size (default 200,000)")
    parser.add_argument("--repeats", type=int, help="runs of each flood figure (default 3)")
    parser.add_argument(
        "--profile", action="store_true", help="also py-spy an extra 1-worker flood"
    )
    parser.add_argument(
        "--only",
        default=",".join(FIGURES),
        help=f"comma-separated figures to run, of {', '.join(FIGURES)} (default all); hostile"
        " also runs the clean 1-worker flood its ratio needs; peer runs binwatch's and Node-RED's"
        " floods, zero-loss searches and SIGKILLs",
    )
    args = parser.parse_args(argv)
    args.only = {name.strip() for name in args.only.split(",") if name.strip()}
    if not args.only:
        parser.error(f"--only: name at least one figure of {FIGURES}")
    if unknown := args.only - set(FIGURES):
        parser.error(f"--only: unknown figure(s) {', '.join(sorted(unknown))}; pick from {FIGURES}")
    args.readings = args.readings or (FLOOD_QUICK if args.quick else FLOOD)
    args.repeats = args.repeats or (REPEATS_QUICK if args.quick else REPEATS)
    if args.soak_seconds is None:
        args.soak_seconds = SOAK_QUICK_S if args.quick else SOAK_S
    return args


def _exit_on_sigterm(*_: object) -> None:
    """SIGTERM (a `kill`, a timeout) unwinds like Ctrl-C, so the `finally` blocks stop the servers
    and ingest instead of leaving them running; a second SIGTERM must not cut that short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(143)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if "peer" in args.only:
        _nodered.require_node()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    stamp = datetime.now().astimezone()
    work = Path(tempfile.mkdtemp(prefix="binwatch-bench-"))
    mqtt = MosquittoServer(work / "mosquitto", free_port())
    influx = InfluxServer(work / "influxdb", free_port())
    results: dict[str, Any] = {
        "broker": [],
        "database": [],
        "e2e_w1": [],
        "e2e_w2": [],
        "hostile": [],
        "registry_sqlite": [],
        "registry_postgresql": [],
        "steady": {},
        "peer": {},
        "profile": None,
    }
    postgres = (
        PostgresServer(work / "postgresql", free_port(), durable=True)
        if "registry" in args.only
        else None
    )
    ok = False
    try:
        mqtt.start()
        influx.start()
        registry_url = f"sqlite:///{work / 'registry.db'}"
        bins = load_registry(registry_url)
        spec = build_spec(
            list(bins.values()),
            prefix="bench/db/binwatch/v1",
            start=datetime.now(UTC) - HISTORY_START,
            interval_s=INTERVAL_S,
        )
        spec_path = work / "payloads.json"
        spec_path.write_text(json.dumps(spec.to_json()))
        probe_cmd, how = ingest_command(1)
        ctx = Context(
            work,
            mqtt,
            influx,
            registry_url,
            bins,
            spec,
            spec_path,
            args.readings,
            lambda workers: ingest_command(workers)[0],
        )
        registries = {"sqlite": ctx}
        if postgres is not None:
            postgres.start()
            # A throwaway cluster of the run's own: its default database is the registry.
            registries["postgresql"] = dataclasses.replace(
                ctx, registry_url=postgres.database_url()
            )
            load_registry(postgres.database_url())
        lines = telemetry_lines(ctx, args.readings)
        conditions = {
            "date": stamp.isoformat(timespec="seconds"),
            "readings_per_flood": args.readings,
            "repeats": args.repeats,
            "fleet_bins": len(bins),
            "payload_bytes_mean": round(ctx.payload_bytes, 1),
            "topic_example": f"bench/<run>/binwatch/v1/bins/{spec.bins[0]}/telemetry",
            "line_bytes_mean": round(sum(len(x) + 1 for x in lines) / len(lines), 1),
            "qos": 1,
            "cores": os.cpu_count(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "ingest_command": " ".join([*probe_cmd[:2], "…", *probe_cmd[-2:]]) + f" ({how})",
            "ingest_settings": {
                f"ingest_{k}": v
                for k, v in Settings().ingest.model_dump().items()
                if k in ("batch_size", "batch_seconds", "buffer")
            },
            "publisher": "bench/_publisher.py (pre-serialised payloads, 1 thread, window 1000)",
            "steady_rate": STEADY_RATE,
            "soak_seconds": args.soak_seconds,
            "figures": sorted(args.only),
            "registries": {
                "sqlite": "a file in the work folder (binwatch's WAL settings)",
                **(
                    {
                        "postgresql": f"PostgreSQL {postgres_bin_dir().parent.name} on loopback,"
                        " started by the run, durable (fsync on, as SQLite syncs its commits)"
                    }
                    if postgres is not None
                    else {}
                ),
            },
            "hostile_mix": hostile_mix_text(),
            "versions": versions(),
        }
        results["conditions"] = conditions
        say(f"binwatch ingest benchmark — {conditions['date']}")
        for key in (
            "readings_per_flood",
            "repeats",
            "fleet_bins",
            "payload_bytes_mean",
            "line_bytes_mean",
            "qos",
            "cores",
            "loadavg_at_start",
            "ingest_command",
            "ingest_settings",
            "publisher",
            "figures",
            "registries",
            "versions",
        ):
            say(f"  {key}: {conditions[key]}")
        say(f"  work dir: {work}")
        for rep in range(args.repeats):
            if args.only & {"ceilings", "e2e", "hostile"}:
                say(f"\n-- run {rep + 1} of {args.repeats}")
            if "ceilings" in args.only:
                r = broker_ceiling(ctx)
                results["broker"].append(r)
                say(
                    f"  1 broker ceiling   {fmt_rate(r['rate'])} ({r['received']:,} in"
                    f" {r['seconds']:.2f} s; publisher acked at {fmt_rate(r['publisher_rate'])})"
                )
                say("      CPU µs per reading: " + cpu_text(r["cpu_us_per_reading"]))
                r = database_ceiling(ctx, lines)
                results["database"].append(r)
                say(
                    f"  2 database ceiling {fmt_rate(r['rate'])} ({r['stored']:,} stored in"
                    f" {r['seconds']:.2f} s; POST p50 {r['post_p50_ms']:.0f} ms,"
                    f" p99 {r['post_p99_ms']:.0f} ms; {r['retries']} retries)"
                )
            # The hostile flood right after the clean 1-worker one it is compared with.
            floods = [(1, False)] if args.only & {"e2e", "hostile"} else []
            floods += [(1, True)] if "hostile" in args.only else []
            floods += [(2, False)] if "e2e" in args.only else []
            for workers, hostile in floods:
                r = end_to_end(ctx, workers, hostile=hostile)
                results["hostile" if hostile else f"e2e_w{workers}"].append(r)
                if hostile:
                    say(
                        f"  3h {1 / _hostile.EVERY:.0%} hostile, 1 worker {fmt_rate(r['rate'])}"
                        f" valid ({r['stored']:,} of {r['readings']:,} valid stored in"
                        f" {r['seconds']:.2f} s, loss {r['loss']}; {r['hostile_messages']:,}"
                        " hostile messages; dead letters"
                        f" {'as sent' if r['dead_letters_accounted'] else 'MISMATCH'}:"
                        f" {r['dead_letters_found']}; ingest CPU {r['ingest_cpu_share']:.0%} of"
                        " a core)"
                    )
                else:
                    say(
                        f"  3 end to end, {workers} worker{'s' if workers > 1 else ' '}"
                        f" {fmt_rate(r['rate'])} ({r['stored']:,} of {r['readings']:,} stored in"
                        f" {r['seconds']:.2f} s, loss {r['loss']}; ingest CPU"
                        f" {r['ingest_cpu_share']:.0%} of a core)"
                    )
                say("      CPU µs per (valid) reading: " + cpu_text(r["cpu_us_per_reading"]))
                for line in r["log_problems"][:5]:
                    say(f"      log: {line[:160]}")
            if "registry" in args.only:
                # Alternate which goes first, so neither always meets a warmer InfluxDB.
                order = REGISTRIES if rep % 2 == 0 else REGISTRIES[::-1]
                for backend in order:
                    r = end_to_end(registries[backend], 1)
                    results[f"registry_{backend}"].append(r)
                    say(
                        f"  3r registry on {backend:<10} {fmt_rate(r['rate'])} ({r['stored']:,} of"
                        f" {r['readings']:,} stored in {r['seconds']:.2f} s, loss {r['loss']};"
                        f" ingest CPU {r['ingest_cpu_share']:.0%} of a core)"
                    )
                    for line in r["log_problems"][:5]:
                        say(f"      log: {line[:160]}")
        if "peer" in args.only:
            say("\n-- 6 peer: binwatch (1 worker) and Node-RED's two flows, one after the other")
            results["peer"] = peer(ctx, args.quick)
        if "steady" in args.only:
            steady_s = max(args.soak_seconds, STEADY_MIN_S)
            say(
                f"\n-- steady {STEADY_RATE:,.0f}/s for {steady_s:.0f} s (latency probe + memory soak)"
            )
            s = steady(ctx, steady_s)
            results["steady"] = s
            say(
                f"  4 latency p50 {s['latency_p50_s'] * 1000:.0f} ms, p99 {s['latency_p99_s'] * 1000:.0f} ms"
                f" ({s['probes']} probes, {s['probes_lost']} never seen; achieved {fmt_rate(s['rate_achieved'])})"
            )
            say(
                f"  5 RSS {s['rss_first_mib']:.1f} → {s['rss_last_mib']:.1f} MiB (max {s['rss_max_mib']:.1f});"
                f" slope {s['rss_slope_after_warmup_mib_per_min']:+.2f} MiB/min after warm-up;"
                f" ingest CPU {s['ingest_cpu_share']:.0%} of a core; loss {s['loss']}"
            )
            say(
                "      latency by 30 s window (start s, probes, p50 s, p99 s, publish→ingest p50 s):"
            )
            for row in s["latency_by_window"]:
                say(f"        {row}")
            say(f"      RSS MiB every {RSS_EVERY_S:.0f} s: {[v for _, v in s['rss_mib']]}")
            say(f"      ingest buffer, most messages per RSS sample: {s['buffer_max_messages']}")
            say(f"      load average (1 min) alongside: {[round(x, 1) for x in s['loadavg_1min']]}")
            for line in s["log_problems"][:5]:
                say(f"      log: {line[:160]}")
        if args.profile:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            raw = RESULTS_DIR / f"ingest-profile-{stamp:%Y%m%d-%H%M%S}.txt"
            say(f"\n-- profile: py-spy on a 1-worker flood → {raw.relative_to(ROOT)}")
            r = end_to_end(ctx, 1, profile_to=raw)
            say(f"  (profiled run: {fmt_rate(r['rate'])}, loss {r['loss']})")
            breakdown = _profile.analyse(raw)
            for line in breakdown.lines():
                say(line)
            results["profile"] = {
                "raw": str(raw.relative_to(ROOT)),
                "rate_under_profiler": r["rate"],
                "total_samples": breakdown.total,
                "buckets": breakdown.buckets,
                "threads": breakdown.threads,
                "top_leaves": breakdown.top_leaves,
            }
        results["conditions"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        summary = summarise(results)
        results["summary"] = summary
        print_table(results, summary)
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = RESULTS_DIR / f"ingest-{stamp:%Y%m%d-%H%M%S}.json"
        out.write_text(json.dumps(results, indent=2, default=str))
        say(f"results: {out.relative_to(ROOT)}")
        ok = True
        return 0
    finally:
        if postgres is not None:
            postgres.remove()
        influx.stop()
        mqtt.stop()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept {work} (server and ingest logs) for a look")


if __name__ == "__main__":
    sys.exit(main())
