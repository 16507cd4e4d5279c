"""`binwatch demo` (what `make demo` runs): the whole system on loopback in one terminal.

Broker and database run as child processes with their data under ./var (a second demo reuses
it), then the default pilot fleet is loaded and ingest, the API, the collector, the alerter and
the simulator (with the operators' crews) run as child processes of their own, exactly as they would be
deployed: the broker with authentication on (each service its own account and ACL), the API with
an admin key made for the run. Ctrl-C stops everything.

`binwatch demo --inject KIND --bin BIN_ID`, from another terminal, makes a bin of the running demo
misbehave (fire, tilt, silence, battery): it logs in to the demo's broker with the simulator's
account, whose broker URL the demo keeps under its data folder (owner-only) while it runs."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from prometheus_client.parser import text_string_to_metric_families
from rich.cells import cell_len
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from binwatch.commands.simulate import INTERVAL_MAX_S, SPEED_MAX
from binwatch.demo_logins import demo_logins
from binwatch.output import console, error, live_status, say
from binwatch.servers import (
    InfluxServer,
    MosquittoServer,
    free_port,
    port_is_free,
    tied_to_this_process,
)
from compliance.rollups import catch_up
from core.errors import BinwatchError
from core.influx import InfluxClient
from core.settings import Settings
from core.sql import database_engine, make_engine
from devices.models import Bin, Operator, Vehicle
from security import mqtt_auth
from security.keys import ApiRole, create_key, list_keys, revoke_key
from simulator.faults import KINDS
from simulator.publisher import UNBOUNDED_BACKFILL, inject_fault

# How often the status line is redrawn.
STATUS_EVERY_S = 2.0
# readings/s is averaged over this long: the bins report once a (simulated) minute.
RATE_WINDOW_S = 60.0
# The demo plans the day this long after the simulator's history is replayed (real seconds).
PLAN_AFTER_S = 15.0
PLAN_TIMEOUT_S = 60.0
# The longest the demo waits for its API to answer before it gives up (a loaded machine took
# a minute).
API_START_TIMEOUT_S = 300.0
# The name of each vehicle's crew key the demo makes (the last run's are revoked).
CREW_KEY_NAME = "demo crew of {vehicle}"
# The fleet file's shifts (07:00–16:00, the city's time) would leave the dispatcher's and the
# crew's screens empty for most of a day's hours; the demo's vehicles work round the clock, so a
# demo shows routes whenever it runs. A `binwatch fleet import` outside the demo keeps the file's.
DEMO_SHIFT = ("00:00", "23:59")
# A fresh demo's bins start anywhere from empty to full, as a city's bins are found at any point
# of their cycle, so some are over their threshold from the first reading and the first plan has
# stops whatever the hour. `binwatch simulate`'s default (70 %) leaves every bin under its
# threshold, and a first run at night then had nothing to plan: two hours of the night's trickle
# fill no bin past it. A restart resumes each bin's stored fill.
DEMO_FIRST_FILL_MAX_PCT = 100.0
# Under the data folder, next to the broker's password file: see `keep_injector_url`.
INJECTOR_URL_FILE = "mosquitto-auth/simulator-url"
# Under the data folder: held locked by the demo that uses the folder (`_hold_the_data_dir`).
DEMO_LOCK_FILE = "demo.lock"
# How long a demo waits for the servers of one that was killed to stop (they get SIGTERM when
# it ends; ingest takes up to BINWATCH_INGEST_STOP_TIMEOUT_S, 8 s, for its last batch).
ORPHANS_STOP_S = 60.0


def demo(
    data_dir: Annotated[
        Path, typer.Option(help="where broker, database and registry keep their data")
    ] = Path("var"),
    speed: Annotated[
        float,
        typer.Option(
            min=0, max=SPEED_MAX, help="simulated seconds per real second; 0: as fast as it can"
        ),
    ] = 60.0,
    interval: Annotated[
        float,
        typer.Option(
            min=0.001, max=INTERVAL_MAX_S, help="each bin's reporting interval, simulated seconds"
        ),
    ] = 60.0,
    inject: Annotated[
        str | None,
        typer.Option(
            help=f"instead of starting a demo: inject a fault ({', '.join(KINDS)}) into the "
            "running one, at the bin given by --bin"
        ),
    ] = None,
    bin_id: Annotated[
        str | None, typer.Option("--bin", help="the bin --inject makes misbehave")
    ] = None,
) -> None:
    """Run broker, database, ingest, API, collector, alerter and simulator until Ctrl-C."""
    data_dir = data_dir.resolve()
    if inject is not None or bin_id is not None:
        _inject(data_dir, inject, bin_id)
        return
    _stop_as_on_ctrl_c(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    try:
        with ExitStack() as stack:
            tie = _hold_the_data_dir(stack, data_dir)
            env = dict(os.environ)
            env.setdefault("BINWATCH_DATABASE_URL", f"sqlite:///{data_dir / 'binwatch.db'}")
            _start_influx(stack, data_dir, env, tie)
            _catch_up_rollups(env)
            fleet_import = [sys.executable, "-m", "binwatch", "fleet", "import"]
            _run(stack, fleet_import, env, tie, wait=True)
            _round_the_clock(env["BINWATCH_DATABASE_URL"])
            broker_urls = _start_broker(stack, data_dir, env, tie)
            keep_injector_url(
                stack, data_dir, broker_urls.get("simulator", env["BINWATCH_MQTT_URL"])
            )
            grafana_sites = [sys.executable, "-m", "binwatch", "grafana", "sites"]
            _run(stack, grafana_sites, env, tie, wait=True)
            metrics_port = free_port()
            api_port = _port_or_free(8000, "API", guess="another web server?")
            # A fresh admin key each run, for the crews and for whoever watches the demo.
            token = env.get("BINWATCH_ADMIN_TOKEN") or secrets.token_urlsafe(32)
            env.update(
                BINWATCH_INGEST_METRICS_PORT=str(metrics_port),
                BINWATCH_API_PORT=str(api_port),
                BINWATCH_API_URL=f"http://127.0.0.1:{api_port}",
                BINWATCH_ADMIN_TOKEN=token,
                BINWATCH_API_TOKEN=token,
                # The demo's receivers, if any, are on this machine (off by default: SSRF).
                BINWATCH_WEBHOOK_ALLOW_PRIVATE="true",
                BINWATCH_COLLECTOR_METRICS_PORT=str(free_port()),
                # The collector plans each day from 06:00 (at once, on a later start); the
                # demo plans again once the simulator has caught up (`_plan_when_caught_up`).
                BINWATCH_ROUTE_PLAN_HOUR=env.get("BINWATCH_ROUTE_PLAN_HOUR", "6"),
                BINWATCH_ALERTER_METRICS_PORT=str(free_port()),
            )
            logs = data_dir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            # Each vehicle's crew key, for the simulator only: its crews tap their planned
            # stops as a crew's phone does.
            crew_tokens = json.dumps(_crew_keys(env["BINWATCH_DATABASE_URL"]))
            simulate = ["simulate", "--crews", "--resume", "--listen-for-faults"]
            simulate += ["--first-fill-max", str(DEMO_FIRST_FILL_MAX_PCT)]
            simulate += ["--speed", str(speed)]
            simulate += ["--interval", str(interval)]
            children = {
                name: _run(
                    stack,
                    [sys.executable, "-m", "binwatch", *args],
                    {
                        **env,
                        "BINWATCH_MQTT_URL": broker_urls.get(name, env["BINWATCH_MQTT_URL"]),
                        **(
                            {"BINWATCH_API_CREW_TOKENS": crew_tokens} if name == "simulator" else {}
                        ),
                    },
                    tie,
                    log=logs / f"{name}.log",
                )
                for name, args in {
                    "ingest": ["ingest"],
                    "api": ["api"],
                    "collector": ["collector"],
                    "alerter": ["alerter"],
                    "simulator": simulate,
                }.items()
            }
            _wait_for_the_api(env["BINWATCH_API_URL"], token, children["api"], logs)
            say(f"API: http://127.0.0.1:{api_port}/docs   logs: {logs}/   Ctrl-C stops")
            say(f"admin key for this run: Authorization: Bearer {token}", soft_wrap=True)
            say(f"console: http://127.0.0.1:{api_port}/console   logins for this run:")
            _plan_when_caught_up(stack, env, speed)
            logins = demo_logins(env["BINWATCH_DATABASE_URL"])
            width = max(cell_len(login.scope) for login in logins) + 2
            for login in logins:
                say(
                    f"  {login.title:<19} {login.scope}{' ' * (width - cell_len(login.scope))}"
                    f"{login.username} / {login.password}",
                    soft_wrap=True,
                    markup=False,
                )
            _status_until_interrupted(metrics_port, children, logs)
    except KeyboardInterrupt:
        pass  # Ctrl-C, SIGTERM or SIGHUP at any point: what had started is stopped above
    except BinwatchError as exc:
        error(exc)
        raise typer.Exit(1) from exc
    say("stopped; data kept in", data_dir)


def _hold_the_data_dir(stack: ExitStack, data_dir: Path) -> dict[str, Any]:
    """One demo per data folder: a second `make demo` in the same checkout started a second
    InfluxDB on the first's files, gave the services new broker passwords and the logins new
    passwords (the first demo's printed ones stopped working) and revoked its crews' keys.
    The lock is the kernel's, and every process the demo starts holds it too (returned: the
    Popen arguments that tie a child to the demo, `tied_to_this_process`): a demo that was
    SIGKILLed took the lock with it while its broker, database and services went on, and the
    next demo started a second InfluxDB on the same files, its services failing on the old
    ones. Now they get SIGTERM when the demo ends, however it ends, and the next demo waits
    for the last of them (`ORPHANS_STOP_S`), or names those that do not stop."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / DEMO_LOCK_FILE
    lock = path.open("a+")
    stack.callback(lock.close)
    deadline = time.monotonic() + ORPHANS_STOP_S
    waiting = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
        if holder.isdigit() and _alive(int(holder)):
            raise BinwatchError(
                f"another demo (process {holder}) is running with its data in {data_dir}: stop "
                "it first, or give this one a --data-dir of its own"
            ) from None
        if time.monotonic() > deadline:
            left = _holders(path)
            raise BinwatchError(
                f"the demo of process {holder} ended without stopping what it started, and "
                f"{', '.join(f'{name} (process {pid})' for pid, name in left) or 'a process'} "
                f"still use {data_dir}: stop them (kill {' '.join(str(p) for p, _ in left)}) "
                "and start the demo again"
            )
        if not waiting:
            say(
                f"the demo of process {holder} has ended; waiting up to {ORPHANS_STOP_S:.0f} s "
                "for its servers to stop…"
            )
            waiting = True
        time.sleep(0.5)
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return tied_to_this_process(lock.fileno())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holders(path: Path) -> list[tuple[int, str]]:
    """The other processes that have `path` open, with their command (Linux's /proc)."""
    found = []
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            pid = int(fd.parts[2])
            if pid != os.getpid() and Path(os.readlink(fd)) == path:
                name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                found.append((pid, b" ".join(name[:4]).decode(errors="replace").strip()))
        except (OSError, ValueError):
            continue
    return sorted(set(found))


def _stop_as_on_ctrl_c(*signals: signal.Signals) -> None:
    """A `kill`, a service manager or a closed terminal stops the demo as Ctrl-C does: its
    broker, database and services stop with it. Python's default for these signals ends the
    process at once, and the broker and database, children of their own, went on holding their
    ports (the next demo then took others, blaming 'a system service'). SIGINT too: Python
    keeps it ignored when it was ignored at start, as for a command a script starts in the
    background (`make demo &`), and a SIGINT to the group then stopped the services alone: the
    demo said "ingest, api, collector, alerter, simulator exited; see the logs", exit 1."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for number in signals:
        signal.signal(number, interrupt)


def _round_the_clock(database_url: str) -> None:
    """Every vehicle on the demo's shift (`DEMO_SHIFT`), said once on the terminal."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            session.execute(
                update(Vehicle).values(shift_start=DEMO_SHIFT[0], shift_end=DEMO_SHIFT[1])
            )
            session.commit()
    finally:
        engine.dispose()
    say(f"demo: the vehicles work {DEMO_SHIFT[0]}–{DEMO_SHIFT[1]}, so routes show at any hour")


def _crew_keys(database_url: str) -> dict[str, str]:
    """A fresh crew key for each vehicle of the fleet (vehicle id → key), the last run's
    revoked: a demo's keys, like its passwords, are worth nothing once it stops."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            now = datetime.now(UTC)
            vehicles = list(session.scalars(select(Vehicle.id).order_by(Vehicle.id)))
            for key in list_keys(session):
                if key.name.startswith(CREW_KEY_NAME.format(vehicle="")) and key.revoked_at is None:
                    revoke_key(session, key.id, now=now)
            return {
                vehicle: create_key(
                    session,
                    name=CREW_KEY_NAME.format(vehicle=vehicle),
                    role=ApiRole.crew,
                    now=now,
                    vehicle_id=vehicle,
                ).token
                for vehicle in vehicles
            }
    finally:
        engine.dispose()


def _plan_when_caught_up(stack: ExitStack, env: dict[str, str], speed: float) -> None:
    """Once the simulator has replayed its history (the requests it raised are waiting),
    plan every operator's rest of the day through the API, as a dispatcher's re-plan: the
    simulated crews then drive those routes, and the dispatcher's and the crew's screens show
    them (the demo's vehicles work round the clock: `DEMO_SHIFT`)."""
    delay = PLAN_AFTER_S + (UNBOUNDED_BACKFILL.total_seconds() / speed if speed > 0 else 0)
    stop = threading.Event()
    stack.callback(stop.set)
    url, headers = env["BINWATCH_API_URL"], {"Authorization": f"Bearer {env['BINWATCH_API_TOKEN']}"}

    def plan() -> None:
        if stop.wait(delay):
            return
        engine = make_engine(env["BINWATCH_DATABASE_URL"])
        try:
            with Session(engine) as session:
                operators = list(session.scalars(select(Operator.id).order_by(Operator.id)))
        finally:
            engine.dispose()
        for operator_id in operators:
            try:
                answer = httpx.post(
                    f"{url}/api/v1/operators/{operator_id}/routes",
                    json={},
                    headers=headers,
                    timeout=PLAN_TIMEOUT_S,
                )
            except httpx.HTTPError as exc:
                say(f"could not plan {operator_id}'s routes: {exc}", markup=False)
                continue
            if answer.is_error:
                say(f"could not plan {operator_id}'s routes: {answer.text}", markup=False)
                continue
            say(plan_summary(operator_id, answer.json()), markup=False)

    threading.Thread(target=plan, name="demo-plan", daemon=True).start()


def plan_summary(operator_id: str, planned: dict[str, Any]) -> str:
    """What the demo says of an operator's plan (the API's answer to a re-plan). A plan with
    nothing in it said "0 stops on 0 vehicle(s), 0 left out", which reads as a fault (the
    fleet has vehicles); a first run's two hours of history seldom fill a bin past its
    threshold, so that is the common case."""
    stops = sum(vehicle["jobs"] for vehicle in planned["vehicles"])
    head = f"planned {operator_id}'s day (version {planned['version']})"
    if not stops and not planned["unassigned"]:
        return (
            f"{head}: nothing to collect yet (no request waiting, no bin forecast over its "
            "threshold); the routes fill as requests come"
        )
    return (
        f"{head}: {stops} stops on {len(planned['vehicles'])} vehicle(s), "
        f"{len(planned['unassigned'])} left out"
    )


def _start_influx(
    stack: ExitStack, data_dir: Path, env: dict[str, str], tie: dict[str, Any]
) -> None:
    if "BINWATCH_INFLUX_URL" in os.environ:
        say(f"using InfluxDB at {os.environ['BINWATCH_INFLUX_URL']}")
        return
    database = InfluxServer(data_dir / "influxdb", _port_or_free(8086, "InfluxDB"))
    database.popen_options = tie
    database.start()
    stack.callback(database.stop)
    env["BINWATCH_INFLUX_URL"] = database.url


def _catch_up_rollups(env: dict[str, str]) -> None:
    """The last run's late readings into the rollups (compliance.rollups.catch_up), before the
    simulator resumes."""
    settings = Settings(influx_url=env["BINWATCH_INFLUX_URL"])
    influx = InfluxClient(settings)
    try:
        done = catch_up(influx, timezone=settings.timezone)
    finally:
        influx.close()
    if done is not None:
        say(f"rolled up the last run's final hours again ({done.hourly} bin-hours)")


def _start_broker(
    stack: ExitStack, data_dir: Path, env: dict[str, str], tie: dict[str, Any]
) -> dict[str, str]:
    """Mosquitto with authentication on: fresh passwords for the service accounts each run,
    exported with the ACL from the registry. Returns each service's broker URL, credentials
    included; empty when the environment names a broker of its own (its accounts are its own)."""
    if "BINWATCH_MQTT_URL" in os.environ:
        say(f"using the broker at {os.environ['BINWATCH_MQTT_URL']}")
        return {}
    settings = Settings(database_url=env["BINWATCH_DATABASE_URL"])
    engine = database_engine(settings)
    try:
        with Session(engine) as session:
            now = datetime.now(UTC)
            issued = [mqtt_auth.issue(session, name, now=now) for name in mqtt_auth.SERVICES]
            mqtt_auth.export(session, data_dir / "mosquitto-auth", prefix=settings.topic_prefix)
    finally:
        engine.dispose()
    port = _port_or_free(1883, "MQTT")
    broker = MosquittoServer(data_dir / "mosquitto", port, auth_dir=data_dir / "mosquitto-auth")
    broker.popen_options = tie
    broker.start()
    stack.callback(broker.stop)
    env["BINWATCH_MQTT_URL"] = broker.url
    urls = {
        account.username: f"mqtt://{account.username}:{quote(account.password)}@127.0.0.1:{port}"
        for account in issued
    }
    return urls


def keep_injector_url(stack: ExitStack, data_dir: Path, url: str) -> None:
    """Where `--inject` finds the running demo's broker and the simulator's account: a file
    readable by its owner only, removed when the demo stops."""
    path = data_dir / INJECTOR_URL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(url)
    stack.callback(path.unlink, missing_ok=True)


def _inject(data_dir: Path, kind: str | None, bin_id: str | None) -> None:
    """`--inject KIND --bin BIN_ID`: the fault goes to the running demo's simulator."""
    if kind is None or bin_id is None:
        raise typer.BadParameter("give both --inject KIND and --bin BIN_ID", param_hint="--inject")
    if kind not in KINDS:
        raise typer.BadParameter(
            f"{kind!r} is not one of {', '.join(KINDS)}", param_hint="--inject"
        )
    path = data_dir / INJECTOR_URL_FILE
    if not path.exists():
        say(f"[red]no demo is running with its data in {data_dir}: start `binwatch demo`[/red]")
        raise typer.Exit(1)
    database_url = os.environ.get("BINWATCH_DATABASE_URL", f"sqlite:///{data_dir / 'binwatch.db'}")
    settings = Settings(mqtt_url=path.read_text().strip(), database_url=database_url)
    engine = database_engine(settings)
    try:
        with Session(engine) as session:
            known = session.get(Bin, bin_id) is not None
    finally:
        engine.dispose()
    if not known:
        raise typer.BadParameter(f"no bin {bin_id!r} in the demo's registry", param_hint="--bin")
    try:
        inject_fault(settings, kind, bin_id, now=datetime.now(UTC))
    except BinwatchError as exc:
        error(exc)
        raise typer.Exit(1) from exc
    say(f"{kind} injected at {bin_id}: its alert shows in GET /api/v1/alerts")


def _port_or_free(port: int, what: str, *, guess: str = "") -> int:
    if port_is_free(port):
        return port
    other = free_port()
    guess = guess or f"a system {what} service?"
    say(f"port {port} is taken ({guess}): the demo's {what} uses {other}")
    return other


def _wait_for_the_api(url: str, token: str, api: subprocess.Popen[bytes], logs: Path) -> None:
    """Until the demo's API answers with this run's key: its address and the logins are
    printed for use at once (on a busy machine the API took a minute to listen, and a `curl`
    of the address printed got 'connection refused'). Said while it waits, so the wait is not
    a silent one. Only the run's own key tells its API from another server that took the port
    between the demo's look at it and its API's bind (another demo starting at the same
    moment): that one's /health answers too."""
    say("waiting for the API to answer…")
    deadline = time.monotonic() + API_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise BinwatchError(f"api exited: {_last_line(logs / 'api.log')} (its log: {logs}/)")
        if _answers_with_our_key(url, token):
            return
        time.sleep(0.5)
    raise BinwatchError(
        f"the API did not answer within {API_START_TIMEOUT_S:.0f} s; see its log, "
        f"{logs / 'api.log'}"
    )


def _answers_with_our_key(url: str, token: str) -> bool:
    try:
        answer = httpx.get(
            f"{url}/api/v1/sites",
            params={"limit": 1},
            headers={"Authorization": f"Bearer {token}"},
            timeout=2,
        )
        return answer.status_code == 200 and isinstance(answer.json().get("items"), list)
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def _last_line(path: Path) -> str:
    """Why a service exited, most often: its log's last error line, else its last line
    (uvicorn logs its shutdown after the error that caused it)."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    errors = [line for line in lines if "ERROR" in line or "Error" in line]
    return (errors or lines or ["nothing in its log"])[-1].strip()


def _run(
    stack: ExitStack,
    command: list[str],
    env: dict[str, str],
    tie: dict[str, Any],
    *,
    wait: bool = False,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    output = log.open("ab") if log else None
    process = subprocess.Popen(
        command, env=env, stdout=output, stderr=subprocess.STDOUT if log else None, **tie
    )
    if wait:
        if process.wait() != 0:
            raise BinwatchError(f"{' '.join(command[2:])} failed (exit {process.returncode})")
        return process

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        if output:
            output.close()

    stack.callback(stop)
    return process


def _status_until_interrupted(
    metrics_port: int, children: dict[str, subprocess.Popen[bytes]], logs: Path
) -> None:
    rate = Rate()
    idle = threading.Event()
    status = console(stderr=True)
    try:
        with live_status(status) as live:
            while not idle.wait(STATUS_EVERY_S):
                dead = [name for name, p in children.items() if p.poll() is not None]
                if dead:
                    raise BinwatchError(f"{', '.join(dead)} exited; see the logs in {logs}/")
                counts = _ingest_counts(metrics_port)
                if counts is None:
                    continue  # ingest busy or restarting: the last line stands (not a rate of -N/s)
                stored, rejected = counts
                per_s = rate.add(time.monotonic(), stored)
                live.update(
                    f"readings/s {per_s:8.0f}   stored {stored:10.0f}   rejected {rejected:6.0f}",
                    refresh=True,
                )
    finally:
        if not status.is_terminal:  # a log: Rich ends the last line only on a terminal
            status.line()


class Rate:
    """Readings stored per second over the last `window_s` seconds. Over the last 2 s (one
    redraw) it read 0 most of the time: the demo's bins report once a simulated minute, all in
    the same second, so the line showed `readings/s 0` for 29 redraws in 30, and ~200 for one,
    while hundreds were stored a minute."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, now: float, stored: float) -> float:
        """Take ingest's count at `now` (monotonic seconds); the rate since the oldest count
        of the window (0 for the first)."""
        if self._samples and stored < self._samples[-1][1]:
            self._samples.clear()  # ingest restarted: its count began again
        self._samples.append((now, stored))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        then, before = self._samples[0]
        return (stored - before) / (now - then) if now > then else 0.0


def _ingest_counts(port: int) -> tuple[float, float] | None:
    """Ingest's stored and rejected readings, None when its /metrics does not answer."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    stored = rejected = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "binwatch_ingest_stored_points_total":
                stored = sample.value
            elif sample.name == "binwatch_ingest_rejected_total":
                rejected += sample.value
    return stored, rejected
