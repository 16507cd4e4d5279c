"""The alert rules on what ingest stored, run as ingest's `on_arrivals` hook: events raise their
alert, statuses say online or offline, readings go through the reading rules with what the
registry remembers of their bin (`bin_health`), and every arrival proves its bin alive.

Idempotent, as ingest needs (it retries the hook while it raises, and a redelivered batch runs it
again): a live alert is raised once by the partial unique index, a reading no newer than the
bin's last one changes no memory (but the open seq gap it fills), and clearing is a conditional
UPDATE. Several workers may hold readings of one bin at once: each batch locks its bins'
memories (`store.health`), so they are judged one batch after the other, never from the same
memory twice."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from alerts import rules, store
from core.settings import Settings
from core.sql import database_engine, session_factory
from devices.arrivals import Arrival
from devices.contract import Event, Reading, Status

log = logging.getLogger(__name__)


class AlertHook:
    """Callable as ingest's `on_arrivals`; `close()` releases its database engine."""

    def __init__(self, settings: Settings) -> None:
        self._engine = database_engine(settings)
        self._sessions = session_factory(self._engine)
        self._limits = settings.alert
        self._prefix = settings.topic_prefix
        self._timezone = settings.timezone

    def close(self) -> None:
        self._engine.dispose()

    def __call__(self, arrivals: list[Arrival]) -> None:
        # One pass over the batch: each bin's readings with when they arrived, its events and
        # statuses, and when it was last heard. Times stay epoch floats until a change needs a
        # datetime (most batches change nothing but each bin's memory).
        readings_of: dict[str, list[tuple[Reading, float, bool]]] = {}
        others_of: dict[str, list[Arrival]] = {}
        seen_of: dict[str, float] = {}
        for arrival in arrivals:
            bin_id, message, received, buffered = arrival
            if seen_of.get(bin_id, -1.0) < received:
                seen_of[bin_id] = received
            if type(message) is Reading:
                got = readings_of.get(bin_id)
                if got is None:
                    readings_of[bin_id] = [(message, received, buffered)]
                else:
                    got.append((message, received, buffered))
            else:
                others_of.setdefault(bin_id, []).append(arrival)
        judged_at = datetime.now(UTC)
        with self._sessions() as session:
            remembered = store.health(session, seen_of)
            if len(remembered) < len(seen_of):
                # Bins heard of the first time: their rows made (and committed, which lets go
                # of the locks just taken), then all locked again, none missing now.
                store.first_heard(session, seen_of.keys() - remembered.keys())
                session.commit()
                remembered = store.health(session, seen_of)
            live = store.live_alerts(session, seen_of)
            live_kinds: dict[str, set[str]] = {}
            for bin_id, kind in live:
                live_kinds.setdefault(bin_id, set()).add(kind)
            after: dict[str, tuple[rules.Memory, datetime]] = {}
            refreshed: dict[store.LiveAlert, datetime] = {}
            raising: dict[tuple[str, rules.AlertType], store.Raise] = {}
            for bin_id, seen in seen_of.items():
                known = remembered.get(bin_id)
                memory = known.memory if known is not None else rules.Memory()
                # (finding, when its message arrived), in the order the rules see them.
                findings: list[tuple[rules.Finding, float]] = []
                arrived = readings_of.get(bin_id)
                if arrived:
                    arrived.sort(key=_ts_of)
                    found, memory = rules.on_readings(
                        [reading for reading, _, _ in arrived],
                        memory,
                        self._limits,
                        received_at=_at(arrived[-1][1]),
                        live=live_kinds.get(bin_id, ()),
                        buffered=arrived[-1][2],
                        judged_at=judged_at,
                    )
                    findings = [(finding, arrived[index][1]) for index, finding in found]
                for arrival in others_of.get(bin_id, ()):
                    if isinstance(arrival.message, Event):
                        findings.append(
                            (rules.on_event(arrival.message, self._timezone), arrival.received_at)
                        )
                    elif isinstance(arrival.message, Status):
                        findings.append((rules.on_status(arrival.message), arrival.received_at))
                after[bin_id] = (memory, _at(seen))
                for finding, received in findings:
                    # Most findings confirm what is already so (a live alert still holding):
                    # settled here without a query per reading.
                    key = (bin_id, finding.kind)
                    current = live.get(key)
                    at = _at(received)
                    if current is None and key in raising:
                        if finding.present:
                            raising[key] = raising[key]._replace(
                                last_seen_at=max(at, raising[key].last_seen_at)
                            )
                            continue
                        # Raised and over in one batch: raised first, as it happened.
                        self._raised(session, [raising.pop(key)], live)
                        current = live.get(key)
                    if not finding.present and current is None:
                        continue
                    if finding.present and current is not None:
                        if at > refreshed.get(current, current.last_seen_at):
                            refreshed[current] = at
                        continue
                    if finding.present:
                        # New alerts are raised together after the batch's other findings.
                        raising[key] = store.Raise(bin_id, finding, at, at)
                        continue
                    changed = store.apply(session, bin_id, finding, now=at, prefix=self._prefix)
                    if changed is not None:
                        live.pop(key, None)
                        log.info("alert %s cleared at %s: %s", finding.kind, bin_id, finding.detail)
            self._raised(session, list(raising.values()), live)
            store.remember(session, remembered, after)
            store.refresh_seen(session, refreshed)
            session.commit()

    def _raised(
        self,
        session: Session,
        raises: list[store.Raise],
        live: dict[tuple[str, str], store.LiveAlert],
    ) -> None:
        """Raise these new alerts together; those raised join `live`."""
        for alert in store.raise_alerts(session, raises, prefix=self._prefix):
            live[(alert.bin_id, alert.type)] = store.as_live(alert)
            log.info("alert %s raised at %s: %s", alert.type, alert.bin_id, alert.detail)


def _ts_of(item: tuple[Reading, float, bool]) -> datetime:
    return item[0].ts


def _at(received: float) -> datetime:
    return datetime.fromtimestamp(received, tz=UTC)
