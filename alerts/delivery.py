"""Delivering queued alert notices (`alert_deliveries`, filled when an alert is raised or
cleared): QoS 1 on the site's alert topic and any contact's topic, and signed webhooks with
retries (core/webhooks.py) to the manager, the operator and the grid's contacts.

Webhook attempts run in their receiver's lane (core/webhook_lanes.py), off the alerter's
tick. A row is marked done once delivered (or given up on), in the same transaction that
recorded the attempt, so each notice reaches each recipient once per channel however often the
alerter ticks. If the alerter dies between a PUBACK and its commit the notice goes out again:
recipients key on `alert_id` + `notice`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from alerts import store
from alerts.messages import AlertNotice
from alerts.models import Alert, AlertDelivery
from core.errors import BinwatchError
from core.webhook_lanes import WebhookLanes
from core.webhooks import Outcome, record_attempt

log = logging.getLogger(__name__)


class Publishing(Protocol):
    """What delivery needs of MQTT: publish with QoS 1 and wait for the PUBACK, or raise."""

    def publish(self, topic: str, payload: bytes) -> None: ...


class Deliverer:
    """One notice at a time: MQTT at once, webhooks queued in their receiver's lane."""

    def __init__(self, *, publisher: Publishing, webhooks: WebhookLanes, attempts: int) -> None:
        self.publisher = publisher
        self.webhooks = webhooks
        self.attempts = attempts

    @staticmethod
    def key(delivery_id: int) -> tuple[str, int]:
        """The lanes' key of a notice's webhook: busy while an attempt is queued or in flight."""
        return ("alert", delivery_id)

    def deliver(
        self,
        session: Session,
        delivery: AlertDelivery,
        now: datetime,
        webhook_done: Callable[[Outcome], None],
    ) -> None:
        """Publish an MQTT notice and commit the outcome, or queue a webhook attempt whose
        outcome goes to `webhook_done` (which records it with `record`). A recipient without a
        webhook secret waits: the notice says so and nothing is POSTed unsigned."""
        alert = session.get_one(Alert, delivery.alert_id)
        body = (
            AlertNotice.of(alert, notice=delivery.notice, recipient=delivery.recipient)
            .model_dump_json()
            .encode()
        )
        if delivery.channel == "mqtt":
            error, retryable = self._publish(delivery.target, body)
            self.record(delivery, now, error, retryable)
            session.commit()
            return
        secret = store.webhook_secret(session, delivery)
        if not secret:
            waits = (
                f"waits: {delivery.recipient} {delivery.recipient_id} has no webhook secret yet, "
                "and webhooks are never sent unsigned"
            )
            if delivery.error != waits:
                delivery.error = waits
                session.commit()
            return
        self.webhooks.submit(
            self.key(delivery.id),
            delivery.target,
            body,
            secret=secret,
            event=f"alert.{delivery.notice}",
            done=webhook_done,
        )

    def _publish(self, topic: str, body: bytes) -> tuple[str | None, bool]:
        try:
            self.publisher.publish(topic, body)
        except BinwatchError as exc:
            return f"MQTT: {exc}", True
        return None, False

    def record(
        self, delivery: AlertDelivery, now: datetime, error: str | None, retryable: bool
    ) -> None:
        """One attempt's outcome on the notice; the caller commits."""
        if record_attempt(delivery, now, error, retryable, limit=self.attempts):
            log.warning(
                "alert %d %s to %s gave up after %d attempt(s): %s",
                delivery.alert_id,
                delivery.notice,
                delivery.recipient,
                delivery.attempts,
                error,
            )
