"""`binwatch demo` as a user runs it, stopped as a service manager or `kill` stops it (SIGTERM):
its broker, database and services stop with it and give their ports back. Before, the demo
ended at once and its Mosquitto and InfluxDB went on holding 1883 and 8086, so the next demo
took other ports and blamed "a system service". Uses no registry of the tests': the demo makes
its own, in its data folder."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from binwatch.servers import port_is_free
from tests.helpers import wait_for

# The demo's start: its servers, the fleet, the services; what it prints once all run.
STARTED = "logins for this run:"
RUNNING_S = 5.0


def test_sigterm_stops_the_demo_and_its_servers(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("BINWATCH_")  # the demo's own servers and registry, not any test's
    }
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
        time.sleep(RUNNING_S)  # the services connected and at work, their connections open
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
    wait_for(lambda: all(port_is_free(p) for p in ports), timeout=15, what="the ports back")
    assert "stopped; data kept in" in log.read_text(errors="replace")
