"""`binwatch collector`'s loop: everything about collection requests that is not a reading
arriving (ingest's hook) or a person acting (the API).

Each `tick(now)` dispatches open requests (MQTT, then the operator's webhook with retries),
verifies or disputes completed ones from the readings that followed, escalates overdue ones
along the grid, runs the kitchen daily clearing and the forecast, and copies new audit events
to InfluxDB. All of it is driven by the `now` it is given, so tests call `tick` with the moment
they want instead of sleeping; state lives in the database, so several collectors (or a
restarted one) do no harm: every change is a conditional UPDATE.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from binwatch.influx import InfluxClient
from binwatch.settings import Settings
from binwatch.ticker import Step, TickingService
from binwatch.webhooks import WebhookSender, retry_delay
from collection import rules, series, store
from collection.dispatch import Publisher, PublishFailed
from collection.lifecycle import COLLECTOR, Status, TransitionRefused
from collection.messages import Dispatch, Escalation
from collection.rules import Policy, Rule
from devices.contract import Topics
from devices.db import session_factory
from devices.models import AreaContact
from devices.registry import BinTags, bin_tags

log = logging.getLogger(__name__)

# The forecast reads the whole fleet's recent history: often enough for fill rates that change
# over hours, rare enough to cost InfluxDB little.
FORECAST_EVERY: Final = timedelta(minutes=10)
# Audit events copied to InfluxDB per write.
EXPORT_BATCH: Final = 1000


class Collector(TickingService):
    """One collector. `tick(now)` does one round of everything; `run(stop)` ticks until told."""

    name = "collector"

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        influx: InfluxClient,
        publisher: Publisher,
        webhooks: WebhookSender,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.policy = Policy.of(settings)
        self.sessions = session_factory(engine)
        self.influx = influx
        self.publisher = publisher
        self.webhooks = webhooks
        self.topics = Topics(settings.topic_prefix)
        self._kitchen_round: datetime | None = None
        self._next_forecast: datetime | None = None
        self._tags: dict[str, BinTags] = {}

    def steps(self) -> list[Step]:
        return [
            self.dispatch,
            self.deliver_webhooks,
            self.verify,
            self.escalate,
            self.kitchen_daily,
            self.forecast,
            self.export,
        ]

    # --- dispatch ------------------------------------------------------------------------------

    def dispatch(self, now: datetime) -> None:
        """Mark open requests dispatched, then publish every dispatched one not yet on the
        broker. Marking first means an operator that answers at once finds it dispatched."""
        with self.sessions() as session:
            for request in store.with_status(session, [Status.open]):
                try:
                    store.transition(
                        session, request.id, Status.dispatched, actor=COLLECTOR, now=now
                    )
                except TransitionRefused:
                    continue  # acknowledged or cancelled meanwhile: nothing to send
            for request in store.with_status(session, [Status.dispatched]):
                if request.published_at is not None:
                    continue
                body = Dispatch.of(request).model_dump_json().encode()
                try:
                    self.publisher.publish(self.topics.dispatch(request.operator_id), body)
                except PublishFailed as exc:
                    store.record_delivery(session, request, dispatch_error=f"MQTT: {exc}")
                    continue
                store.record_delivery(session, request, published_at=now)

    def deliver_webhooks(self, now: datetime) -> None:
        """POST each dispatched request to its operator's webhook, retrying with backoff until
        delivered or `collection_webhook_attempts` are spent; the request shows the outcome."""
        attempts = self.settings.collection_webhook_attempts
        with self.sessions() as session:
            waiting = store.with_status(session, [Status.dispatched, Status.acknowledged])
            for request in waiting:
                if request.webhook_delivered_at or request.webhook_attempts >= attempts:
                    continue
                if request.webhook_next_at is not None and request.webhook_next_at > now:
                    continue
                operator = store.operator(session, request.operator_id)
                if not operator.webhook_url:
                    continue
                body = Dispatch.of(request).model_dump_json().encode()
                outcome = self.webhooks.post(
                    operator.webhook_url,
                    body,
                    secret=operator.webhook_secret,
                    event="collection.dispatch",
                )
                tried = request.webhook_attempts + 1
                if outcome.delivered:
                    store.record_delivery(
                        session, request, webhook_attempts=tried, webhook_delivered_at=now
                    )
                    continue
                final = tried >= attempts or not outcome.retryable
                error = f"webhook: {outcome.error}"
                if final:
                    error = f"webhook: gave up after {tried} attempt(s): {outcome.error}"
                    log.warning("request %d: %s", request.id, error)
                store.record_delivery(
                    session,
                    request,
                    webhook_attempts=attempts if final else tried,
                    webhook_next_at=None if final else now + retry_delay(tried),
                    dispatch_error=error,
                )

    # --- verification and escalation -------------------------------------------------------

    def verify(self, now: datetime) -> None:
        """Completed requests become verified once a reading received after the completion
        shows the bin emptied, and disputed if the window closes without one."""
        with self.sessions() as session:
            for request in store.with_status(session, [Status.completed]):
                assert request.completed_at is not None
                window_end = min(now, request.completed_at + self.policy.verify_window)
                lowest = series.lowest_fill_after(
                    self.influx, request.bin_id, completed_at=request.completed_at, until=window_end
                )
                verdict = self.policy.verdict(
                    lowest_fill_after=lowest, completed_at=request.completed_at, now=now
                )
                if verdict is None:
                    continue
                seen = "no reading arrived" if lowest is None else f"lowest fill {lowest:.0f} %"
                note = (
                    f"{seen} within {self.policy.verify_window} after completion "
                    f"(emptied means ≤ {self.policy.emptied_pct:.0f} %)"
                )
                store.transition(
                    session,
                    request.id,
                    verdict,
                    actor=COLLECTOR,
                    now=now,
                    note=note,
                    completed_fill_pct=lowest,
                )

    def escalate(self, now: datetime) -> None:
        """Overdue requests climb the grid one level at a time, each level notified once."""
        with self.sessions() as session:
            for request in store.overdue(session, now):
                target = self.policy.escalation_level(due_at=request.due_at, now=now)
                for level in range(request.escalation_level + 1, target + 1):
                    area_id, contact = store.escalation_contact(session, request, level)
                    message = Escalation.of(request, level=level, area_id=area_id)
                    note = self._notify(message, contact)
                    if not store.escalate(
                        session, request, level=level, now=now, actor=COLLECTOR, note=note
                    ):
                        break

    def _notify(self, message: Escalation, contact: AreaContact | None) -> str:
        """Tell the area's contact; the returned note (what reached whom) goes into the audit."""
        who = "community" if message.level == 1 else "street squad"
        if contact is None or not (contact.mqtt_topic or contact.webhook_url):
            return f"level {message.level}: no contact configured for {who} {message.area_id}"
        body = message.model_dump_json().encode()
        told: list[str] = []
        if contact.mqtt_topic:
            try:
                self.publisher.publish(contact.mqtt_topic, body)
                told.append(f"published to {contact.mqtt_topic}")
            except PublishFailed as exc:
                told.append(f"MQTT failed: {exc}")
        if contact.webhook_url:
            outcome = self.webhooks.post(
                contact.webhook_url,
                body,
                secret=contact.webhook_secret,
                event="collection.escalation",
            )
            told.append("webhook delivered" if outcome.delivered else f"webhook {outcome.error}")
        return f"level {message.level}: {who} {message.area_id}: " + "; ".join(told)

    # --- rules that run on the clock -------------------------------------------------------

    def kitchen_daily(self, now: datetime) -> None:
        """Once per local day at `collection_kitchen_hour`: every kitchen bin that received
        deposits since the previous round and was not emptied since gets a request. A collector
        started late runs the latest round it missed, once (the database remembers)."""
        round_at = rules.last_local_hour(
            now, hour=self.settings.collection_kitchen_hour, timezone=self.settings.timezone
        )
        if round_at == self._kitchen_round:
            return
        deposits = series.last_kitchen_deposits(
            self.influx, since=round_at - timedelta(days=1), until=round_at
        )
        with self.sessions() as session:
            done = store.kitchen_requested_since(session, round_at)
            emptied = store.last_emptied(session)
            for bin_id in store.kitchen_bins(session):
                if bin_id in done or not rules.kitchen_needs_clearing(
                    last_deposit_at=deposits.get(bin_id),
                    last_emptied_at=emptied.get(bin_id),
                    round_at=round_at,
                ):
                    continue
                reason = "kitchen waste is cleared daily (日产日清)"
                self._open(session, now, bin_id, Rule.kitchen_daily, reason)
        self._kitchen_round = round_at

    def forecast(self, now: datetime) -> None:
        """Bins whose fill rate says they will be full before the operators' next working day
        get their request now."""
        if self._next_forecast is not None and now < self._next_forecast:
            return
        fills = series.recent_fill(self.influx, now)
        with self.sessions() as session:
            for bin_id, points in fills.items():
                full = rules.forecast_fires(
                    points,
                    now=now,
                    work_start_hour=self.settings.collection_work_start_hour,
                    timezone=self.settings.timezone,
                )
                if full is not None:
                    reason = f"forecast full at {full.isoformat(timespec='minutes')}"
                    self._open(session, now, bin_id, Rule.forecast, reason, points[-1].fill_pct)
        self._next_forecast = now + FORECAST_EVERY

    def _open(
        self,
        session: Session,
        now: datetime,
        bin_id: str,
        rule: Rule,
        reason: str,
        fill: float | None = None,
    ) -> None:
        opened = store.open_request(
            session,
            bin_id=bin_id,
            rule=rule,
            reason=reason,
            now=now,
            policy=self.policy,
            actor=COLLECTOR,
            fill_pct=fill,
        )
        if opened.created:
            log.info("request %d for %s (%s)", opened.request.id, bin_id, rule.value)

    # --- InfluxDB --------------------------------------------------------------------------

    def export(self, _now: datetime) -> None:
        """Copy audit events InfluxDB does not have yet (an outbox: nothing is lost while it is
        down, and a copy made twice lands on the same point)."""
        with self.sessions() as session:
            while events := store.unexported_events(session, EXPORT_BATCH):
                if not self._tags or any(e.request.bin_id not in self._tags for e in events):
                    self._tags = bin_tags(session)
                lines = [
                    series.event_point(e, e.request, self._tags.get(e.request.bin_id))
                    for e in events
                ]
                self.influx.write(lines)
                store.mark_exported(session, events)
