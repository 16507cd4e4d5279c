"""`binwatch alerter`'s loop: everything about alerts that is not a message arriving (ingest's
hook) or a person acknowledging (the API).

Each `tick(now)` raises `offline` for bins in service silent for N reporting intervals,
`full_too_long` for bins full past the limit with no reading to say so and `seq_gap` for bins
whose skipped readings did not come within their grace (however quiet the bin since), clears
the `offline` alerts of bins since retired (devices/retirement.py), clears held alerts
(events, seq gaps) not seen again for their hold time, delivers queued notices (MQTT, then
webhooks with retries, then robots and e-mail to people) and copies the history to InfluxDB.
Driven by the `now` it is given, so
tests call `tick` with the moment they want; state lives in the database, so a restarted (or a
second) alerter does no harm. Each bin, alert and notice is handled on its own
(`TickingService.item`): one that fails is logged and counted, the others go on.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from typing import Final

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from alerts import rules, store, texts
from alerts.delivery import Deliverer
from alerts.models import AlertDelivery, AlertEvent
from core.influx import InfluxClient
from core.lineprotocol import point, tag_set
from core.reasons import Reason
from core.settings import Settings
from core.sql import session_factory
from core.ticker import Step, TickingService
from core.times import epoch_ms
from core.webhooks import Outcome
from devices.notifications import Notifier
from devices.registry import BinTags, bin_tags

log = logging.getLogger(__name__)

# History rows copied to InfluxDB per write.
EXPORT_BATCH: Final = 1000
# Why a retired bin's offline alert cleared.
RETIRED: Final = Reason("alert.bin_retired")


class Alerter(TickingService):
    """One alerter. `tick(now)` does one round of everything; `run(stop)` ticks until told."""

    name = "alerter"

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        influx: InfluxClient,
        deliverer: Deliverer,
        notifier: Notifier,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.limits = settings.alert
        self.sessions = session_factory(engine)
        self.influx = influx
        self.deliverer = deliverer
        self.notifier = notifier
        self._tags: dict[str, BinTags] = {}

    def steps(self) -> list[Step]:
        return [self.watch, self.deliver, self.notify, self.export]

    def watch(self, now: datetime) -> None:
        """The conditions only the clock can tell: silence, full for too long, readings lost,
        hold expiry."""
        prefix = self.settings.topic_prefix
        with self.sessions() as session:
            for row in store.silent_bins(session, now - self.limits.silent_for):
                with self.item("watch", f"bin {row.bin_id}", session):
                    assert row.last_seen_at is not None
                    silent_s = (now - row.last_seen_at).total_seconds()
                    silence = Reason("alert.silent", {"seconds": silent_s})
                    finding = rules.Finding(rules.AlertType.offline, True, silence)
                    if store.live_alert(session, row.bin_id, finding.kind) is None:
                        store.raise_alert(session, row.bin_id, finding, now=now, prefix=prefix)
                    session.commit()
            for row in store.full_since_before(session, now - self.limits.full_for):
                with self.item("watch", f"bin {row.bin_id}", session):
                    assert row.full_since is not None
                    finding = rules.full_too_long(row.full_since, now)
                    if store.live_alert(session, row.bin_id, finding.kind) is None:
                        store.raise_alert(session, row.bin_id, finding, now=now, prefix=prefix)
                    session.commit()
            for bin_id in store.gaps_open_since(session, now - self.limits.gap_grace):
                with self.item("watch", f"bin {bin_id}", session):
                    self._gap(session, bin_id, now)
                    session.commit()
            for alert in store.live_at_retired_bins(session, rules.AlertType.offline):
                with self.item("watch", f"alert {alert.id}", session):
                    # Nobody expects a retired bin to report: its silence is no longer news.
                    store.clear(session, alert, now=now, note=RETIRED, prefix=prefix)
                    session.commit()
            for alert in store.live(session, rules.HELD):
                with self.item("watch", f"alert {alert.id}", session):
                    kind = rules.AlertType(alert.type)
                    if rules.hold_expired(kind, alert.last_seen_at, now, self.limits):
                        unseen = Reason.of("alert.unseen", hold=rules.hold(self.limits, kind))
                        store.clear(session, alert, now=now, note=unseen, prefix=prefix)
                    session.commit()

    def _gap(self, session: Session, bin_id: str, now: datetime) -> None:
        """Raise the bin's gap if still open past its grace, and forget it (the bin's memory is
        locked meanwhile: a worker filling the gap waits, or has filled it already)."""
        known = store.health(session, [bin_id]).get(bin_id)
        if known is None:
            return
        finding, memory = rules.gap_lost(known.memory, now, self.limits)
        if finding is None:
            return
        store.raise_alert(session, bin_id, finding, now=now, prefix=self.settings.topic_prefix)
        store.remember_gap(session, bin_id, memory)
        log.info("alert %s at %s: %s", finding.kind, bin_id, finding.detail)

    def deliver(self, now: datetime) -> None:
        """Every due notice once: MQTT now, webhooks queued in their receiver's lane."""
        with self.sessions() as session:
            for delivery in store.due_deliveries(session, now):
                if self.deliverer.webhooks.busy(self.deliverer.key(delivery.id)):
                    continue
                with self.item("deliver", f"notice {delivery.id}", session):
                    done = partial(self._webhook_done, delivery.id, now)
                    self.deliverer.deliver(session, delivery, now, done)

    def _webhook_done(self, delivery_id: int, now: datetime, outcome: Outcome) -> None:
        """Record a webhook attempt (in its lane's thread)."""
        with self.item("deliver", f"notice {delivery_id}"), self.sessions() as session:
            delivery = session.get_one(AlertDelivery, delivery_id)
            self.deliverer.record(delivery, now, outcome.error, outcome.retryable)
            session.commit()

    def notify(self, now: datetime) -> None:
        """Every due notification to people (robots, e-mail), in its channel's language."""
        render = partial(texts.render, timezone=self.settings.timezone)
        self.notifier.deliver(self, self.sessions, now, source="alert", render=render)

    def export(self, _now: datetime) -> None:
        """Copy history rows InfluxDB does not have yet (an outbox: nothing is lost while it is
        down, and a copy made twice lands on the same point)."""
        with self.sessions() as session:
            while events := store.unexported(session, EXPORT_BATCH):
                if any(e.alert is None or e.alert.bin_id not in self._tags for e in events):
                    self._tags = bin_tags(session)
                made: list[tuple[AlertEvent, str]] = []
                for event in events:
                    with self.item("export", f"alert event {event.id}"):
                        made.append((event, self._point(event)))
                if made:
                    self.influx.write([line for _e, line in made])
                for event, _line in made:
                    event.exported = True
                session.commit()
                if len(made) < len(events):
                    return  # the bad one would come first again: the next tick retries

    def _point(self, event: AlertEvent) -> str:
        """Measurement `alerts`: one point per lifecycle change, tagged like the bin's readings
        plus the alert's type, severity and the state it entered. The state is a tag, so each
        state is a series of its own and InfluxQL cannot take an alert's latest one: the field
        `live` (1 raised or acknowledged, 0 cleared) can, and since a bin has at most one live
        alert per type, the latest `live` per bin and type says whether one is live now."""
        alert = event.alert
        known = self._tags.get(alert.bin_id)
        # The bin and the site the alert was raised at, the rest of the grid as it is now.
        tags = (known.as_tags() if known is not None else {}) | {
            "bin": alert.bin_id,
            "site": alert.site_id,
        }
        state = {"raised": "active"}.get(event.kind, event.kind)
        tags |= {"type": alert.type, "severity": alert.severity, "state": state}
        duration = alert.duration_s if event.kind == "cleared" else None
        fields = {
            "alert_id": alert.id,
            "duration_s": duration,
            "actor": event.actor,
            "live": int(event.kind != "cleared"),
        }
        return point("alerts", tag_set(tags), fields, epoch_ms(event.at))
