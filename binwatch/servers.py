"""Mosquitto and InfluxDB (and PostgreSQL, for the registry's tests) as child processes on
loopback, for `make demo`, the tests and the benchmarks: one implementation, so what the tests
prove is what the demo runs.

All come from Debian's packages (`mosquitto`, `influxdb`, `postgresql`). Three quirks are
handled here: Mosquitto started as root drops to its own user and then fails to save its queue in
a folder that user cannot write (so it is told `user root`), influxd needs its RPC port moved when
several run side by side, and PostgreSQL refuses to run as root at all."""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, Final

import httpx
import psycopg

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


# Ports `free_port` chooses from: above the well-known servers' (1883, 5432, 8000, 8086) and
# below the kernel's ephemeral range (`_ephemeral_from`).
CHOSEN_PORTS_FROM: Final = 20_000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_CHOICE = random.SystemRandom()  # not the `random` a test may seed alike in two processes


def free_port() -> int:
    """A loopback port free now, for a server to bind moments later. Chosen below the kernel's
    ephemeral range: a port the kernel picks (binding port 0) comes from the range it gives every
    outgoing connection its local port from, so one of the machine's connections could take it
    before the server bound it (the demo's alerter stopped so on its /metrics port in a full test
    run). At random, so that processes choosing at once seldom choose alike; the kernel's choice
    if 200 tries find nothing free."""
    below = _ephemeral_from()
    for _ in range(200):
        port = _CHOICE.randrange(CHOSEN_PORTS_FROM, below)
        if port_is_free(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _ephemeral_from() -> int:
    """The first port of the kernel's ephemeral range (Linux's default, 32768, if unreadable)."""
    try:
        first = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768
    return max(first, CHOSEN_PORTS_FROM + 1_000)


def port_is_free(port: int) -> bool:
    """Whether a server could listen on `port` now. Asked as the servers bind (Mosquitto,
    influxd and uvicorn all set SO_REUSEADDR): a port whose last server stopped moments ago
    still has its closed connections in TIME_WAIT for a minute, and is free all the same."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


# prctl(2): the signal a child gets when the thread that started it ends.
_PR_SET_PDEATHSIG: Final = 1


def _stop_with(parent: int) -> Callable[[], None]:
    """In the child, before exec: SIGTERM when `parent` ends, however it ends; and at once if
    it has ended already (between the fork and this)."""
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here, in the parent: not after the fork

    def tie() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return tie


def tied_to_this_process(*keep_open: int) -> dict[str, Any]:
    """Popen's arguments for a child that must not outlive this process (Linux's
    PR_SET_PDEATHSIG: it gets SIGTERM when this process ends, a SIGKILL too) and that holds the
    descriptors `keep_open` for as long as it lives (the demo's lock on its data folder, so no
    second demo starts there before the last of them has stopped). Started from the main
    thread only: the signal comes when the starting thread ends."""
    return {"preexec_fn": _stop_with(os.getpid()), "pass_fds": keep_open}


class _ChildServer:
    """A server process we own: started, waited for, stopped — or killed, for fault tests.
    `popen_options` (empty: the tests' servers) adds Popen arguments: `tied_to_this_process`."""

    name = "server"

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.popen_options: dict[str, Any] = {}
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / f"{self.name}.log"

    def _command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _identity(self) -> dict[str, Any]:
        """Popen's user/group arguments; our own user unless a server refuses to run as root."""
        return {}

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
                **self._identity(),
                **self.popen_options,
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


# binwatch speaks QoS 0 and 1 only (docs/device-contract.md). A QoS 2 message is held by the
# broker from its PUBLISH until the client's PUBREL, and a client that never sends one had the
# broker hold up to 65,535 of them (max_inflight_messages), each up to message_size_limit: one
# bin's 150 messages of 1 MB left Mosquitto 144 MB larger. With `max_qos 1` the broker
# disconnects a client that publishes with QoS 2 and grants QoS 1 for a QoS 2 subscription.
LISTENER_LIMITS: Final = ("max_qos 1",)


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
            # A listener's own setting, so here rather than in conf.d (included there, Mosquitto
            # 2.0.11 applies it to a default listener on 1883 instead).
            *LISTENER_LIMITS,
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


POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
# initdb and postgres refuse to run as root; this account comes with Debian's package.
POSTGRES_ACCOUNT = "postgres"


def postgres_bin_dir() -> Path:
    """The newest installed PostgreSQL's binaries (Debian keeps them off PATH, per version)."""
    found = sorted(
        (Path(d) for d in glob.glob(POSTGRES_BIN_GLOB) if (Path(d) / "postgres").exists()),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
    )
    if not found:
        raise ConfigError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): run "
            "`sudo apt-get update && sudo apt-get install -y postgresql` (or `make setup`)"
        )
    return found[-1]


class PostgresServer(_ChildServer):
    """A fresh PostgreSQL cluster on loopback, trusting the superuser `binwatch` without a
    password, with its unix socket beside the data rather than in /run: for tests and
    benchmarks only. Unless `durable`, durability is traded for speed (fsync off), which only an
    operating-system crash could make anyone notice, and the data is a throwaway; a benchmark
    that compares it with SQLite (which syncs its commits) asks for `durable`.

    Run as root, the server runs as the unprivileged `postgres` account; its cluster then lives
    in a folder of its own under the system's temporary folder, because pytest's temporary
    folders are closed to other users. `remove()` deletes that cluster."""

    name = "postgresql"
    superuser = "binwatch"

    def __init__(self, data_dir: Path, port: int, *, durable: bool = False) -> None:
        super().__init__(data_dir, port)
        self.cluster_dir: Path | None = None
        self.durable = durable

    def database_url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL of `database` on this server."""
        return f"postgresql+psycopg://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def _identity(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        try:
            account = pwd.getpwnam(POSTGRES_ACCOUNT)
        except KeyError:
            raise ConfigError(
                f"PostgreSQL refuses to run as root and there is no {POSTGRES_ACCOUNT!r} account"
                " to run it as: install Debian's postgresql package"
            ) from None
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _command(self) -> tuple[list[str], dict[str, str]]:
        bin_dir = postgres_bin_dir()
        if self.cluster_dir is None:
            self.cluster_dir = self._init_cluster(bin_dir)
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.cluster_dir),
            # Every test's API, ingest and hooks hold pools of their own.
            "max_connections": "300",
            # The pilot city's zone, not UTC: code that took the server's zone for UTC would
            # show it (timestamptz values come back in the session's zone).
            "timezone": "Asia/Shanghai",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        command = [str(bin_dir / "postgres"), "-D", str(self.cluster_dir / "data")]
        command += ["-p", str(self.port)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        return command, dict(os.environ, LC_ALL="C.UTF-8")

    def _init_cluster(self, bin_dir: Path) -> Path:
        identity = self._identity()
        if identity:
            cluster = Path(tempfile.mkdtemp(prefix="binwatch-postgresql-"))
            os.chown(cluster, identity["user"], identity["group"])
        else:
            cluster = self.data_dir / "cluster"
            cluster.mkdir(parents=True, exist_ok=True)
        command = [str(bin_dir / "initdb"), "-D", str(cluster / "data"), "-U", self.superuser]
        command += ["--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"]
        with self.log_path.open("ab") as log_file:
            done = subprocess.run(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(os.environ, LC_ALL="C.UTF-8"),
                check=False,
                **identity,
            )
        if done.returncode != 0:
            raise ConfigError(f"initdb failed; see {self.log_path}:\n{self._log_tail()}")
        return cluster

    def _ready(self) -> bool:
        try:
            psycopg.connect(
                host="127.0.0.1",
                port=self.port,
                user=self.superuser,
                dbname="postgres",
                connect_timeout=1,
            ).close()
        except psycopg.OperationalError:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL to the postmaster and its backends at once, as a machine's crash would: a
        postmaster killed alone leaves backends holding its shared memory, and no restart."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def remove(self) -> None:
        """Stop the server and delete its cluster."""
        self.stop()
        if self.cluster_dir is not None:
            shutil.rmtree(self.cluster_dir, ignore_errors=True)
            self.cluster_dir = None

    def __exit__(self, *_exc: object) -> None:
        self.remove()
