"""Mistakes a new user makes with `binwatch`, run as a user runs it (a subprocess): a wrong
BINWATCH_* value, a registry that does not answer, a file that cannot be written, an option
out of range, a port another process has. Each ends with what is wrong and what to change,
exit status 1 (2 for a wrong option), never a traceback and never a hang."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from binwatch.servers import free_port
from core.settings import Settings
from devices.registry import BinTags

# What Python's and Rich's tracebacks print; neither may reach a user.
TRACEBACK_MARKS = ("Traceback", "╭─", "│ ❱")


def _binwatch(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, stdin: int | None = None
) -> subprocess.CompletedProcess[str]:
    """`binwatch ARGS`; one still running after `timeout` is stopped as Ctrl-C stops it (a
    SIGKILL would leave the servers a demo started running) and fails the test."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BINWATCH_")}
    with subprocess.Popen(
        [sys.executable, "-m", "binwatch", *args],
        env={**clean, **(env or {})},
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=60)
            pytest.fail(f"binwatch {' '.join(args)} still ran after {timeout} s: {stderr}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    for mark in TRACEBACK_MARKS:
        assert mark not in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("BINWATCH_API_PORT", "abc", "valid integer"),
        ("BINWATCH_MQTT_URL", "127.0.0.1:1883", "mqtt://"),
        ("BINWATCH_MQTT_URL", "mqtt://svc:pw-hidden@127.0.0.1:18x3", "Port"),
        ("BINWATCH_INFLUX_URL", "localhost:8086", "http://"),
        ("BINWATCH_API_URL", "127.0.0.1:8000", "http://"),
        ("BINWATCH_ROUTE_OSRM_URL", "osrm:5000", "http://"),
        ("BINWATCH_DATABASE_URL", "postgres://bw:pw-hidden@db.example/registry", "PostgreSQL"),
        ("BINWATCH_DATABASE_URL", "var/binwatch.db", "sqlite:///"),
        ("BINWATCH_DATABASE_URL", "mysql://bw@db.example/registry", "SQLite or PostgreSQL"),
        ("BINWATCH_TIMEZONE", "Asia/Shanghia", "IANA time zone"),
    ],
)
def test_a_wrong_setting_is_named_with_what_it_accepts(
    tmp_path: Path, variable: str, value: str, said: str
) -> None:
    env = {"BINWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}", variable: value}
    done = _binwatch("keys", "list", env=env)
    assert done.returncode == 1, done.stderr
    _no_traceback(done)
    assert f"{variable}=" in done.stderr
    assert said in done.stderr
    assert "pw-hidden" not in done.stderr  # a URL's password never shows
    assert not (tmp_path / "registry.db").exists()  # refused before anything was touched


def test_every_wrong_setting_is_listed_at_once(tmp_path: Path) -> None:
    env = {
        "BINWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "BINWATCH_INFLUX_URL": "influxdb:8086",
        "BINWATCH_ROUTE_PHOTO_STORE": "s3",  # without its bucket: the group's own check
    }
    done = _binwatch("users", "list", env=env)
    assert done.returncode == 1
    _no_traceback(done)
    assert "BINWATCH_INFLUX_URL='influxdb:8086'" in done.stderr
    assert "BINWATCH_ROUTE_PHOTO_S3_BUCKET" in done.stderr


def test_a_registry_that_does_not_answer_is_said_in_one_line() -> None:
    url = f"postgresql+psycopg://bw:pw-hidden@127.0.0.1:{free_port()}/registry"
    done = _binwatch("users", "list", env={"BINWATCH_DATABASE_URL": url})
    assert done.returncode == 1
    _no_traceback(done)
    assert "the registry database does not answer" in done.stderr
    assert "BINWATCH_DATABASE_URL" in done.stderr
    assert "pw-hidden" not in done.stderr


def test_a_file_that_cannot_be_written_names_the_file(registry_url: str, tmp_path: Path) -> None:
    """`fleet export` into a folder that does not exist, `mqtt-auth export` into a file's
    place: the path and the system's reason, as for a file that cannot be read."""
    env = {"BINWATCH_DATABASE_URL": registry_url}
    assert _binwatch("fleet", "import", env=env).returncode == 0
    missing = tmp_path / "no-such-folder" / "fleet.yaml"
    done = _binwatch("fleet", "export", str(missing), env=env)
    assert done.returncode == 1
    _no_traceback(done)
    assert done.stderr.strip() == f"{missing}: No such file or directory"
    (tmp_path / "a-file").write_text("")
    done = _binwatch("mqtt-auth", "export", str(tmp_path / "a-file" / "broker"), env=env)
    assert done.returncode == 1
    _no_traceback(done)
    assert str(tmp_path / "a-file") in done.stderr


@pytest.mark.parametrize("days", ["inf", "nan", "1e12", "-1", "3651"])
def test_a_key_lasts_a_number_of_days_that_makes_a_date(tmp_path: Path, days: str) -> None:
    env = {"BINWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}"}
    done = _binwatch("keys", "create", "--role", "admin", "--name", "ops", "--days", days, env=env)
    assert done.returncode == 2, done.stderr
    _no_traceback(done)
    assert "--days" in done.stderr


def test_a_key_of_zero_days_lasts_until_revoked(tmp_path: Path) -> None:
    env = {"BINWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}"}
    assert _binwatch("db", "migrate", env=env).returncode == 0
    done = _binwatch("keys", "create", "--role", "admin", "--name", "ops", "--days", "0", env=env)
    assert done.returncode == 0, done.stderr
    listed = _binwatch("keys", "list", env=env)
    assert "ops" in listed.stdout
    assert "until revoked" in _binwatch("keys", "create", "--help", env=env).stdout


@pytest.mark.parametrize(
    ("option", "value"),
    [("--speed", "-1"), ("--interval", "0"), ("--speed", "inf"), ("--interval", "inf")],
)
def test_the_demo_refuses_a_speed_or_interval_the_simulator_would(
    tmp_path: Path, option: str, value: str
) -> None:
    """Before, the demo started broker, database and every service, and only then reported
    'simulator exited; see its log'."""
    done = _binwatch("demo", "--data-dir", str(tmp_path / "var"), option, value, timeout=30)
    assert done.returncode == 2, done.stderr
    assert option in done.stderr
    assert not (tmp_path / "var").exists()


def test_the_help_shows_every_default_as_a_user_would_write_it() -> None:
    done = _binwatch("--help")
    assert done.returncode == 0
    assert "PydanticUndefined" not in done.stdout
    assert "BINWATCH_API_CREW_TOKENS" in done.stdout


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another process's socket listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        ("ingest", "BINWATCH_INGEST_METRICS_PORT"),
        ("collector", "BINWATCH_COLLECTOR_METRICS_PORT"),
        ("alerter", "BINWATCH_ALERTER_METRICS_PORT"),
    ],
)
def test_a_metrics_port_taken_names_its_setting_and_the_service_exits(
    settings: Settings,
    pilot_bins: dict[str, BinTags],
    taken_port: int,
    command: str,
    variable: str,
) -> None:
    """Ingest printed the socket's traceback and then hung (its threads were up); the
    collector and alerter printed it too."""
    env = {**settings.as_env(), variable: str(taken_port)}
    done = _binwatch(command, env=env, timeout=60)
    assert done.returncode == 1, done.stderr
    _no_traceback(done)
    assert f"127.0.0.1:{taken_port}" in done.stderr
    assert variable in done.stderr


@pytest.mark.parametrize(
    "options",
    [
        ["--url", "grafana.example.org"],
        ["--url", "http://127.0.0.1:3000", "--influx-url", "influxdb:8086"],
    ],
)
def test_grafana_push_refuses_an_address_without_its_scheme(
    tmp_path: Path, options: list[str]
) -> None:
    """Before: "Grafana unreachable: Invalid URL '://None/grafana.example.orgapi/folders'"."""
    env = {"BINWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}"}
    done = _binwatch("grafana", "push", "--token", "t", *options, env=env)
    assert done.returncode == 2, done.stderr
    _no_traceback(done)
    assert "http:// or https://" in done.stderr
    assert options[-2] in done.stderr


@pytest.mark.parametrize("command", ["list", "replay"])
def test_a_misspelt_dead_letter_reason_lists_the_reasons(tmp_path: Path, command: str) -> None:
    """Before: an empty table, or "replayed 0 dead letters", as if there were none."""
    env = {"BINWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}"}
    done = _binwatch("deadletters", command, "--reason", "unknwon_bin", env=env)
    assert done.returncode == 2, done.stderr
    assert "'unknwon_bin' is not a reason" in done.stderr
    assert "unknown_bin" in done.stderr.split("the reasons:")[1]


@pytest.mark.parametrize("command", [["keys", "list"], ["deadletters", "counts"], ["api"]])
def test_a_registry_file_that_does_not_exist_is_named_not_made(
    tmp_path: Path, command: list[str]
) -> None:
    """A typo in a SQLite BINWATCH_DATABASE_URL (or a relative path run from another folder)
    made a new, empty registry: `keys list` showed an empty table, as if the city had no keys,
    and the API served an empty city. Now only the commands that make the registry make it."""
    typo = tmp_path / "binwach.db"
    env = {"BINWATCH_DATABASE_URL": f"sqlite:///{typo}"}
    done = _binwatch(*command, env=env, timeout=30)
    assert done.returncode == 1, done.stderr
    _no_traceback(done)
    assert done.stderr.strip().splitlines() == [
        f"no registry at {typo} (BINWATCH_DATABASE_URL): check the path, or create the "
        "registry there with `binwatch db migrate` or `binwatch fleet import`"
    ]
    assert not typo.exists()


def test_the_registry_is_made_by_db_migrate_and_fleet_import(tmp_path: Path) -> None:
    for made_by in (["db", "migrate"], ["fleet", "import"]):
        path = tmp_path / f"{made_by[0]}.db"
        env = {"BINWATCH_DATABASE_URL": f"sqlite:///{path}"}
        assert _binwatch(*made_by, env=env).returncode == 0
        listed = _binwatch("keys", "list", env=env)
        assert listed.returncode == 0, listed.stderr
        assert listed.stderr == ""


def test_a_registry_without_tables_says_to_migrate_it(registry_url: str) -> None:
    """`deadletters` reads the registry without migrating it: on one nobody migrated (or a
    BINWATCH_DATABASE_URL naming another database) it showed SQLite's or PostgreSQL's
    traceback."""
    done = _binwatch("deadletters", "counts", env={"BINWATCH_DATABASE_URL": registry_url})
    assert done.returncode == 1, done.stderr
    _no_traceback(done)
    assert "the registry has no tables yet" in done.stderr
    assert "binwatch db migrate" in done.stderr


@pytest.mark.parametrize("option", ["--interval", "--speed", "--duration", "--rate"])
def test_the_simulator_refuses_an_endless_number(tmp_path: Path, option: str) -> None:
    """click takes `inf` for a float, and only a bound refuses it."""
    env = {"BINWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}"}
    done = _binwatch("simulate", option, "inf", env=env, timeout=30)
    assert done.returncode == 2, done.stderr
    assert option in done.stderr


def test_an_unreachable_grafana_is_said_as_the_system_says_it() -> None:
    """Before: `error: Grafana unreachable: HTTPConnectionPool(host='127.0.0.1', port=…): Max
    retries exceeded with url: /api/folders (Caused by NewConnectionError('<urllib3.connection.
    HTTPConnection object at 0x7f…>: Failed to establish a new connection: [Errno 111]
    Connection refused'))`."""
    url = f"http://127.0.0.1:{free_port()}"
    done = _binwatch("grafana", "push", "--url", url, "--token", "t")
    assert done.returncode == 1, done.stderr
    _no_traceback(done)
    assert done.stderr.splitlines() == [
        f"error: Grafana unreachable: [Errno 111] Connection refused ({url})"
    ]


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["users", "create", "x.y", "--role", "admin"], "no password on standard input: "),
        (["mqtt-auth", "set", "ingest"], "no password on standard input: pipe one line: "),
        (["fleet", "webhook-secret", "--operator", "op-x"], "no secret on standard input: "),
    ],
)
def test_nothing_on_standard_input_is_said_as_nothing_not_as_too_short(
    tmp_path: Path, command: list[str], said: str
) -> None:
    """`… < /dev/null` (or a pipe from a variable never set) was refused as a value too
    short: "a password needs at least 10 characters", "… at least 16 characters"."""
    env = {"BINWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}"}
    assert _binwatch("db", "migrate", env=env).returncode == 0
    done = _binwatch(*command, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stderr
    _no_traceback(done)
    (line,) = done.stderr.splitlines()
    assert line.startswith(said), line
    assert "at least" not in line


def test_the_api_runs_a_bounded_number_of_processes(tmp_path: Path) -> None:
    """`binwatch api --workers` had no upper bound: 100000 would start that many server
    processes, each with its own registry pool and memory; like ingest's, it is bounded."""
    env = {"BINWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}"}
    done = _binwatch("api", "--workers", "100000", env=env, timeout=30)
    assert done.returncode == 2, done.stderr
    _no_traceback(done)
    assert "--workers" in done.stderr and "32" in done.stderr
