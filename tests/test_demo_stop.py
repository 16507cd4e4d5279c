"""`binwatch demo` as a user runs it, stopped as a service manager or `kill` stops it (SIGTERM):
its broker, database and services stop with it and give their ports back. Before, the demo
ended at once and its Mosquitto and InfluxDB went on holding 1883 and 8086, so the next demo
took other ports and blamed "a system service". Uses no registry of the tests': the demo makes
its own, in its data folder."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from binwatch import demo as demo_module
from binwatch.demo import Rate, _hold_the_data_dir, _ingest_counts, _wait_for_the_api, plan_summary
from binwatch.servers import free_port, port_is_free
from core.errors import BinwatchError
from tests.helpers import wait_for

# The demo's start: its servers, the fleet, the services; what it prints once all run.
STARTED = "logins for this run:"
RUNNING_S = 5.0


@contextmanager
def port_8000_taken() -> Iterator[None]:
    """Port 8000, the API's, held by another process (here, unless another has it already)."""
    with socket.socket() as holder:
        with suppress(OSError):
            holder.bind(("127.0.0.1", 8000))
            holder.listen()
        yield


def test_sigterm_stops_the_demo_and_its_servers(tmp_path: Path) -> None:
    """Also: with port 8000 taken the demo says which port its API took, as it does for the
    broker's and the database's (it took another in silence), and the API answers at the
    address printed as soon as it is printed (it was printed before the API listened)."""
    log = tmp_path / "demo.log"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("BINWATCH_")  # the demo's own servers and registry, not any test's
    }
    held = ExitStack()
    held.enter_context(port_8000_taken())  # until the demo has chosen its ports
    with log.open("wb") as output:
        demo = subprocess.Popen(
            [sys.executable, "-m", "binwatch", "demo", "--data-dir", str(tmp_path / "var")],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_for(
            lambda: STARTED in log.read_text(errors="replace") or demo.poll() is not None,
            timeout=180,
            what="the demo to start",
        )
        started = log.read_text(errors="replace")
        assert demo.poll() is None, started
        ports = [int(p) for p in re.findall(r"ready on 127\.0\.0\.1:(\d+)", started)]
        assert len(ports) == 2, started  # InfluxDB's and Mosquitto's
        taken = re.search(r"port 8000 is taken \(.*\): the demo's API uses (\d+)", started)
        assert taken, started
        printed = re.search(r"API: http://127\.0\.0\.1:(\d+)/docs", started)
        assert printed and printed.group(1) == taken.group(1), started
        assert httpx.get(f"http://127.0.0.1:{taken.group(1)}/health", timeout=10).status_code in (
            200,
            503,
        )
        time.sleep(RUNNING_S)  # the services connected and at work, their connections open
        held.close()
        demo.send_signal(signal.SIGTERM)
        try:
            code = demo.wait(60)
        except subprocess.TimeoutExpired:
            code = None  # the log below says how far it got (one full run failed here, unseen)
        assert code == 0, log.read_text(errors="replace")[-3000:]
    finally:
        held.close()
        if demo.poll() is None:  # the test failed before its SIGTERM: stop it as a user would
            demo.send_signal(signal.SIGTERM)
            try:
                demo.wait(60)
            except subprocess.TimeoutExpired:
                demo.kill()
    wait_for(lambda: all(port_is_free(p) for p in ports), timeout=15, what="the ports back")
    stopped = log.read_text(errors="replace")
    # On a line of its own: in a log the status line ran into it ("rejected      0stopped; …").
    assert re.search(r"^stopped; data kept in", stopped, re.MULTILINE), stopped


def test_the_status_line_skips_a_count_ingest_did_not_give() -> None:
    """Ingest's /metrics not answering (busy, restarting) read as 0 readings stored, and the
    status line showed a rate of minus everything stored so far."""
    assert _ingest_counts(free_port()) is None


def test_a_second_demo_in_the_same_data_folder_is_refused(tmp_path: Path) -> None:
    """Before, it started a second InfluxDB on the first's files, new broker and login
    passwords (the first demo's printed logins stopped working) and revoked its crews' keys."""
    log = tmp_path / "first.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINWATCH_")}
    command = [sys.executable, "-m", "binwatch", "demo", "--data-dir", str(tmp_path / "var")]
    with log.open("wb") as output:
        first = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(
            lambda: "influxdb ready" in log.read_text(errors="replace") or first.poll() is not None,
            timeout=180,
            what="the first demo's database",
        )
        assert first.poll() is None, log.read_text(errors="replace")
        second = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=60, check=False
        )
        assert second.returncode == 1, second.stderr
        assert f"another demo (process {first.pid}) is running" in second.stderr
        assert str(tmp_path / "var") in second.stderr
        assert first.poll() is None  # the first goes on
    finally:
        first.send_signal(signal.SIGTERM)  # never SIGKILL: its servers would outlive it
        first.wait(60)


class _OtherApi(BaseHTTPRequestHandler):
    """Another binwatch API on the port: /health answers, this run's key is unknown to it."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}' if self.path == "/health" else b'{"detail": "no"}')

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_demo_waits_for_its_own_api_not_a_server_that_took_its_port(tmp_path: Path) -> None:
    """Two demos starting at once both found 8000 free; the other's API bound it first, the
    demo's /health check was answered by that one, and the demo printed the other's address
    with a key it refused (401). Now the demo asks with its own key, and says why its API
    exited (uvicorn's error line)."""
    other = ThreadingHTTPServer(("127.0.0.1", 0), _OtherApi)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "api.log").write_text(
        "ERROR:    [Errno 98] error while attempting to bind on address ('127.0.0.1', 8000)\n"
        "INFO:     Application shutdown complete.\n"
    )
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2); exit(1)"])
    try:
        with pytest.raises(BinwatchError, match=r"api exited: ERROR: .*Errno 98"):
            _wait_for_the_api(
                f"http://127.0.0.1:{other.server_address[1]}", "this-run's-key", ours, logs
            )
    finally:
        ours.wait(10)
        other.shutdown()
        other.server_close()


def test_an_empty_plan_is_said_as_nothing_to_collect() -> None:
    """The demo said "0 stops on 0 vehicle(s), 0 left out" of every plan of its first runs,
    which reads as a fault: the fleet has six vehicles."""
    empty = {"version": 2, "vehicles": [], "unassigned": []}
    said = plan_summary("op-lvyuan", empty)
    assert "0 vehicle(s)" not in said
    assert said.startswith("planned op-lvyuan's day (version 2): nothing to collect yet")
    some = {"version": 3, "vehicles": [{"jobs": 4}, {"jobs": 2}], "unassigned": [{"id": 9}]}
    assert plan_summary("op-lvyuan", some).endswith(": 6 stops on 2 vehicle(s), 1 left out")


def test_a_first_demo_plans_routes_for_the_screens_whatever_the_hour(tmp_path: Path) -> None:
    """A first `make demo` in Shanghai's night planned nothing: its bins started 0-70 % full,
    two hours of the night's trickle filled none past its threshold, so each operator's plan of
    the day was empty and the dispatcher's and the crew's screens showed no route. The demo's
    fresh bins now start anywhere from empty to full (`DEMO_FIRST_FILL_MAX_PCT`): some are due
    from the first reading, and the first plan has stops at any hour (requests the simulated
    crews do not reach before the plan, and the bins along at their stops). Run at 10x the
    demo's speed, so its two hours replay in 12 s."""
    log = tmp_path / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINWATCH_")}
    command = [sys.executable, "-m", "binwatch", "demo", "--data-dir", str(tmp_path / "var")]
    with log.open("wb") as output:
        demo = subprocess.Popen(
            [*command, "--speed", "600"], stdout=output, stderr=subprocess.STDOUT, env=env
        )
    try:
        wait_for(
            lambda: (
                len(re.findall(r"^planned op-", log.read_text(errors="replace"), re.M)) == 2
                or demo.poll() is not None
            ),
            timeout=300,
            what="the demo to plan both operators' days",
        )
        said = log.read_text(errors="replace")
        assert demo.poll() is None, said
        planned = re.findall(
            r"^planned (op-\S+)'s day \(version \d+\): (?:(\d+) stops)?", said, re.M
        )
        stops = {operator: int(n or 0) for operator, n in planned}
        assert sum(stops.values()) > 0, said
        api = re.search(r"console: (http://127\.0\.0\.1:\d+)/console", said)
        login = re.search(r"^\s+dispatcher\s.*?(demo\.dispatcher) / (\S+)$", said, re.M)
        assert api and login, said
        with httpx.Client(base_url=api.group(1), timeout=60, follow_redirects=True) as client:
            form = client.get("/console/login").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', form)
            assert csrf
            client.post(
                "/console/login",
                data={
                    "username": login.group(1),
                    "password": login.group(2),
                    "csrf": csrf.group(1),
                },
            )
            page = client.get("/console/dispatch").text  # the compound's operator's, op-lvyuan
        # its routes, or (when the crews reached every request of its first) why there are none
        assert ('class="bins stops"' in page) == (stops["op-lvyuan"] > 0), page
    finally:
        demo.send_signal(signal.SIGTERM)  # never SIGKILL: its servers would outlive it
        demo.wait(60)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (Linux's /proc)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def test_a_killed_demo_takes_its_servers_with_it_and_the_next_one_starts(tmp_path: Path) -> None:
    """A SIGKILL (`kill -9`, the OOM killer) ended the demo alone: its InfluxDB, Mosquitto and
    five services went on, and the next `make demo` in the folder, the lock free, started a
    second InfluxDB on the same files and ended with "collector, alerter, simulator exited;
    see the logs", saying nothing of the old ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINWATCH_")}
    command = [sys.executable, "-m", "binwatch", "demo", "--data-dir", str(tmp_path / "var")]
    demos: list[subprocess.Popen[bytes]] = []

    def start(log: Path, **options: Any) -> subprocess.Popen[bytes]:
        with log.open("wb") as output:
            demos.append(
                subprocess.Popen(
                    command, stdout=output, stderr=subprocess.STDOUT, env=env, **options
                )
            )
        wait_for(
            lambda: STARTED in log.read_text(errors="replace") or demos[-1].poll() is not None,
            timeout=240,
            what="the demo to start",
        )
        assert demos[-1].poll() is None, log.read_text(errors="replace")
        return demos[-1]

    children: list[int] = []
    try:
        first = start(tmp_path / "first.log")
        children = _children(first.pid)
        assert len(children) >= 7, children  # InfluxDB, Mosquitto and five services
        first.kill()
        first.wait(10)
        wait_for(
            lambda: not any(_running(pid) for pid in children),
            timeout=60,
            what="the killed demo's servers and services to stop",
        )
        # Started as a script starts it in the background (`make demo &`: SIGINT ignored), and
        # stopped as the script then stops it, with a SIGINT to the group.
        second = start(tmp_path / "second.log", preexec_fn=_ignore_sigint, start_new_session=True)
        time.sleep(RUNNING_S)
        assert second.poll() is None, (tmp_path / "second.log").read_text(errors="replace")
        os.killpg(second.pid, signal.SIGINT)
        assert second.wait(60) == 0, (tmp_path / "second.log").read_text(errors="replace")
        said = (tmp_path / "second.log").read_text(errors="replace")
        assert "exited; see the logs" not in said
        assert re.search(r"^stopped; data kept in", said, re.MULTILINE), said
    finally:
        for demo in demos:
            if demo.poll() is None:
                demo.send_signal(signal.SIGTERM)
                demo.wait(60)
        for pid in children:  # the test failed with them running: stop them, as a user would
            if _running(pid):
                os.kill(pid, signal.SIGTERM)


def test_a_demo_waits_for_a_killed_ones_servers_then_names_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder's lock held by a process the killed demo left (the demo's number in the
    lock file, gone): the next demo waits for it, then names it and says how to stop it."""
    lock = tmp_path / "demo.lock"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock.write_text(f"{gone.pid}\n")
    hold = "import fcntl, sys, time; f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); "
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            hold + "print(flush=True); time.sleep(float(sys.argv[2]))",
            str(lock),
            "60",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline()  # it has the lock
        monkeypatch.setattr(demo_module, "ORPHANS_STOP_S", 2.0)
        with ExitStack() as stack, pytest.raises(BinwatchError) as refused:
            _hold_the_data_dir(stack, tmp_path)
        said = str(refused.value)
        assert f"the demo of process {gone.pid} ended without stopping what it started" in said
        assert f"(process {holder.pid}) still use {tmp_path}" in said
        assert f"kill {holder.pid}" in said
    finally:
        holder.kill()
        holder.wait()
    with ExitStack() as stack:  # its holder gone, the lock is the next demo's
        _hold_the_data_dir(stack, tmp_path)
        assert lock.read_text() == f"{os.getpid()}\n"


def test_readings_per_second_are_averaged_over_the_bins_reporting_minute() -> None:
    """The demo's 433 bins report once a simulated minute, all in one second: over a 2 s
    redraw the line read `readings/s 0` 29 times in 30 (seen in a terminal, 17:40Z)."""
    rate, stored, shown = Rate(window_s=60), 0.0, []
    for second in range(0, 300, 2):
        if second % 60 == 30:
            stored += 433
        shown.append(rate.add(float(second), stored))
    assert all(6 < per_s < 8.5 for per_s in shown[45:]), shown  # 433 a minute, from 90 s on
    assert rate.add(302.0, 0.0) == 0.0  # ingest restarted: its count began again, never < 0


def test_what_another_thread_says_comes_above_the_status_line_not_after_it() -> None:
    """In a terminal the demo's plan, said by its planning thread while the status line was
    drawn, ran on from the end of that line: `rejected      0planned op-jiejing's day …`."""
    script = (
        "import threading\n"
        "from binwatch.output import console, live_status, say\n"
        "with live_status(console(stderr=True)) as live:\n"
        "    live.update('readings/s 7', refresh=True)\n"
        '    said = threading.Thread(target=say, args=("planned op-x\'s day",))\n'
        "    said.start()\n"
        "    said.join()\n"
        "    live.update('readings/s 8', refresh=True)\n"
    )
    terminal, its_end = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            stdin=its_end,
            stdout=its_end,
            stderr=its_end,
            env=env,
            cwd=Path(__file__).parents[1],
            timeout=60,
            check=False,
        )
        os.close(its_end)
        shown = b""
        while select.select([terminal], [], [], 1)[0]:
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(terminal)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode(errors="replace"))
    assert done.returncode == 0, text
    assert "planned op-x's day" in text
    assert "readings/s 7planned" not in text, repr(text)
