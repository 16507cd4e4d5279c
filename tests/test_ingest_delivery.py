"""Delivery details on the real servers: out-of-order and duplicate readings, a flood with bad
input that must never hold back the buffer, and replaying dead letters after a fix."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from binwatch.cli import app
from core.influx import InfluxClient
from core.settings import Settings
from core.sql import make_engine
from devices.contract import Reading, TopicKind, Topics
from devices.models import Bin
from devices.registry import BinTags
from ingest.service import Ingestor
from tests.conftest import count_points, running_ingest
from tests.helpers import wait_for
from tests.mqtt_helpers import publish_all
from tests.processes import readings
from tests.test_ingest_bad_input import bad_payloads

pytestmark = pytest.mark.registry_backends(
    "sqlite",
    reason="delivery and buffering are MQTT's and InfluxDB's side; dead letters on PostgreSQL: "
    "test_ingest_bad_input.py, test_ingest_poison.py",
)

NOW = datetime.now(UTC).replace(microsecond=0)


def _json(reading: Reading) -> bytes:
    return reading.model_dump_json(exclude_none=True).encode()


def test_out_of_order_and_duplicate_readings_are_stored_once_at_their_own_times(
    settings: Settings, pilot_bins: dict[str, BinTags], ingest: Ingestor
) -> None:
    topic = Topics(settings.topic_prefix).bin(sorted(pilot_bins)[0], TopicKind.telemetry)
    times = [NOW - timedelta(minutes=minutes) for minutes in (10, 40, 30, 20)]
    latest = Reading(ts=times[0], seq=3, fill_pct=60.0)
    offline_buffer = [Reading(ts=t, seq=s, fill_pct=float(s * 10)) for s, t in enumerate(times[1:])]
    buffered = json.dumps([json.loads(_json(r)) for r in offline_buffer]).encode()
    # The live reading first, then the bin's offline buffer, then redeliveries of both.
    publish_all(
        settings,
        [(topic, _json(latest)), (topic, buffered), (topic, buffered), (topic, _json(latest))],
    )

    wait_for(
        lambda: ingest.metrics.value("binwatch_ingest_received_messages_total") == 4,
        timeout=15,
        what="four messages",
    )
    client = InfluxClient(settings)
    (series,) = client.query("SELECT fill_pct, seq FROM telemetry")
    client.close()
    stored = [(row["time"], row["seq"]) for row in series.rows()]
    expected = sorted(
        (int(t.timestamp() * 1000), seq) for seq, t in [(3, times[0]), *enumerate(times[1:])]
    )
    assert stored == expected


def test_a_flood_with_ten_percent_bad_input_never_stalls_a_small_buffer(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    # A buffer of 200 unacknowledged messages: if rejected messages were not acknowledged as
    # promptly as stored ones, this flood would stall within the first few hundred.
    small = settings.model_copy(update={"ingest_buffer": 200, "ingest_batch_size": 100})
    topics = Topics(small.topic_prefix)
    good = readings(small, sorted(pilot_bins), 18_000)
    bad = bad_payloads(
        topics.bin(sorted(pilot_bins)[1], TopicKind.telemetry),
        topics.bin("ghost", TopicKind.telemetry),
    )
    rng = random.Random(7)
    messages = list(good)
    for _ in range(2_000):
        _reason, topic, payload = rng.choice(bad)
        messages.insert(rng.randrange(len(messages)), (topic, payload))
    with running_ingest(small) as worker:
        publish_all(small, messages)
        wait_for(
            lambda: (
                worker.metrics.value("binwatch_ingest_received_messages_total") == len(messages)
            ),
            timeout=120,
            what="the whole flood to be handled",
        )
        assert worker.metrics.value("binwatch_ingest_dead_lettered_total") == 2_000
    assert count_points(small) == len(good)


def test_dead_letters_list_shows_what_a_bin_sent_as_text(
    settings: Settings,
    pilot_bins: dict[str, BinTags],
    ingest: Ingestor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A dead letter's detail quotes the JSON key a bin sent. The table read it as Rich markup:
    `[/x]` stopped `deadletters list` with a MarkupError, a `[link=…]` drew a link, and an ESC
    sequence went to the admin's terminal as it came (its title, a cleared screen). Ingest's
    log line of the letter showed a line break as it came: a line of its own, forged."""
    topic = Topics(settings.topic_prefix).bin(sorted(pilot_bins)[0], TopicKind.telemetry)
    ts = int(NOW.timestamp() * 1000)
    keys = [
        "[/x]",
        "[link=https://evil.example]click[/link]",
        "\u001b]0;pwned\u0007\u001b[2J",
        "lid\nERROR ingest.service: forged",
    ]
    publish_all(
        settings, [(topic, json.dumps({"ts": ts, "fill_pct": 5, k: 1}).encode()) for k in keys]
    )
    wait_for(
        lambda: ingest.metrics.value("binwatch_ingest_rejected_total", reason="unknown_field") == 4,
        timeout=15,
        what="four unknown-field dead letters",
    )
    listed = CliRunner().invoke(app, ["deadletters", "list"], env=settings.as_env())
    assert listed.exit_code == 0, listed.output
    assert "[/x] is not a field of contract v1" in listed.output
    assert "[link=https://evil.example]click[/link] is not a field" in listed.output
    assert "\x1b" not in listed.output and "\\x1b]0;pwned\\x07\\x1b[2J is not" in listed.output
    assert "lid\\nERROR ingest.service: forged is not" in listed.output
    logged = [r.getMessage() for r in caplog.records if r.name == "ingest.letters"]
    assert len(logged) == 4 and not any("\n" in line or "\x1b" in line for line in logged)


def test_dead_letters_of_an_unregistered_bin_are_replayed_once_it_is_registered(
    settings: Settings, pilot_bins: dict[str, BinTags], ingest: Ingestor
) -> None:
    topics = Topics(settings.topic_prefix)
    newcomer = "jiazhou-shuian-s9-kitchen"
    sent = [Reading(ts=NOW - timedelta(minutes=m), seq=m, fill_pct=10.0 + m) for m in range(5)]
    publish_all(settings, [(topics.bin(newcomer, TopicKind.telemetry), _json(r)) for r in sent])
    wait_for(
        lambda: ingest.metrics.value("binwatch_ingest_rejected_total", reason="unknown_bin") == 5,
        timeout=15,
        what="five unknown-bin dead letters",
    )
    runner = CliRunner()
    env = settings.as_env()
    counts = runner.invoke(app, ["deadletters", "counts"], env=env)
    assert counts.exit_code == 0 and "unknown_bin" in counts.output and "5" in counts.output

    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        session.add(
            Bin(
                id=newcomer,
                site_id="jiazhou-shuian",
                station="s9",
                stream="kitchen",
                capacity_l=240,
                threshold_pct=75,
            )
        )
        session.commit()
    engine.dispose()
    ingest.refresh_registry()

    replay = runner.invoke(app, ["deadletters", "replay", "--reason", "unknown_bin"], env=env)
    assert replay.exit_code == 0, replay.output
    assert "replayed 5" in replay.output
    wait_for(lambda: count_points(settings) == 5, timeout=15, what="the replayed readings")
    assert "no dead letters" in runner.invoke(app, ["deadletters", "counts"], env=env).output
