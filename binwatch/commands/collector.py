"""`binwatch collector`: dispatch, verify, escalate and run the clock-driven rules until stopped."""

from __future__ import annotations

from collections.abc import Callable

from collection.service import Collector
from core.publisher import Publisher
from core.ticker import Resources, serve
from devices.notifications import Notifier


def collector() -> None:
    """Dispatch collection requests, verify completions, escalate overdue ones (Ctrl-C stops)."""
    serve("collector", build_collector, metrics_port=lambda s: s.collector_metrics_port)


def build_collector(resources: Resources) -> tuple[Collector, Callable[[], None]]:
    """A collector on `resources`, and what to close besides them (its MQTT publisher)."""
    publisher = Publisher(resources.settings)
    publisher.start()
    collector = Collector(
        resources.settings,
        engine=resources.engine,
        influx=resources.influx,
        publisher=publisher,
        webhooks=resources.webhooks,
        notifier=Notifier(
            resources.settings,
            resources.webhooks,
            attempts=resources.settings.collection.webhook_attempts,
        ),
    )
    return collector, publisher.stop
