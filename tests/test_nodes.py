"""Several nodes at once, as a city runs them: three ingest workers on one shared subscription,
two API processes, the collector and the alerter, each a real process, all on one PostgreSQL,
under a steady flood in which bins cross their thresholds and raise alerts. Mid-run PostgreSQL
is stopped and started again, then one ingest worker is SIGKILLed (its supervisor restarts it),
and operators acknowledge the same requests and alerts through both APIs at once.

Afterwards every reading is in InfluxDB once (by bin and seq), every full bin has exactly one
request and no other bin has any, no (bin, type) has two alerts and every provoked one has
exactly one, live, and nothing else was raised: no `seq_gap`, though readings of a bin reach the
rules out of order (the killed worker's and those held while PostgreSQL was down arrive after
later ones), and no bin is left waiting for a reading; every request and alert change has its
audit row, every notice was delivered and every audit row copied to InfluxDB; both APIs
answered throughout, 200 or a 503 with Retry-After, never anything else."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count, pairwise
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, selectinload

from alerts.models import Alert, AlertDelivery, AlertEvent, BinHealth
from binwatch.commands.ingest import worker_numbers
from binwatch.servers import PostgresServer
from collection import store as collection_store
from collection.models import CollectionEvent, CollectionRequest
from core.errors import ConfigError
from core.influx import InfluxClient
from core.settings import Settings
from core.sql import make_engine
from devices.contract import Event, Reading, TopicKind, Topics
from tests.api_process import ApiProcess
from tests.conftest import count_points
from tests.helpers import ADMIN_HEADERS, wait_for
from tests.mqtt_helpers import connected_publisher, wait_acknowledged
from tests.processes import IngestProcess, ServiceProcess

pytestmark = [
    pytest.mark.servers,
    pytest.mark.registry_backends(
        "postgresql",
        reason="processes on several machines share a registry only through a server, and the"
        " test stops and starts that server",
    ),
]

# Every FLEET_STEP-th bin of the pilot's by id (so spread over its sites), one reading per bin
# per round, a round a second: ~220 readings/s for at least ROUNDS seconds, and on until the
# operators' races are over (a busier machine takes longer to get there).
FLEET_STEP = 2
ROUNDS = 18
ROUND_S = 1.0
# Full bins read 99 % from this round on; hot ones 70 °C; low ones a 10 % battery.
FULL_FROM, HOT_FROM, LOW_FROM = 3, 6, 2
# Fire events (the second repeats the first: still one alert).
FIRE_ROUNDS = (7, 14)
# The moments of the faults, in rounds: PostgreSQL stops after the first requests and alerts
# were raised; the worker is killed once PostgreSQL is back, so that its restart (seconds of
# imports) overlaps the flood and the races with the registry up (a worker that starts while
# the registry is down knows no bins and dead-letters their readings: docs/deployment.md).
RESTART_AT, KILL_AT = 4, 6
# What an API request may take: far more than a healthy one, less than a hung one.
API_TIMEOUT_S = 10.0
API_POLL_S = 0.3
RACE_RETRIES = 5  # a race's post waits out at most this many 503s
# Everything settles within this after the flood (the collector and alerter tick every 5 s).
SETTLE_S = 90.0
# How long a seq gap waits for its late readings: more than the killed worker's restart may
# take (waited for up to 30 s below). A reading that never came would show either way: as a
# `seq_gap` once this has passed, or as a gap still open when the test waits for none.
GAP_GRACE_S = 45


@dataclass(frozen=True)
class Fleet:
    """Which bins do what in the flood, chosen by their place in the sorted fleet."""

    bins: list[str]
    full: frozenset[str]
    hot: frozenset[str]
    low: frozenset[str]
    fire: frozenset[str]

    @classmethod
    def of(cls, bins: list[str]) -> Fleet:
        def every(n: int, at: int) -> frozenset[str]:
            return frozenset(b for i, b in enumerate(bins) if i % n == at)

        return cls(bins, full=every(5, 0), hot=every(7, 3), low=every(11, 5), fire=every(13, 7))

    def expected_alerts(self) -> Counter[tuple[str, str]]:
        kinds = (("overheat", self.hot), ("battery_low", self.low), ("fire", self.fire))
        return Counter((bin_id, kind) for kind, bins in kinds for bin_id in bins)

    def round_messages(self, topics: Topics, index: int) -> list[tuple[str, bytes]]:
        now = datetime.now(UTC)
        messages = []
        for position, bin_id in enumerate(self.bins):
            reading = Reading(
                ts=now,
                seq=index,
                fill_pct=99.0 if bin_id in self.full and index >= FULL_FROM else 5.0 + position % 5,
                deposits=3,
                contaminated=position % 2,
                temp_c=70.0 if bin_id in self.hot and index >= HOT_FROM else 20.0,
                battery_pct=10.0 if bin_id in self.low and index >= LOW_FROM else 80.0,
            )
            messages.append(
                (topics.bin(bin_id, TopicKind.telemetry), reading.model_dump_json().encode())
            )
            if bin_id in self.fire and index in FIRE_ROUNDS:
                event = Event(ts=now, type="fire", detail=f"round {index}")
                messages.append(
                    (topics.bin(bin_id, TopicKind.event), event.model_dump_json().encode())
                )
        return messages


@dataclass
class ApiWatch:
    """What both APIs answered while the test ran, by API and phase."""

    urls: list[str]
    phase: str = "before"
    answers: Counter[tuple[int, str, str]] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(headers=ADMIN_HEADERS, timeout=API_TIMEOUT_S) as client:
            while not self.stop.wait(API_POLL_S):
                for index, url in enumerate(self.urls):
                    phase = self.phase
                    try:
                        answer = client.get(f"{url}/api/v1/collections?status=open&limit=5")
                    except httpx.HTTPError as exc:
                        said = type(exc).__name__
                    else:
                        said = str(answer.status_code)
                        if answer.status_code == 503 and "retry-after" not in answer.headers:
                            said = "503 without Retry-After"
                    self.answers[(index, phase, said)] += 1

    def said(self, index: int, phase: str) -> Counter[str]:
        return Counter({s: n for (i, p, s), n in self.answers.items() if (i, p) == (index, phase)})


def test_several_nodes_on_one_postgresql_through_a_worker_kill_and_a_restart(
    settings: Settings, own_postgres: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, url = own_postgres
    settings = settings.model_copy(
        update={
            "database_url": url,
            "database_connect_timeout_s": 2,
            "alert_gap_grace_s": GAP_GRACE_S,
        }
    )
    engine = make_engine(url)
    with Session(engine) as session:
        fleet = Fleet.of(sorted(collection_store.thresholds(session))[::FLEET_STEP])
    assert all(threshold <= 99.0 for threshold in _thresholds(engine, fleet.full)), (
        "a full bin's 99 % must cross its threshold"
    )
    topics = Topics(settings.topic_prefix)
    with ExitStack() as running:
        apis = [ApiProcess(settings, tmp_path / f"api-{n}.log") for n in (1, 2)]
        services = [
            ServiceProcess(settings, command, tmp_path / f"{command}.log")
            for command in ("collector", "alerter")
        ]
        ingest = IngestProcess(settings, tmp_path / "ingest.log", workers=3)  # ports last
        running.callback(ingest.stop)
        # All start at once: each imports binwatch, seconds apiece on a busy machine.
        ingest.launch()
        with ThreadPoolExecutor(len(apis) + len(services)) as pool:
            list(pool.map(running.enter_context, [*apis, *services]))
        ingest.wait_subscribed()
        watch = ApiWatch([api.url for api in apis])
        watcher = threading.Thread(target=watch.run, daemon=True)
        watcher.start()
        running.callback(watcher.join, API_TIMEOUT_S * 2)
        running.callback(watch.stop.set)

        rounds_done = [0]
        raced = threading.Event()
        flood = threading.Thread(
            target=_flood, args=(settings, fleet, topics, rounds_done, raced), daemon=True
        )
        flood.start()

        _wait_round(rounds_done, RESTART_AT)
        errors_before = _write_errors(ingest)
        watch.phase = "down"
        server.stop()
        wait_for(
            lambda: _write_errors(ingest) > errors_before,
            timeout=30,
            what="ingest to meet the stopped registry",
        )
        # Down until both APIs have answered too (each answer can take the connect timeout, and
        # the watcher asks them in turn), so that what they say while it is down is known.
        wait_for(
            lambda: all(watch.said(i, "down").total() for i in range(len(apis))),
            timeout=30,
            what="both APIs to answer while the registry is down",
        )
        server.start()
        watch.phase = "after"

        _wait_round(rounds_done, KILL_AT)
        victim = ingest.worker_pids()[1]
        os.kill(victim, signal.SIGKILL)

        # Operators act through both APIs on the same items at once, while the flood goes on
        # (ingest may still be catching up on what it held: the items are waited for).
        wait_for(
            lambda: len(_request_ids(engine)) == len(fleet.full),
            timeout=SETTLE_S,
            what="every full bin's request",
        )
        acked_requests = _race(apis, _request_ids(engine), _request_ack)
        wait_for(
            lambda: len(_alert_ids(engine, "fire")) == len(fleet.fire),
            timeout=SETTLE_S,
            what="every fire alert",
        )
        acked_alerts = _race(apis, _alert_ids(engine, "fire"), _alert_ack)
        raced.set()
        wait_for(
            lambda: victim not in ingest.worker_pids() and len(ingest.worker_pids()) == 3,
            timeout=30,
            what="the supervisor to restart the killed worker",
        )
        ingest.wait_subscribed()

        flood.join(ROUNDS * ROUND_S * 3)
        assert not flood.is_alive(), "the flood did not end"
        rounds = rounds_done[0]
        expected_points = rounds * len(fleet.bins)
        wait_for(
            lambda: count_points(settings) >= expected_points,
            timeout=SETTLE_S,
            what=f"{expected_points} readings in InfluxDB",
        )
        wait_for(
            lambda: _settled(engine, fleet),
            timeout=SETTLE_S,
            what="every request dispatched, every notice delivered, every audit row exported",
        )
        wait_for(
            lambda: not _open_gaps(engine),
            timeout=SETTLE_S,
            what="every late reading to fill its bin's gap",
        )
        watch.stop.set()

    _assert_each_reading_once(settings, fleet, rounds)
    _assert_requests(engine, fleet, acked_requests)
    _assert_alerts(engine, fleet, acked_alerts)
    for index in range(len(apis)):
        for phase in ("before", "down", "after"):
            said = watch.said(index, phase)
            assert set(said) <= {"200", "503"}, f"API {index + 1} {phase}: {dict(said)}"
        assert watch.said(index, "before")["200"] > 0
        assert watch.said(index, "after")["200"] > 0
        assert watch.said(index, "down").total() > 0, f"API {index + 1} unheard while down"
    engine.dispose()


def _flood(
    settings: Settings,
    fleet: Fleet,
    topics: Topics,
    rounds_done: list[int],
    enough: threading.Event,
) -> None:
    """ROUNDS rounds or more, until `enough` is set, one every ROUND_S, each waited for until
    the broker has it."""
    start = time.monotonic()
    with connected_publisher(settings) as client:
        for index in count():
            if index >= ROUNDS and enough.is_set():
                break
            infos = [
                client.publish(topic, payload, qos=1)
                for topic, payload in fleet.round_messages(topics, index)
            ]
            wait_acknowledged(infos)
            rounds_done[0] = index + 1
            time.sleep(max(0.0, start + (index + 1) * ROUND_S - time.monotonic()))


def _wait_round(rounds_done: list[int], index: int) -> None:
    wait_for(lambda: rounds_done[0] >= index, timeout=ROUNDS * ROUND_S * 3, what=f"round {index}")


def _write_errors(ingest: IngestProcess) -> float:
    return sum(
        ingest.metric("binwatch_ingest_write_errors_total", worker=worker) or 0.0
        for worker in range(ingest.workers)
    )


def _thresholds(engine: Engine, bins: frozenset[str]) -> list[float]:
    with Session(engine) as session:
        known = collection_store.thresholds(session)
    return [known[b] for b in bins]


def _request_ids(engine: Engine) -> dict[int, str]:
    with Session(engine) as session:
        rows = session.execute(select(CollectionRequest.id, CollectionRequest.operator_id))
        return {request_id: operator_id for request_id, operator_id in rows}


def _alert_ids(engine: Engine, kind: str) -> dict[int, str]:
    with Session(engine) as session:
        rows = session.execute(select(Alert.id, Alert.bin_id).where(Alert.type == kind))
        return {alert_id: bin_id for alert_id, bin_id in rows}


def _request_ack(request_id: int, operator_id: str) -> tuple[str, dict[str, str]]:
    return f"/api/v1/collections/{request_id}/ack", {"operator_id": operator_id, "note": "race"}


def _alert_ack(alert_id: int, _bin: str) -> tuple[str, dict[str, str]]:
    return f"/api/v1/alerts/{alert_id}/ack", {"note": "race"}


def _race(
    apis: list[ApiProcess],
    items: dict[int, str],
    action: Callable[[int, str], tuple[str, dict[str, str]]],
) -> set[int]:
    """Send the same action on each item to both APIs at once: exactly one may succeed, the
    other hears 409. Returns the items acted on."""
    assert items, "nothing to act on yet"

    def post(client: httpx.Client, api: ApiProcess, item: int) -> int:
        """The answer, after waiting out any 503 as its Retry-After says (a busy API's or a
        just-restarted registry's documented answer), as a client of the API does."""
        path, body = action(item, items[item])
        for _attempt in range(RACE_RETRIES):
            answer = client.post(f"{api.url}{path}", json=body)
            if answer.status_code != 503:
                break
            time.sleep(float(answer.headers["retry-after"]))
        return answer.status_code

    # Every item's posts submitted at once, its two next to each other: each pair is sent
    # together, and the pairs do not wait for one another. One client for all: a new one per
    # post builds an SSL context each time, CPU the busy processes need.
    with (
        httpx.Client(headers=ADMIN_HEADERS, timeout=API_TIMEOUT_S) as client,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        sent = {item: [pool.submit(post, client, api, item) for api in apis] for item in items}
        answers = {item: sorted(f.result() for f in futures) for item, futures in sent.items()}
    wrong = {item: said for item, said in answers.items() if said != [200, 409]}
    assert not wrong, f"not one 200 and one 409: {wrong}"
    return set(items)


def _settled(engine: Engine, fleet: Fleet) -> bool:
    with Session(engine) as session:
        requests = session.scalars(select(CollectionRequest)).all()
        statuses_ok = len(requests) == len(fleet.full) and all(
            r.status == "acknowledged" or (r.status == "dispatched" and r.published_at)
            for r in requests
        )
        unexported = session.scalar(
            select(CollectionEvent.id).where(CollectionEvent.exported.is_(False)).limit(1)
        ) or session.scalar(select(AlertEvent.id).where(AlertEvent.exported.is_(False)).limit(1))
        undelivered = session.scalar(
            select(AlertDelivery.id).where(AlertDelivery.done.is_(False)).limit(1)
        )
        alerts = session.scalar(select(Alert.id).order_by(Alert.id.desc()).limit(1))
    expected = fleet.expected_alerts().total()
    return (
        statuses_ok
        and not unexported
        and not undelivered
        and alerts is not None
        and (_alert_count(engine) >= expected)
    )


def _alert_count(engine: Engine) -> int:
    with Session(engine) as session:
        return len(session.scalars(select(Alert.id)).all())


def _assert_each_reading_once(settings: Settings, fleet: Fleet, rounds: int) -> None:
    client = InfluxClient(settings)
    try:
        series = client.query('SELECT seq FROM telemetry GROUP BY "bin"')
    finally:
        client.close()
    stored = Counter((s.tags["bin"], int(seq)) for s in series for _time, seq in s.values)
    expected = Counter((bin_id, seq) for bin_id in fleet.bins for seq in range(rounds))
    assert stored == expected, (
        f"missing {list((expected - stored).items())[:5]}, extra {list((stored - expected).items())[:5]}"
    )


def _assert_requests(engine: Engine, fleet: Fleet, acked: set[int]) -> None:
    with Session(engine) as session:
        requests = session.scalars(
            select(CollectionRequest).options(selectinload(CollectionRequest.events))
        ).all()
        # Exactly one request per full bin (open: waiting for its crew), none elsewhere.
        assert Counter(r.bin_id for r in requests) == Counter(fleet.full)
        for request in requests:
            assert request.status == ("acknowledged" if request.id in acked else "dispatched")
            steps = [(e.from_status, e.to_status) for e in request.events]
            assert all(e.kind == "transition" and e.exported for e in request.events)
            assert steps[0] == (None, "open"), steps
            assert all(before[1] == after[0] for before, after in pairwise(steps)), steps
            assert steps[-1][1] == request.status, steps
            assert len(set(steps)) == len(steps), f"a change audited twice: {steps}"


def _open_gaps(engine: Engine) -> list[tuple[str, list[int] | None]]:
    """Bins whose rules still wait for skipped readings, and which."""
    with Session(engine) as session:
        rows = session.execute(
            select(BinHealth.bin_id, BinHealth.gap_seqs).where(BinHealth.gap_since.is_not(None))
        )
        return [(bin_id, seqs) for bin_id, seqs in rows]


def _assert_alerts(engine: Engine, fleet: Fleet, acked: set[int]) -> None:
    with Session(engine) as session:
        alerts = session.scalars(select(Alert).options(selectinload(Alert.events))).all()
        deliveries = session.scalars(select(AlertDelivery)).all()
        raised = Counter((a.bin_id, a.type) for a in alerts)
        assert max(raised.values()) == 1, raised.most_common(3)
        # Exactly one live alert per provoked (bin, type), and nothing else raised: every seq
        # is stored (checked above), so a `seq_gap` would call lost a reading that came late.
        expected = fleet.expected_alerts()
        assert raised == expected, (
            f"{(raised - expected).total()} unprovoked, e.g. "
            f"{sorted((a.bin_id, a.type, a.detail) for a in alerts if (a.bin_id, a.type) not in expected)[:5]};"
            f" {(expected - raised).total()} missing, e.g. {sorted(expected - raised)[:5]}"
        )
        for alert in alerts:
            kinds = [e.kind for e in alert.events]
            if alert.id in acked:
                assert (alert.state, kinds) == ("acknowledged", ["raised", "acknowledged"])
            else:
                assert (alert.state, kinds) == ("active", ["raised"])
            assert all(e.exported for e in alert.events)
        # Each raised notice went out once to its site's topic (the outbox row, done).
        notices = Counter((d.alert_id, d.notice, d.recipient, d.channel) for d in deliveries)
        assert {(a.id, "raised", "site", "mqtt") for a in alerts} <= set(notices)
        assert max(notices.values()) == 1
        assert all(d.done and d.delivered_at is not None for d in deliveries)


def test_machines_on_one_broker_number_their_ingest_workers_apart() -> None:
    """Each worker number is an MQTT account and session (`ingest-<n>`): a second machine
    starts where the first one's workers end, and nobody goes past the last account."""
    assert worker_numbers(Settings(), 1) == range(1)  # a lone worker: no shared subscription
    assert worker_numbers(Settings(ingest_first_worker=3), 3) == range(3, 6)
    assert worker_numbers(Settings(ingest_first_worker=3), 1) == range(3, 4)  # shared, as 3
    with pytest.raises(ConfigError, match="ingest-31"):
        worker_numbers(Settings(ingest_first_worker=30), 3)
