"""Node-RED as the benchmark's peer: the do-it-yourself MQTT → InfluxDB path binwatch is compared
with (issue 18). Installed from the npm registry on first use, its flows generated here, run as a
child process on loopback.

Two flows, both subscribed at QoS 1 with a persistent session (clean session false, a fixed client
id, MQTT 3.1.1), writing what ingest writes (core.telemetry: measurement, the eight tags, the same
fields, `received_ms` = Node-RED's clock) to their own InfluxDB database:
- `message`: `mqtt in` → a function node making `[fields, tags]` → `influxdb out`, one write per
  reading;
- `batch`: `mqtt in` → `join` (up to 5,000 messages or 200 ms) → a function node building the
  points array → `influxdb batch`.
The bins' tags are handed to the function nodes once, at flow start (their `initialize`), as a
registry lookup would be cached. node-red-contrib-influxdb's 1.x client writes every number as a
float (it has no schema), so the counts are float fields in Node-RED's database: same names,
another type. Its `mqtt in` acknowledges a message when it arrives, before any write.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from core.telemetry import MEASUREMENT

# The versions measured in the team's notes (FACTS.md): Node-RED 4.1, node-red-contrib-influxdb 0.7.
PACKAGES = ("node-red@~4.1.0", "node-red-contrib-influxdb@~0.7.0")
INSTALL_TIMEOUT_S = 300.0
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
BATCH_COUNT = 5_000
BATCH_TIMEOUT_S = 0.2
FLOWS = ("message", "batch")

# One reading's fields as ingest writes them (core.lineprotocol.telemetry_line), in JavaScript:
# `r` is the parsed payload, `f` gets the fields.
_FIELDS_JS = """
const f = {fill_pct: r.fill_pct};
if (r.seq !== undefined) f.seq = r.seq;
if (r.deposits !== undefined) f.deposits = r.deposits;
if (r.contaminated !== undefined) { f.contaminated = r.contaminated; f.checked_deposits = r.deposits; }
if (r.weight_kg !== undefined) f.weight_kg = r.weight_kg;
if (r.battery_pct !== undefined) f.battery_pct = r.battery_pct;
if (r.temp_c !== undefined) f.temp_c = r.temp_c;
f.overflow = r.fill_pct >= 100 ? 1 : 0;
f.over90 = r.fill_pct >= 90 ? 1 : 0;
f.received_ms = now;
"""

_MESSAGE_JS = (
    """const parts = msg.topic.split("/");
const tags = context.get("tags")[parts[parts.length - 2]];
if (!tags || typeof msg.payload !== "object") return null;
const r = msg.payload, now = Date.now();"""
    + _FIELDS_JS
    + """f.time = r.ts;
msg.payload = [f, tags];
return msg;"""
)

_BATCH_JS = (
    """const all = context.get("tags"), now = Date.now(), points = [];
for (const m of msg.payload) {
    const parts = m.topic.split("/");
    const tags = all[parts[parts.length - 2]];
    if (!tags || typeof m.payload !== "object") continue;
    const r = m.payload;"""
    + _FIELDS_JS
    + f"""    points.push({{measurement: "{MEASUREMENT}", tags: tags, fields: f, timestamp: r.ts}});
}}
msg.payload = points;
return points.length ? msg : null;"""
)


def installed(cache: Path) -> dict[str, str] | None:
    """The versions installed in `cache`, or None when the install is missing or incomplete."""
    found = {}
    for spec in PACKAGES:
        name = spec.rsplit("@", 1)[0]
        manifest = cache / "node_modules" / name / "package.json"
        if not manifest.is_file():
            return None
        found[name] = json.loads(manifest.read_text())["version"]
    return found


def require_node() -> str:
    """npm's path; checked before the bench starts anything, so a machine without Node.js fails
    at once rather than after the other figures."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise SystemExit(
            "figure 6 (peer) needs node and npm (Debian: apt-get install -y nodejs npm);"
            " or leave it out: --only ceilings,e2e,hostile,steady"
        )
    return npm


def install(cache: Path, work: Path) -> dict[str, str]:
    """Node-RED and its InfluxDB nodes in `cache` (kept under var/bench/ for later runs): when
    missing, `npm install` into the bench's temporary folder, then moved into place whole, so an
    interrupted install never leaves a half cache behind."""
    if (versions := installed(cache)) is not None:
        return versions
    npm = require_node()
    target = Path(tempfile.mkdtemp(prefix="node-red-", dir=work))
    command = [npm, "install", "--prefix", str(target), "--no-audit", "--no-fund", *PACKAGES]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, cwd=target
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"npm install took over {INSTALL_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        raise RuntimeError(f"npm install failed ({done.returncode}): {done.stderr[-2000:]}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(cache, ignore_errors=True)
    shutil.move(str(target), str(cache))
    versions = installed(cache)
    if versions is None:
        raise RuntimeError(f"npm install left no node-red in {cache}")
    return versions


def flow(
    kind: str,
    *,
    mqtt_port: int,
    topic: str,
    client_id: str,
    influx_port: int,
    database: str,
    tags: dict[str, dict[str, str]],
) -> list[dict[str, Any]]:
    """The flow file of `kind` (one of FLOWS)."""
    tab = "bench-tab"
    broker = {
        "id": "bench-broker",
        "type": "mqtt-broker",
        "name": "bench broker",
        "broker": "127.0.0.1",
        "port": str(mqtt_port),
        "clientid": client_id,
        "autoConnect": True,
        "usetls": False,
        "protocolVersion": "4",
        "keepalive": "60",
        "cleansession": False,
        "autoUnsubscribe": False,
        "birthTopic": "",
        "closeTopic": "",
        "willTopic": "",
    }
    influx = {
        "id": "bench-influx",
        "type": "influxdb",
        "hostname": "127.0.0.1",
        "port": str(influx_port),
        "protocol": "http",
        "database": database,
        "name": "bench influxdb",
        "usetls": False,
        "tls": "",
        "influxdbVersion": "1.x",
        "timeout": "10",
    }
    initialize = f"context.set('tags', {json.dumps(tags, sort_keys=True)});"

    def function(node_id: str, code: str, wires: list[str]) -> dict[str, Any]:
        return {
            "id": node_id,
            "type": "function",
            "z": tab,
            "name": "points",
            "func": code,
            "outputs": 1,
            "timeout": 0,
            "noerr": 0,
            "initialize": initialize,
            "finalize": "",
            "libs": [],
            "wires": [wires],
        }

    first = "bench-points" if kind == "message" else "bench-join"
    nodes: list[dict[str, Any]] = [
        {"id": tab, "type": "tab", "label": f"binwatch bench: {kind}", "disabled": False},
        broker,
        influx,
        {
            "id": "bench-in",
            "type": "mqtt in",
            "z": tab,
            "name": "readings",
            "topic": topic,
            "qos": "1",
            "datatype": "json",
            "broker": "bench-broker",
            "nl": False,
            "rap": True,
            "rh": 0,
            "inputs": 0,
            "wires": [[first]],
        },
    ]
    if kind == "message":
        nodes += [
            function("bench-points", _MESSAGE_JS, ["bench-out"]),
            {
                "id": "bench-out",
                "type": "influxdb out",
                "z": tab,
                "influxdb": "bench-influx",
                "name": "telemetry",
                "measurement": MEASUREMENT,
                "precision": "ms",
                "retentionPolicy": "",
                "wires": [],
            },
        ]
    elif kind == "batch":
        nodes += [
            {
                "id": "bench-join",
                "type": "join",
                "z": tab,
                "name": "batch",
                "mode": "custom",
                "build": "array",
                "property": "",
                "propertyType": "full",
                "key": "topic",
                "joiner": "\\n",
                "joinerType": "str",
                "accumulate": False,
                "timeout": str(BATCH_TIMEOUT_S),
                "count": str(BATCH_COUNT),
                "reduceRight": False,
                "useparts": False,
                "wires": [["bench-points"]],
            },
            function("bench-points", _BATCH_JS, ["bench-out"]),
            {
                "id": "bench-out",
                "type": "influxdb batch",
                "z": tab,
                "influxdb": "bench-influx",
                "name": "telemetry",
                "precision": "ms",
                "retentionPolicy": "",
                "wires": [],
            },
        ]
    else:
        raise ValueError(f"unknown flow {kind!r}; pick from {FLOWS}")
    # Node-RED takes a node without a position for a configuration node.
    for column, node in enumerate(n for n in nodes if "z" in n):
        node.update(x=160 * (column + 1), y=80)
    return nodes


# Writes go through Node's default HTTP agent, which opens a connection for every write in flight
# (node-influx sets no agent). Measured uncapped on this machine, the per-message flow flooded
# with 30,000 readings left 22,700 loopback sockets in TIME_WAIT (every other process on the
# machine short of ports for a minute) and InfluxDB answering 500s; capped, writes queue in
# Node-RED instead. The batched flow never has more than a few writes in flight.
MAX_SOCKETS = 16

_SETTINGS_JS = """require("http").globalAgent.maxSockets = %(max_sockets)d;
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: %(port)d,
    httpAdminRoot: false,
    httpNodeRoot: false,
    flowFile: "flows.json",
    credentialSecret: false,
    telemetry: {enabled: false},
    diagnostics: {enabled: false},
    externalModules: {autoInstall: false, palette: {allowInstall: false}},
    logging: {console: {level: "info", metrics: false, audit: false}},
};
"""


class NodeRed:
    """One Node-RED process running one generated flow, in its own user folder."""

    def __init__(self, cache: Path, user_dir: Path, nodes: list[dict[str, Any]], port: int) -> None:
        self.cache, self.user_dir = cache, user_dir
        user_dir.mkdir(parents=True, exist_ok=True)
        (user_dir / "flows.json").write_text(json.dumps(nodes, indent=1))
        (user_dir / "settings.js").write_text(
            _SETTINGS_JS % {"port": port, "max_sockets": MAX_SOCKETS}
        )
        self.log_path = user_dir / "node-red.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "Node-RED not started"
        return self.process.pid

    def start(self) -> None:
        """Started, its flow running and connected to the broker (its log says so)."""
        red = self.cache / "node_modules" / "node-red" / "red.js"
        command = [shutil.which("node") or "node", str(red), "--userDir", str(self.user_dir)]
        command += ["--settings", str(self.user_dir / "settings.js")]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                command,
                cwd=self.user_dir,
                env={**os.environ, "NODE_RED_ENABLE_PROJECTS": "false"},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C reaches the bench, which stops it in order
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            text = self.log_path.read_bytes()[offset:].decode(errors="replace")
            if "Started flows" in text and "Connected to broker" in text:
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Node-RED did not start; see {self.log_path}:\n{text[-2000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def problems(self) -> list[str]:
        """The first errors of its log (failed writes show here; its only warnings are about the
        projects feature and credentials, neither of which the bench uses)."""
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if "[error]" in line][:20]
