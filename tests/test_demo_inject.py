"""`binwatch demo --inject` against a real authenticated Mosquitto (the demo's accounts and ACL),
ingest with the alert hook and a running simulator: a fault sent with the simulator's stored
credentials reaches the running simulator, and the alerts follow (fire at once from its event,
overheat and battery from the bins' next readings; a silenced bin stops reporting)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from alerts import store
from binwatch.cli import app
from binwatch.demo import keep_injector_url
from binwatch.servers import MosquittoServer, free_port
from core.settings import Settings, reveal
from core.sql import make_engine
from devices.registry import BinTags
from security import mqtt_auth
from simulator.publisher import run_simulation
from tests.helpers import wait_for
from tests.test_alerts import alert_ingest
from tests.test_demo_replay import _stored

pytestmark = [
    pytest.mark.servers,
    pytest.mark.registry_backends(
        "sqlite",
        reason="injecting into the running demo is MQTT's and ingest's; the registry only names "
        "the fleet here",
    ),
]


@pytest.fixture
def demo_broker(
    settings: Settings, pilot_bins: dict[str, BinTags], tmp_path: Path
) -> Iterator[dict[str, Settings]]:
    """A broker with the demo's authentication: each service's settings, by account."""
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        now = datetime.now(UTC)
        issued = [mqtt_auth.issue(session, name, now=now) for name in ("ingest", "simulator")]
        mqtt_auth.export(session, tmp_path / "auth", prefix=settings.topic_prefix)
    engine.dispose()
    broker = MosquittoServer(tmp_path / "broker", free_port(), auth_dir=tmp_path / "auth")
    broker.start()
    try:
        yield {
            i.username: settings.model_copy(
                update={
                    "mqtt_url": f"mqtt://{i.username}:{quote(i.password)}@127.0.0.1:{broker.port}"
                }
            )
            for i in issued
        }
    finally:
        broker.stop()


def _alerts(settings: Settings) -> set[tuple[str, str]]:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            return {(a.bin_id, a.type) for a in store.list_alerts(session, limit=1000)[0]}
    finally:
        engine.dispose()


def test_inject_reaches_the_running_demo(
    settings: Settings,
    pilot_bins: dict[str, BinTags],
    demo_broker: dict[str, Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bins = sorted(pilot_bins.values(), key=lambda t: t.bin)[:4]
    hot, drained, silent, _ = (b.bin for b in bins)
    data_dir = tmp_path / "var"
    monkeypatch.setenv("BINWATCH_DATABASE_URL", reveal(settings.database_url))
    monkeypatch.setenv("BINWATCH_TOPIC_PREFIX", settings.topic_prefix)
    runner = CliRunner()

    def inject(kind: str, bin_id: str) -> tuple[int, str]:
        done = runner.invoke(
            app, ["demo", "--data-dir", str(data_dir), "--inject", kind, "--bin", bin_id]
        )
        return done.exit_code, done.output

    code, output = inject("fire", hot)
    assert code == 1 and "no demo is running" in output, output
    stop = threading.Event()
    with ExitStack() as stack, alert_ingest(demo_broker["ingest"]):
        keep_injector_url(stack, data_dir, reveal(demo_broker["simulator"].mqtt_url))
        # Live: one round a second, each reading sent alone.
        simulator = threading.Thread(
            target=run_simulation,
            args=(demo_broker["simulator"], bins),
            kwargs={
                "interval_s": 1,
                "speed": 1,
                "seed": 5,
                "stop": stop,
                "listen_for_faults": True,
            },
            daemon=True,
        )
        simulator.start()
        try:
            wait_for(lambda: len(_stored(settings)) == len(bins), timeout=30, what="readings")
            code, output = inject("fire", "no-such-bin")
            assert code != 0 and "no bin 'no-such-bin'" in output, output
            for kind, bin_id in (("fire", hot), ("battery", drained), ("silence", silent)):
                code, output = inject(kind, bin_id)
                assert code == 0, output
            expected = {(hot, "fire"), (hot, "overheat"), (drained, "battery_low")}
            wait_for(lambda: _alerts(settings) >= expected, timeout=30, what=f"{expected}")
            assert {kind for b, kind in _alerts(settings) if b == silent} == set()
            # The silenced bin sends nothing more while the others go on.
            before = {b: len(points) for b, points in _stored(settings).items()}
            wait_for(
                lambda: len(_stored(settings)[hot]) >= before[hot] + 3,
                timeout=30,
                what="three more rounds",
            )
            assert len(_stored(settings)[silent]) <= before[silent] + 1
        finally:
            stop.set()
            simulator.join(30)
    assert not simulator.is_alive()
    code, output = inject("fire", hot)
    assert code == 1 and "no demo is running" in output, output
