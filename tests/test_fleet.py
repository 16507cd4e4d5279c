"""The fleet file: the shipped pilot, idempotent import, and errors that point at the line."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from binwatch.commands.fleet import fleet_app
from core.errors import FleetError
from core.sql import make_engine, session_factory
from devices.fleet import Fleet, default_fleet_path, import_fleet, load_fleet
from devices.models import Area, AreaContact, Bin, Operator, Site
from devices.registry import BinTags, bin_tags
from tests.registry_backends import prepare_registry

# Line numbers matter: the bad-file cases below assert them.
MINI = """\
districts:
  - id: shizhong
    name: Shizhong District
    streets:
      - id: lvxin
        name: Lvxin Street
        communities:
          - {id: xiaoba, name: Xiaoba Community}
operators:
  - {id: op-lvyuan, name: Lvyuan Environmental Services}
sites:
  - id: jiazhou-shuian
    name: Jiazhou Shuian
    type: compound
    community: xiaoba
    operator: op-lvyuan
    address: 1 Lvxin Road
    lat: 36.65
    lon: 117.0
    stations: 1
    bins:
      - {id: jiazhou-shuian-gate, stream: hazardous, station: gate}
"""


@pytest.fixture
def session(registry_url: str, request: pytest.FixtureRequest) -> Iterator[Session]:
    url = registry_url
    prepare_registry(url, request, fleet=False)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        yield session
    engine.dispose()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _snapshot(session: Session) -> list[tuple[object, ...]]:
    session.expire_all()
    return [
        tuple(row)
        for model in (Area, Operator, Site, Bin)
        for row in session.execute(select(*model.__table__.columns))
    ]


def test_default_fleet_is_the_pilot() -> None:
    fleet = load_fleet(default_fleet_path())
    assert Counter(site.type.value for site in fleet.sites) == {
        "agency": 50,
        "school": 5,
        "compound": 13,
    }
    assert sum(len(district.streets) for district in fleet.districts) == 5
    assert len(fleet.operators) == 2
    assert all(len(site.planned_bins()) >= 4 for site in fleet.sites)
    assert "jiazhou-shuian" in {site.id for site in fleet.sites}


def test_import_gives_bins_their_grid_tags(session: Session) -> None:
    import_fleet(session, load_fleet(default_fleet_path()))
    assert bin_tags(session)["jiazhou-shuian-s1-kitchen"] == BinTags(
        bin="jiazhou-shuian-s1-kitchen",
        site="jiazhou-shuian",
        site_type="compound",
        stream="kitchen",
        community="xiaoba",
        street="lvxin",
        district="shizhong",
        operator="op-lvyuan",
    )


def test_reimport_changes_nothing(session: Session) -> None:
    first = import_fleet(session, load_fleet(default_fleet_path()))
    again = import_fleet(session, load_fleet(default_fleet_path()))
    assert (again.created, again.updated, again.unchanged) == (0, 0, first.created)


def test_changed_threshold_updates_one_bin(session: Session, tmp_path: Path) -> None:
    import_fleet(session, load_fleet(_write(tmp_path, MINI)))
    changed = MINI.replace("station: gate}", "station: gate, threshold_pct: 50}")
    summary = import_fleet(session, load_fleet(_write(tmp_path, changed)))
    assert (summary.created, summary.updated, summary.bins.updated) == (0, 1, 1)
    assert session.get(Bin, "jiazhou-shuian-gate").threshold_pct == 50  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("old", "new", "line", "reason"),
    [
        ("name: Jiazhou Shuian", "name: Jiazhou: Shuian", 13, "YAML syntax error"),
        ("    address: 1 Lvxin Road\n", "", 12, "sites[0].address: required field is missing"),
        ("lon: 117.0\n", "lon: 117.0\n    colour: blue\n", 20, "sites[0].colour: unknown field"),
        ("stream: hazardous", "stream: glass", 22, "sites[0].bins[0].stream: Input should be"),
        ("community: xiaoba", "community: xiaobei", 15, "unknown community 'xiaobei'"),
        ("id: jiazhou-shuian-gate", "id: jiazhou-shuian-s1-kitchen", 22, "already used at line 20"),
        (
            "id: jiazhou-shuian-gate",
            "id: jiazhou shuian gate",
            22,
            "'jiazhou shuian gate' is not a valid id",
        ),
        ("lon: 117.0\n", "lon: 117.0\n    lat: 36.7\n", 20, "lat: key appears twice"),
        # A bin logs in to the broker as its id: never a service's, an operator's or a person's.
        ("id: jiazhou-shuian-gate", "id: collector", 22, "'collector' is the name of a broker"),
        ("id: jiazhou-shuian\n", "id: admin-centre\n", 20, "'admin-centre-s1-"),
        # A name goes into e-mail subjects and chat titles, which are one line.
        (
            "name: Jiazhou Shuian",
            'name: "Jiazhou\\r\\nBcc: x@evil.example"',
            13,
            "sites[0].name: a name is one line",
        ),
        ("name: Lvxin Street", 'name: "Lvxin\\u2028Street"', 6, "a name is one line"),
        # YAML's escape for NUL, which PostgreSQL's text cannot hold: the import failed there
        # with a DataError (a traceback), and SQLite stored it.
        (
            "address: 1 Lvxin Road",
            'address: "1 Lvxin\\0 Road"',
            17,
            "sites[0].address: an address is one line",
        ),
        ("station: gate", 'station: "ga\\0te"', 22, "bins[0].station: a station is one line"),
    ],
)
def test_bad_file_is_rejected_with_its_line(
    session: Session, tmp_path: Path, old: str, new: str, line: int, reason: str
) -> None:
    import_fleet(session, load_fleet(_write(tmp_path, MINI)))
    before = _snapshot(session)
    assert old in MINI
    path = _write(tmp_path, MINI.replace(old, new))
    with pytest.raises(FleetError) as rejected:
        import_fleet(session, load_fleet(path))
    assert f"{path}:{line}: " in str(rejected.value)
    assert reason in str(rejected.value)
    assert _snapshot(session) == before


def test_failed_import_rolls_everything_back(session: Session) -> None:
    import_fleet(session, load_fleet(default_fleet_path()))
    before = _snapshot(session)
    # Skips load_fleet's reference checks, so the database itself refuses the unknown operator
    # only after the renamed community has been written.
    data = yaml.safe_load(
        MINI.replace("Xiaoba Community", "Renamed").replace(
            "operator: op-lvyuan", "operator: op-ghost"
        )
    )
    with pytest.raises(IntegrityError):
        import_fleet(session, Fleet.model_validate(data))
    assert _snapshot(session) == before


def test_cli_imports_and_reports_bad_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry_url: str
) -> None:
    monkeypatch.setenv("BINWATCH_DATABASE_URL", registry_url)
    runner = CliRunner()
    imported = runner.invoke(fleet_app, ["import"])
    assert imported.exit_code == 0, imported.output
    assert "bins" in imported.stdout
    bad = _write(tmp_path, MINI.replace("community: xiaoba", "community: xiaobei"))
    rejected = runner.invoke(fleet_app, ["import", str(bad)])
    assert rejected.exit_code == 1
    assert f"{bad}:15:" in rejected.stderr
    assert runner.invoke(fleet_app, ["show"]).exit_code == 0


CONTACTS = MINI.replace(
    "          - {id: xiaoba, name: Xiaoba Community}\n",
    "          - id: xiaoba\n"
    "            name: Xiaoba Community\n"
    "            contact: {mqtt_topic: city/xiaoba/whistle, webhook_url: 'https://xb.example/h'}\n",
).replace(
    "        name: Lvxin Street\n",
    "        name: Lvxin Street\n        contact: {mqtt_topic: city/lvxin/squad}\n",
)


def test_area_contacts_come_from_the_file_and_keep_their_secret(
    session: Session, tmp_path: Path
) -> None:
    summary = import_fleet(session, load_fleet(_write(tmp_path, CONTACTS)))
    assert summary.contacts.created == 2
    xiaoba = session.get(AreaContact, "xiaoba")
    assert xiaoba is not None
    assert (xiaoba.mqtt_topic, xiaoba.webhook_url) == (
        "city/xiaoba/whistle",
        "https://xb.example/h",
    )
    squad = session.get(AreaContact, "lvxin")
    assert squad is not None and (squad.mqtt_topic, squad.webhook_url) == ("city/lvxin/squad", None)
    xiaoba.webhook_secret = "set-apart-from-the-file"
    session.commit()
    moved = CONTACTS.replace("city/xiaoba/whistle", "city/xiaoba/bell")
    again = import_fleet(session, load_fleet(_write(tmp_path, moved)))
    assert (again.contacts.updated, again.contacts.unchanged, again.updated) == (1, 1, 1)
    session.refresh(xiaoba)
    assert (xiaoba.mqtt_topic, xiaoba.webhook_secret) == (
        "city/xiaoba/bell",
        "set-apart-from-the-file",
    )


# Topics the broker cannot take: (as written in the file, as read, what the refusal says).
UNPUBLISHABLE = [
    ("city/+/squad", "city/+/squad", "wildcard"),
    ('"city/lvxin\\0squad"', "city/lvxin\0squad", "control character ('\\x00')"),
    ('"city/lvxin\\x01squad"', "city/lvxin\x01squad", "control character ('\\x01')"),
    ('"city/lvxin\\x7fsquad"', "city/lvxin\x7fsquad", "control character ('\\x7f')"),
    ('"city/lvxin\\x85squad"', "city/lvxin\x85squad", "control character ('\\x85')"),
    ("$SYS/lvxin", "$SYS/lvxin", "the broker's own"),
]


@pytest.mark.parametrize(("written", "topic", "why"), UNPUBLISHABLE)
def test_a_contact_topic_the_broker_cannot_take_is_refused_with_its_line(
    tmp_path: Path, written: str, topic: str, why: str
) -> None:
    path = _write(tmp_path, CONTACTS.replace("city/lvxin/squad", written))
    with pytest.raises(FleetError) as rejected:
        load_fleet(path)
    assert f"{path}:7: " in str(rejected.value)
    assert f"contact.mqtt_topic: {topic!r} cannot be published to" in str(rejected.value)
    assert why in str(rejected.value)


def test_the_broker_drops_a_connection_that_publishes_to_a_refused_topic(
    mqtt_server: Any,
) -> None:
    """Why the control characters are refused: Mosquitto answers such a PUBLISH by closing the
    connection (the collector's, whose paho sends the message again after each reconnect)."""
    for _written, topic, _why in [*UNPUBLISHABLE[1:5], ("", "city/肖坝/whistle", "")]:
        dropped = threading.Event()
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        client.on_disconnect = lambda *_args, event=dropped: event.set()
        broker = urlsplit(mqtt_server.url)
        client.connect(broker.hostname or "127.0.0.1", broker.port or 1883)
        client.loop_start()
        try:
            info = client.publish(topic, b"{}", qos=1)
            if topic.startswith("city/肖坝"):  # a topic the file accepts: taken
                info.wait_for_publish(5)
                assert info.is_published() and not dropped.is_set()
            else:
                assert dropped.wait(5), f"the broker took {topic!r}"
        finally:
            client.disconnect()
            client.loop_stop()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://xb.example/h", "is plain http: webhooks go over https"),
        ("https://127.0.0.1:8086/query", "127.0.0.1 is not a public address"),
        ("https://localhost/h", "names this machine"),
    ],
)
def test_a_webhook_url_the_sender_would_refuse_fails_the_import_with_its_line(
    tmp_path: Path, url: str, why: str
) -> None:
    path = _write(tmp_path, CONTACTS.replace("https://xb.example/h", url))
    with pytest.raises(FleetError) as rejected:
        load_fleet(path)
    assert f"{path}:11: " in str(rejected.value)  # the contact's line
    assert "contact.webhook_url: " in str(rejected.value)
    assert why in str(rejected.value)
    assert "BINWATCH_WEBHOOK_ALLOW_PRIVATE=true" in str(rejected.value)
    fleet = load_fleet(path, allow_private_webhooks=True)  # an intranet receiver, allowed
    assert url in [a.contact.webhook_url for _l, a, _k, _p in fleet.areas() if a.contact]


def test_webhook_secrets_are_set_from_standard_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry_url: str
) -> None:
    url = registry_url
    monkeypatch.setenv("BINWATCH_DATABASE_URL", url)
    runner = CliRunner()
    assert runner.invoke(fleet_app, ["import", str(_write(tmp_path, CONTACTS))]).exit_code == 0
    secret = "s3cret-s3cret-s3cret"
    done = runner.invoke(fleet_app, ["webhook-secret", "--area", "xiaoba"], input=f"{secret}\n")
    assert done.exit_code == 0, done.output
    assert secret not in done.stdout and "https://xb.example/h" in done.stdout
    # The street's contact has no webhook, the operator none either: said, nothing stored.
    for option, ident in (("--area", "lvxin"), ("--operator", "op-lvyuan"), ("--area", "nope")):
        refused = runner.invoke(fleet_app, ["webhook-secret", option, ident], input=f"{secret}\n")
        assert refused.exit_code == 1 and "has no webhook_url" in refused.stderr
    # Every path to the registry refuses NUL (core/sql.py, make_engine), here the CLI's: a
    # secret piped with one failed on PostgreSQL with a traceback, and SQLite stored it.
    nul = subprocess.run(
        [sys.executable, "-m", "binwatch", "fleet", "webhook-secret", "--area", "xiaoba"],
        input=f"{secret}\0x\n",
        env={**os.environ, "BINWATCH_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert nul.returncode == 1, nul.stderr
    assert nul.stderr.strip().splitlines() == [
        "text may not contain the NUL character (U+0000): remove it and send again"
    ]
    short = runner.invoke(fleet_app, ["webhook-secret", "--area", "xiaoba"], input="short\n")
    assert short.exit_code == 1 and "at least 16 characters" in short.stderr
    both = runner.invoke(fleet_app, ["webhook-secret", "--area", "x", "--operator", "y"])
    assert both.exit_code == 2
    generated = runner.invoke(fleet_app, ["webhook-secret", "--area", "xiaoba", "--generate"])
    assert generated.exit_code == 0
    new_secret = generated.stdout.strip().splitlines()[-1]
    engine = make_engine(url)
    with session_factory(engine)() as session:
        contact = session.get(AreaContact, "xiaoba")
        assert contact is not None and contact.webhook_secret == new_secret != secret
        assert session.get(AreaContact, "lvxin").webhook_secret is None  # type: ignore[union-attr]
    engine.dispose()


def _pilot_with(change: Callable[[dict[str, Any]], None]) -> Fleet:
    data = yaml.safe_load(default_fleet_path().read_text(encoding="utf-8"))
    change(data)
    return Fleet.model_validate(data)


def _areas(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield data["city"]
    for district in data["districts"]:
        yield district
        for street in district["streets"]:
            yield street
            yield from street["communities"]


def _with_contacts(data: dict[str, Any]) -> None:
    for area in _areas(data):
        area["contact"] = {"mqtt_topic": f"city/{area['id']}/whistle"}


def _everything_changed(data: dict[str, Any]) -> None:
    """A new value in a column of every row of every kind: areas, their contacts, operators,
    sites and (through the site's capacity) every bin."""
    for area in _areas(data):
        area["name"] += " (renamed)"
        area["contact"] = {
            "mqtt_topic": f"city/{area['id']}/bell",
            "webhook_url": f"https://{area['id']}.example/hook",
        }
    for operator in data["operators"]:
        operator["webhook_url"] = f"https://{operator['id']}.example/dispatch"
    for site in data["sites"]:
        site["address"] += ", gate 2"
        site["capacity_l"] = 360
        for extra in site.get("bins", []):
            extra["capacity_l"] = 480


def test_a_reimport_that_changes_every_kind_of_row_updates_them_all(session: Session) -> None:
    first = import_fleet(session, _pilot_with(_with_contacts))
    changed = _pilot_with(_everything_changed)
    again = import_fleet(session, changed)
    for kind in ("areas", "contacts", "operators", "sites", "bins"):
        counts = getattr(again, kind)
        assert (counts.created, counts.updated, counts.unchanged) == (
            0,
            getattr(first, kind).created,
            0,
        ), kind
    session.expire_all()
    operators = session.scalars(select(Operator)).all()
    assert len(operators) == 2
    assert all(o.webhook_url == f"https://{o.id}.example/dispatch" for o in operators)
    assert all(a.name.endswith(" (renamed)") for a in session.scalars(select(Area)))
    contacts = session.scalars(select(AreaContact)).all()
    assert all(c.webhook_url == f"https://{c.area_id}.example/hook" for c in contacts)
    planned = {
        b.id: (b.capacity_l, b.threshold_pct) for s in changed.sites for b in s.planned_bins()
    }
    assert {b.id: (b.capacity_l, b.threshold_pct) for b in session.scalars(select(Bin))} == planned
    assert all(s.address.endswith(", gate 2") for s in session.scalars(select(Site)))
    # The same file once more: nothing left to change.
    settled = import_fleet(session, changed)
    assert (settled.created, settled.updated) == (0, 0)


# --- hostile files: each refused in a line that says why, quickly, never a traceback -------------


def _laughs(levels: int) -> str:
    """The "billion laughs": each line a list of nine aliases of the one before (9**levels
    values in a few hundred bytes)."""
    lines = [f"l0: &l0 [{', '.join(['x'] * 9)}]"]
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # 400 bytes, 43 million values: checking them took 8 s, one level more 70 s.
        (_laughs(8), "the file holds over 1,000,000 values with its aliases repeated"),
        # Aliases shaped like the fleet, each area valid: 60**3 communities in 900 bytes (a 3 s
        # check and a 216,000-line answer before; at 200 a level, 8 million).
        (
            "districts: [&d {id: d1, name: D, streets: [&s {id: s1, name: S, communities: "
            "[&c {id: c1, name: C}" + ", *c" * 59 + "]}" + ", *s" * 59 + "]}" + ", *d" * 59 + "]\n",
            "the file holds over 1,000,000 values with its aliases repeated",
        ),
        # An alias inside its own anchor's part: a RecursionError traceback before.
        ("districts: &a [*a]\n", ":1: an alias inside the part its anchor names repeats it"),
        ("city: &a {id: leshan, name: *a}\n", ":1: an alias inside the part its anchor names"),
        # 5,000 levels of brackets: a RecursionError traceback before.
        ("districts: " + "[" * 5000 + "]" * 5000 + "\n", "YAML nested too deep"),
        # 2,601 sites of 99 stations in 100 KB: 1,029,996 bins, each checked (and its site's
        # id reported twice, 2,600 times) before anything said no.
        (
            "sites: [&s {id: x, name: X, type: compound, community: c1, operator: o, address: A, "
            "lat: 1, lon: 1, stations: 99}" + ", *s" * 2600 + "]\n",
            "the file plans 1,029,996 bins, over the 1,000,000 one import takes",
        ),
        # Over the size bound: read whole (and /dev/zero without end) before.
        ("#" + " " * (8 * 1024 * 1024) + "\n", "the file is over 8 MiB"),
    ],
    ids=[
        "laughs",
        "fleet-shaped-laughs",
        "endless-list",
        "endless-mapping",
        "deep",
        "stations",
        "huge",
    ],
)
def test_a_hostile_file_is_refused_quickly_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, said: str
) -> None:
    path = _write(tmp_path, text)
    # This process's CPU seconds, not the clock's: the bound is for work that grows past all
    # measure (minutes before each fix), and a shared machine's load stretched the clock's
    # seconds past it (a full run at load average 10 took 2 s for the deep one).
    started = time.process_time()
    with pytest.raises(FleetError) as rejected:
        load_fleet(path)
    assert time.process_time() - started < 2.0
    assert said in str(rejected.value)
    assert len(str(rejected.value)) < 500
    # The CLI says it in one line and exits 1 (no registry: the file alone is checked).
    monkeypatch.setenv("BINWATCH_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    refused = CliRunner().invoke(fleet_app, ["import", str(path)])
    assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit)
    assert said in refused.stderr


def test_anchors_and_merge_keys_that_override_a_key_are_not_a_key_given_twice(
    tmp_path: Path,
) -> None:
    """A merged key overridden is what `<<:` is for; the check looked after the merge, and
    refused it as a key given twice."""
    shared = MINI.replace(
        "  - {id: op-lvyuan, name: Lvyuan Environmental Services}\n",
        "  - &lvyuan {id: op-lvyuan, name: Lvyuan Environmental Services}\n"
        "  - {<<: *lvyuan, id: op-lvyuan-north}\n",
    )
    fleet = load_fleet(_write(tmp_path, shared))
    assert [(o.id, o.name) for o in fleet.operators] == [
        ("op-lvyuan", "Lvyuan Environmental Services"),
        ("op-lvyuan-north", "Lvyuan Environmental Services"),
    ]
    twice = shared.replace("id: op-lvyuan-north}", "id: op-lvyuan-north, id: op-x}")
    with pytest.raises(FleetError, match=r":11: id: key appears twice in this mapping"):
        load_fleet(_write(tmp_path, twice))
