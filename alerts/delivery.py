"""Delivering queued alert notices (`alert_deliveries`, filled when an alert is raised or
cleared): QoS 1 on the site's alert topic and any contact's topic, and signed webhooks with
retries (binwatch/webhooks.py) to the manager, the operator and the grid's contacts.

A row is marked done once delivered (or given up on), in the same transaction that recorded the
attempt, so each notice reaches each recipient once per channel however often the alerter
ticks. If the alerter dies between a PUBACK and its commit the notice goes out again: recipients
key on `alert_id` + `notice`."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from alerts import store
from alerts.messages import AlertNotice
from binwatch.errors import BinwatchError
from binwatch.webhooks import WebhookSender, retry_delay
from devices.alerts_models import Alert, AlertDelivery

log = logging.getLogger(__name__)


class Publishing(Protocol):
    """What delivery needs of MQTT: publish with QoS 1 and wait for the PUBACK, or raise."""

    def publish(self, topic: str, payload: bytes) -> None: ...


class Deliverer:
    def __init__(self, *, publisher: Publishing, webhooks: WebhookSender, attempts: int) -> None:
        self.publisher = publisher
        self.webhooks = webhooks
        self.attempts = attempts

    def deliver(self, session: Session, now: datetime) -> None:
        """Try every due notice once; each outcome is committed before the next is tried."""
        for delivery in store.due_deliveries(session, now):
            alert = session.get_one(Alert, delivery.alert_id)
            body = (
                AlertNotice.of(alert, notice=delivery.notice, recipient=delivery.recipient)
                .model_dump_json()
                .encode()
            )
            if delivery.channel == "mqtt":
                error, retryable = self._publish(delivery.target, body)
            else:
                outcome = self.webhooks.post(
                    delivery.target,
                    body,
                    secret=store.webhook_secret(session, delivery),
                    event=f"alert.{delivery.notice}",
                )
                error, retryable = outcome.error, outcome.retryable
            self._record(delivery, now, error, retryable)
            session.commit()

    def _publish(self, topic: str, body: bytes) -> tuple[str | None, bool]:
        try:
            self.publisher.publish(topic, body)
        except BinwatchError as exc:
            return f"MQTT: {exc}", True
        return None, False

    def _record(
        self, delivery: AlertDelivery, now: datetime, error: str | None, retryable: bool
    ) -> None:
        delivery.attempts += 1
        if error is None:
            delivery.delivered_at, delivery.done, delivery.error = now, True, None
            return
        final = not retryable or delivery.attempts >= self.attempts
        delivery.error = error
        delivery.done = final
        delivery.next_at = None if final else now + retry_delay(delivery.attempts)
        if final:
            log.warning(
                "alert %d %s to %s gave up after %d attempt(s): %s",
                delivery.alert_id,
                delivery.notice,
                delivery.recipient,
                delivery.attempts,
                error,
            )
