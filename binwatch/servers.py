"""Mosquitto and InfluxDB as child processes on loopback, for `make demo`, the tests and the
benchmarks: one implementation, so what the tests prove is what the demo runs.

Both come from Debian's packages (`mosquitto`, `influxdb`). Two quirks are handled here: Mosquitto
started as root drops to its own user and then fails to save its queue in a folder that user cannot
write (so it is told `user root`), and influxd needs its RPC port moved when several run side by
side."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from importlib import resources
from pathlib import Path

import httpx

from core.errors import ConfigError

log = logging.getLogger(__name__)


def broker_conf_dir() -> Path:
    """binwatch's broker settings, shipped as package data (docker-compose mounts the same
    folder), so the demo runs from an installed wheel as from a checkout."""
    folder = resources.files("binwatch") / "mosquitto" / "conf.d"
    if not isinstance(folder, Path) or not folder.is_dir():
        raise ConfigError(f"binwatch's Mosquitto configuration is missing from {folder}")
    return folder


# Fresh influxd needs a few seconds to open its stores on a loaded 2-core machine.
START_TIMEOUT_S = 30.0
# A broker or database that does not stop after SIGINT within this long is killed.
STOP_TIMEOUT_S = 15.0
_POLL_S = 0.05


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        raise ConfigError(
            f"{name} is not installed: run `sudo apt-get update && sudo apt-get install -y {package}`"
            " (or `make setup`)"
        )
    return path


class _ChildServer:
    """A server process we own: started, waited for, stopped — or killed, for fault tests."""

    name = "server"

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / f"{self.name}.log"

    def _command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        command, env = self._command()
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(
                    f"{self.name} exited at start; see {self.log_path}:\n{self._log_tail()}"
                )
            if self._ready():
                log.info("%s ready on 127.0.0.1:%s", self.name, self.port)
                return
            time.sleep(_POLL_S)
        self.stop()
        raise ConfigError(
            f"{self.name} not ready after {START_TIMEOUT_S:.0f} s; see {self.log_path}"
        )

    def stop(self) -> None:
        """SIGINT, wait, then kill: the polite stop that lets Mosquitto save its queue."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])

    def __enter__(self) -> _ChildServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class MosquittoServer(_ChildServer):
    """Anonymous by default (the shared test broker); given `auth_dir` holding the `passwords`
    and `acl` files of `binwatch mqtt-auth export`, it allows only those accounts, each client
    with its user name as client id."""

    name = "mosquitto"

    def __init__(self, data_dir: Path, port: int, *, auth_dir: Path | None = None) -> None:
        super().__init__(data_dir, port)
        self.auth_dir = auth_dir

    def reload(self) -> None:
        """SIGHUP: Mosquitto 2 rereads its password and ACL files."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGHUP)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _command(self) -> tuple[list[str], dict[str, str]]:
        binary = require_binary("mosquitto", "mosquitto")
        conf = self.data_dir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            *self._auth_lines(),
            f"persistence_location {self.data_dir}/",
            f"log_dest file {self.data_dir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            f"include_dir {broker_conf_dir()}",
        ]
        if os.geteuid() == 0:
            # Run as root Mosquitto drops to the `mosquitto` user, which cannot write our data dir:
            # persistence then fails silently and queued messages vanish on restart (FACTS.md).
            lines.insert(0, "user root")
        conf.write_text("\n".join(lines) + "\n")
        return [binary, "-c", str(conf)], dict(os.environ)

    def _auth_lines(self) -> list[str]:
        if self.auth_dir is None:
            return ["allow_anonymous true"]
        return [
            "allow_anonymous false",
            f"password_file {self.auth_dir / 'passwords'}",
            f"acl_file {self.auth_dir / 'acl'}",
            # A client id belongs to one account: the broker replaces every client's id with
            # its user name, so no account can take another's session (checked on 2.0.11: an
            # account connecting with ingest's id gets its own name as id instead). Only with
            # accounts: it refuses clients without a user name (tests' anonymous broker).
            "use_username_as_clientid true",
        ]

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False


class InfluxServer(_ChildServer):
    name = "influxdb"

    def __init__(self, data_dir: Path, port: int, rpc_port: int | None = None) -> None:
        super().__init__(data_dir, port)
        self.rpc_port = rpc_port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> tuple[list[str], dict[str, str]]:
        binary = require_binary("influxd", "influxdb")
        env = dict(os.environ)
        env.update(
            INFLUXDB_META_DIR=str(self.data_dir / "meta"),
            INFLUXDB_DATA_DIR=str(self.data_dir / "data"),
            INFLUXDB_DATA_WAL_DIR=str(self.data_dir / "wal"),
            INFLUXDB_HTTP_BIND_ADDRESS=f"127.0.0.1:{self.port}",
            INFLUXDB_BIND_ADDRESS=f"127.0.0.1:{self.rpc_port}",
            INFLUXDB_HTTP_LOG_ENABLED="false",
            INFLUXDB_REPORTING_DISABLED="true",
            INFLUXDB_DATA_QUERY_LOG_ENABLED="false",
            INFLUXDB_HTTP_MAX_BODY_SIZE="0",
        )
        return [binary, "-config", "/dev/null"], env

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ping", timeout=0.5).status_code == 204
        except httpx.HTTPError:
            return False
