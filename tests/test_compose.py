"""docker-compose.yml and the Grafana provisioning files, checked without Docker.

No Docker engine runs on these machines, so `docker compose config` cannot vouch for the file:
the Compose Specification's JSON schema stands in for its syntax, and the tests below for what
the schema cannot see (Settings names, health gates, loopback-only ports, mounted paths)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from sqlalchemy.engine import make_url

from binwatch.servers import LISTENER_LIMITS
from core.settings import Settings, env_names

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
# The Compose Specification's schema, kept in the repository (source and licence: its README).
SCHEMA_FILE = REPO / "tests/schemas/compose-spec.json"
DATASOURCE_FILE = REPO / "dashboards/provisioning/datasources/binwatch.yaml"
DASHBOARD_PROVIDER_FILE = REPO / "dashboards/provisioning/dashboards/binwatch.yaml"
MOSQUITTO_CONF = REPO / "deploy/mosquitto/mosquitto.conf"

ENV_PREFIX = "BINWATCH_"
SERVICE_NAMES = ("INGEST", "COLLECTOR", "ALERTER")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    # safe_load resolves the `<<: *anchor` merges, as Compose itself does.
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{COMPOSE_FILE} is not a YAML mapping"
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, Any]:
    """A service's environment as a mapping, whichever of Compose's two forms it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host source, container target) of each bind mount; named volumes are left out."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        source, _, rest = volume.partition(":")
        if source.startswith((".", "/", "~")):
            mounts.append((source, rest.split(":")[0]))
    return mounts


def test_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    if not SCHEMA_FILE.is_file():
        pytest.fail(
            f"Compose Specification schema not found at {SCHEMA_FILE}: docker-compose.yml cannot"
            " be validated without it (no Docker engine here to do it instead)"
        )
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors
    )


def test_no_obsolete_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the Compose Specification ignores `version:`; drop it"


def test_every_service_of_the_stack_is_there(compose: dict[str, Any]) -> None:
    expected = {
        "mosquitto",
        "influxdb",
        "postgres",
        "grafana",
        "migrate",
        "ingest",
        "api",
        "simulator",
    }
    assert expected <= services(compose).keys()


def test_binwatch_variables_are_settings_fields(compose: dict[str, Any]) -> None:
    # Settings ignores unknown variables, so a misspelt one would silently leave a default.
    unknown = [
        f"{name}: {key}"
        for name, service in services(compose).items()
        for key in environment(service)
        if key.startswith(ENV_PREFIX) and key.removeprefix(ENV_PREFIX).lower() not in env_names()
    ]
    assert not unknown, f"not fields of core.settings.Settings: {unknown}"


def test_influxdb_is_pinned_to_1x(compose: dict[str, Any]) -> None:
    # `influxdb:latest` is InfluxDB 3 Core now; binwatch's setup (users, continuous queries)
    # is written for 1.x.
    image = services(compose)["influxdb"]["image"]
    assert re.fullmatch(r"influxdb:1\.\d+(\.\d+)?(-[\w.]+)?", image), image


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    exposed = []
    for name, service in services(compose).items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                ok = port.get("host_ip") == "127.0.0.1"
            else:
                ok = str(port).startswith("127.0.0.1:")
            if not ok:
                exposed.append(f"{name}: {port}")
    assert not exposed, f"published beyond 127.0.0.1: {exposed}"


def test_dependencies_exist_and_health_gates_have_healthchecks(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    problems = []
    for name, service in all_services.items():
        depends_on = service.get("depends_on", {})
        if isinstance(depends_on, list):  # the short form means service_started
            depends_on = {target: {} for target in depends_on}
        for target, spec in depends_on.items():
            if target not in all_services:
                problems.append(f"{name} depends on unknown service {target}")
            elif spec.get("condition") == "service_healthy":
                check = all_services[target].get("healthcheck")
                if not check or check.get("disable"):
                    problems.append(f"{name} waits for {target} healthy; it has no healthcheck")
    assert not problems, problems


def test_mounted_repository_paths_exist(compose: dict[str, Any]) -> None:
    missing = [
        f"{name}: {source}"
        for name, service in services(compose).items()
        for source, _target in bind_mounts(service)
        if not (REPO / source).exists()
    ]
    assert not missing, f"bind mounts of paths missing from the repository: {missing}"


def test_build_context_has_a_dockerfile(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        build = service.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context, dockerfile = build.get("context", "."), build.get("dockerfile", "Dockerfile")
        assert (REPO / context / dockerfile).is_file(), f"{name}: no {dockerfile} in {context}"


def test_mosquitto_includes_the_mounted_shared_config(compose: dict[str, Any]) -> None:
    # The container must read the same conf.d/binwatch.conf as the tests and `make demo`.
    match = re.search(r"^include_dir\s+(\S+)", MOSQUITTO_CONF.read_text(encoding="utf-8"), re.M)
    assert match, f"{MOSQUITTO_CONF} has no include_dir"
    include_dir = match.group(1).rstrip("/")
    sources = [
        Path(source)
        for source, target in bind_mounts(services(compose)["mosquitto"])
        if target.rstrip("/") == include_dir
    ]
    assert sources == [Path("binwatch/mosquitto/conf.d")], f"{include_dir} mounts {sources}"


def test_mosquittos_listener_has_the_limits_of_the_tests_broker() -> None:
    # A listener's own settings (max_qos) cannot come from conf.d: compose's listener must carry
    # what binwatch/servers.py gives the tests' and the demo's (docs/security.md, QoS 0 and 1).
    text = MOSQUITTO_CONF.read_text(encoding="utf-8")
    after_listener = text[text.index("\nlistener ") :]
    for line in LISTENER_LIMITS:
        assert f"\n{line}\n" in after_listener, f"{MOSQUITTO_CONF} lacks {line!r}"


def test_an_up_without_the_simulators_password_leaves_no_simulator_account(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """`mqtt-accounts`' own script, run with the real CLI on a registry of its own, as two `up`s
    would: one of the demo profile, then one without it. The simulator may publish for every
    bin; its account, set by the first, stayed in the registry and was exported by every later
    `up` with the demo's password."""
    script = services(compose)["mqtt-accounts"]["command"][0].replace("$$", "$")
    script = script.replace("/mqtt-auth", str(tmp_path / "auth"))
    env = {
        "PATH": os.environ["PATH"],
        "BINWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        **{f"MQTT_{name}_PASSWORD": f"{name.lower()}-password-long" for name in SERVICE_NAMES},
    }
    # After the `migrate` job, as compose orders them (a registry file nobody made is refused).
    migrated = subprocess.run(
        [sys.executable, "-m", "binwatch", "db", "migrate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    shell = f'binwatch() {{ "{sys.executable}" -m binwatch "$@"; }}\n{script}'
    for simulator, accounts in (("demo-password-long", {"simulator"}), ("", set())):
        done = subprocess.run(
            ["sh", "-ec", shell],
            cwd=REPO,
            env=env | {"MQTT_SIMULATOR_PASSWORD": simulator},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        exported = (tmp_path / "auth" / "passwords").read_text().splitlines()
        names = {line.split(":", 1)[0] for line in exported}
        assert {"ingest", "collector", "alerter"} <= names
        assert names & {"simulator", "simulator-crews", "simulator-inject"} == (
            accounts | {f"{a}-crews" for a in accounts} | {f"{a}-inject" for a in accounts}
        )


def test_datasource_provisioning() -> None:
    data = yaml.safe_load(DATASOURCE_FILE.read_text(encoding="utf-8"))
    [source] = data["datasources"]
    assert source["uid"] == "binwatch-influxdb"
    assert source["type"] == "influxdb"
    assert source["jsonData"]["version"] == "InfluxQL"


def test_datasource_variables_are_set_for_grafana(compose: dict[str, Any]) -> None:
    # Grafana expands $VAR / ${VAR} from its environment; an unset one becomes "" silently.
    lines = DATASOURCE_FILE.read_text(encoding="utf-8").splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    used = set(re.findall(r"\$\{?([A-Za-z_]\w*)\}?", text))
    assert used, "the datasource is expected to take its settings from the environment"
    missing = used - environment(services(compose)["grafana"]).keys()
    assert not missing, f"the grafana service does not set {sorted(missing)}"


def test_dashboard_provider_reads_the_mounted_folder(compose: dict[str, Any]) -> None:
    data = yaml.safe_load(DASHBOARD_PROVIDER_FILE.read_text(encoding="utf-8"))
    [provider] = data["providers"]
    assert provider["allowUiUpdates"] is False
    targets = {target for _source, target in bind_mounts(services(compose)["grafana"])}
    assert provider["options"]["path"] in targets


def test_broker_admits_accounts_only_each_under_its_own_client_id(
    compose: dict[str, Any],
) -> None:
    # issue 12: any account could take another's session (ingest's) by using its client id.
    options = dict(
        line.split(None, 1)
        for line in MOSQUITTO_CONF.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert options["allow_anonymous"] == "false"
    assert options["use_username_as_clientid"] == "true"
    users = {
        name: Settings(mqtt_url=environment(service)["BINWATCH_MQTT_URL"]).mqtt_endpoint().username
        for name, service in services(compose).items()
        if "BINWATCH_MQTT_URL" in environment(service)
    }
    # Each service that talks MQTT logs in as itself, so none takes another's connection.
    assert users == {
        "ingest": "ingest",
        "collector": "collector",
        "alerter": "alerter",
        "simulator": "simulator",
    }


def _binwatch_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in services(compose).items()
        if service.get("image") == "binwatch:local"
    }


def test_the_registry_is_postgresql_pinned_healthchecked_and_on_a_volume(
    compose: dict[str, Any],
) -> None:
    postgres = services(compose)["postgres"]
    assert re.fullmatch(r"postgres:\d+(\.\d+)?(-[\w.]+)?", postgres["image"]), postgres["image"]
    check = postgres.get("healthcheck", {})
    assert "pg_isready" in check.get("test", []) and not check.get("disable"), check
    volumes = [str(v).split(":") for v in postgres.get("volumes", [])]
    assert ["postgres-data", "/var/lib/postgresql/data"] in volumes, volumes
    assert "postgres-data" in compose["volumes"]
    env = environment(postgres)
    for name, service in _binwatch_services(compose).items():
        url = make_url(environment(service)["BINWATCH_DATABASE_URL"])
        assert (url.drivername, url.host, url.database) == (
            "postgresql+psycopg",
            "postgres",
            env["POSTGRES_DB"],
        ), name
        assert url.username == env["POSTGRES_USER"], name
        assert url.password == env["POSTGRES_PASSWORD"], name  # the same ${POSTGRES_PASSWORD}


def test_a_one_shot_migrates_the_registry_before_anything_else_starts(
    compose: dict[str, Any],
) -> None:
    migrate = services(compose)["migrate"]
    assert migrate["command"] == ["db", "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    waiting = {
        name: service.get("depends_on", {}).get("migrate", {}).get("condition")
        for name, service in _binwatch_services(compose).items()
        if name != "migrate"
    }
    assert waiting and set(waiting.values()) == {"service_completed_successfully"}, waiting
