"""`binwatch alerter`: watch for silent bins, clear alerts whose condition ended, deliver
notices and copy the history to InfluxDB until stopped. (The rules on arriving messages run
inside `binwatch ingest`.)"""

from __future__ import annotations

from collections.abc import Callable

from alerts.delivery import Deliverer
from alerts.service import Alerter
from core.publisher import Publisher
from core.ticker import Resources, serve
from devices.notifications import Notifier


def alerter() -> None:
    """Raise offline alerts, clear ended ones and deliver every notice (Ctrl-C stops)."""
    serve("alerter", build_alerter, metrics_port=lambda s: s.alerter_metrics_port)


def build_alerter(resources: Resources) -> tuple[Alerter, Callable[[], None]]:
    """An alerter on `resources`, and what to close besides them (its MQTT publisher)."""
    # collection's QoS 1 publisher that waits for the PUBACK: the same need, the same code.
    publisher = Publisher(resources.settings)
    publisher.start()
    resources.influx.ensure_database(resources.settings.raw_retention)
    deliverer = Deliverer(
        publisher=publisher,
        webhooks=resources.webhooks,
        attempts=resources.settings.alert.webhook_attempts,
    )
    notifier = Notifier(
        resources.settings, resources.webhooks, attempts=resources.settings.alert.webhook_attempts
    )
    alerter = Alerter(
        resources.settings,
        engine=resources.engine,
        influx=resources.influx,
        deliverer=deliverer,
        notifier=notifier,
    )
    return alerter, publisher.stop
