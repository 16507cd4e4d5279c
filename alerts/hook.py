"""The alert rules on what ingest stored, run as ingest's `on_arrivals` hook: events raise their
alert, statuses say online or offline, readings go through the reading rules with what the
registry remembers of their bin (`bin_health`), and every arrival proves its bin alive.

Idempotent, as ingest needs (it retries the hook while it raises, and a redelivered batch runs it
again): a live alert is raised once by the partial unique index, a reading no newer than the
bin's last one changes no memory, and clearing is a conditional UPDATE."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime

from alerts import rules, store
from binwatch.settings import Settings
from devices.contract import Event, Reading, Status
from devices.db import session_factory
from devices.registry import make_engine
from ingest.service import Arrival

log = logging.getLogger(__name__)


class AlertHook:
    """Callable as ingest's `on_arrivals`; `close()` releases its database engine."""

    def __init__(self, settings: Settings) -> None:
        self._engine = make_engine(settings.database_url)
        self._sessions = session_factory(self._engine)
        self._limits = rules.Limits.of(settings)
        self._prefix = settings.topic_prefix

    def close(self) -> None:
        self._engine.dispose()

    def __call__(self, arrivals: list[Arrival]) -> None:
        by_bin: dict[str, list[Arrival]] = defaultdict(list)
        for arrival in arrivals:
            by_bin[arrival.bin_id].append(arrival)
        with self._sessions() as session:
            remembered = store.health(session, by_bin)
            live = store.live_alerts(session, by_bin)
            for bin_id, arrived in by_bin.items():
                row = remembered.get(bin_id)
                memory = store.memory_of(row)
                seen = _at(max(arrived, key=lambda arrival: arrival.received_at))
                findings: list[tuple[rules.Finding, datetime]] = []
                readings = sorted(
                    (a for a in arrived if isinstance(a.message, Reading)),
                    key=lambda a: a.message.ts,
                )
                for index, arrival in enumerate(readings):
                    assert isinstance(arrival.message, Reading)
                    at = _at(arrival)
                    found, memory = rules.on_reading(
                        arrival.message,
                        memory,
                        self._limits,
                        received_at=at,
                        newest=index == len(readings) - 1,
                    )
                    findings += [(finding, at) for finding in found]
                for arrival in arrived:
                    if isinstance(arrival.message, Event):
                        findings.append((rules.on_event(arrival.message), _at(arrival)))
                    elif isinstance(arrival.message, Status):
                        findings.append((rules.on_status(arrival.message), _at(arrival)))
                store.remember(session, bin_id, row, memory, seen)
                for finding, at in findings:
                    # Most findings confirm what is already so (a live alert still holding, a
                    # healthy bin still healthy): settled here without a query per reading.
                    current = live.get((bin_id, finding.kind.value))
                    if not finding.present and current is None:
                        continue
                    if finding.present and current is not None:
                        if at > current.last_seen_at:
                            current.last_seen_at = at
                        continue
                    changed = store.apply(session, bin_id, finding, now=at, prefix=self._prefix)
                    if changed is not None:
                        if changed.state in store.LIVE_STATES:
                            live[(bin_id, changed.type)] = changed
                        else:
                            live.pop((bin_id, changed.type), None)
                        log.info(
                            "alert %s %s at %s: %s",
                            finding.kind,
                            changed.state,
                            bin_id,
                            finding.detail,
                        )
            session.commit()


def _at(arrival: Arrival) -> datetime:
    return datetime.fromtimestamp(arrival.received_at, tz=UTC)
