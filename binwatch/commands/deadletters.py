"""`binwatch deadletters`: see what ingest could not store, and replay it once the cause is fixed
(a bin registered late, a field-type conflict resolved). Replayed messages go through ingest again,
so one that is still wrong comes back as a new dead letter with its reason, never silently lost."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.orm import Session

from binwatch.output import PlainTable, console, fail
from core.influx import InfluxClient
from core.mqtt import make_client
from core.settings import Settings
from core.sql import database_engine
from devices.models import DeadLetter
from devices.registry import dead_letter_counts, delete_dead_letters, list_dead_letters
from ingest.decode import REASONS

deadletters_app = typer.Typer(
    help="List, count and replay what ingest could not store.", no_args_is_help=True
)


def _known_reason(reason: str | None) -> str | None:
    """A reason ingest gives: a misspelt one listed (and replayed) nothing, as if there were no
    such letters."""
    if reason is not None and reason not in REASONS:
        raise typer.BadParameter(f"{reason!r} is not a reason; the reasons: {', '.join(REASONS)}")
    return reason


# A replayed message waits this long for the broker's PUBACK before the replay is called failed.
PUBLISH_TIMEOUT_S = 10.0


@deadletters_app.command("counts")
def counts() -> None:
    """How many readings (or messages) were dead-lettered, by reason: those whose letters are
    still kept, and those whose letters were pruned (past the retention or the cap per bin)."""
    engine = database_engine(Settings())
    with Session(engine) as session:
        by_reason = dead_letter_counts(session)
    table = PlainTable("reason", "count", "kept", "pruned")
    for reason, count in sorted(by_reason.items(), key=lambda item: -item[1].kept - item[1].pruned):
        table.add_row(reason, str(count.kept + count.pruned), str(count.kept), str(count.pruned))
    console().print(table if by_reason else "no dead letters")


@deadletters_app.command("list")
def list_command(
    reason: Annotated[
        str | None, typer.Option(help="only this reason", callback=_known_reason)
    ] = None,
    bin_id: Annotated[str | None, typer.Option("--bin", help="only this bin's")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
) -> None:
    """The newest dead letters, with topic, reason and detail."""
    engine = database_engine(Settings())
    with Session(engine) as session:
        letters = list_dead_letters(session, reason=reason, limit=limit, bin_id=bin_id)
    table = PlainTable("id", "received", "topic", "reason", "readings", "detail", "bytes")
    for letter in letters:
        table.add_row(
            str(letter.id),
            letter.received_at.isoformat(timespec="seconds"),
            letter.topic,
            letter.reason,
            str(letter.parts),
            letter.detail[:120],
            str(letter.payload_size),
        )
    console().print(table)


@deadletters_app.command("replay")
def replay(
    reason: Annotated[
        str, typer.Option(help="replay the dead letters of this reason", callback=_known_reason)
    ],
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
) -> None:
    """Send dead letters through again: MQTT messages to their topic, refused points to InfluxDB."""
    settings = Settings()
    engine = database_engine(settings)
    with Session(engine) as session:
        letters = list_dead_letters(session, reason=reason, limit=limit)
        whole = [letter for letter in letters if len(letter.payload) == letter.payload_size]
        skipped = len(letters) - len(whole)
        if reason == "rejected_by_influxdb":
            _rewrite_points(settings, whole)
        else:
            _republish(settings, whole)
        delete_dead_letters(session, [letter.id for letter in whole])
    console().print(f"replayed {len(whole)} dead letters of reason {reason}")
    if skipped:
        console().print(
            f"[yellow]{skipped} were kept: their payload was cut short when stored[/yellow]"
        )


def _republish(settings: Settings, letters: list[DeadLetter]) -> None:
    connection = make_client(settings, "binwatch-replay", persistent=False)
    connection.start()
    try:
        if not connection.wait_connected(PUBLISH_TIMEOUT_S):
            fail(f"could not reach the broker at {settings.mqtt_url}; nothing replayed")
        infos = [
            connection.client.publish(letter.topic, letter.payload, qos=1) for letter in letters
        ]
        for info in infos:
            info.wait_for_publish(PUBLISH_TIMEOUT_S)
            if not info.is_published():
                fail("the broker did not acknowledge a replayed message; nothing deleted")
    finally:
        connection.stop()


def _rewrite_points(settings: Settings, letters: list[DeadLetter]) -> None:
    influx = InfluxClient(settings)
    try:
        influx.write([letter.payload.decode() for letter in letters])
    finally:
        influx.close()
