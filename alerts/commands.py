"""`binwatch alerter`: watch for silent bins, clear alerts whose condition ended, deliver
notices and copy the history to InfluxDB until stopped. (The rules on arriving messages run
inside `binwatch ingest`.)"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime

import typer

from alerts.delivery import Deliverer
from alerts.service import Alerter
from binwatch.errors import BinwatchError
from binwatch.influx import InfluxClient
from binwatch.settings import Settings
from binwatch.webhooks import WebhookSender
from collection.dispatch import Publisher
from devices.registry import make_engine

log = logging.getLogger(__name__)


def alerter() -> None:
    """Raise offline alerts, clear ended ones and deliver every notice (Ctrl-C stops)."""
    settings = Settings()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    engine = make_engine(settings.database_url)
    influx = InfluxClient(settings)
    webhooks = WebhookSender()
    # collection's QoS 1 publisher that waits for the PUBACK: the same need, the same code.
    publisher = Publisher(settings)
    try:
        publisher.start()
        influx.ensure_database(settings.raw_retention)
        deliverer = Deliverer(
            publisher=publisher, webhooks=webhooks, attempts=settings.alert_webhook_attempts
        )
        Alerter(settings, engine=engine, influx=influx, deliverer=deliverer).run(
            stop, lambda: datetime.now(UTC)
        )
    except BinwatchError as exc:
        log.error("alerter stopped: %s", exc)
        raise typer.Exit(1) from None
    finally:
        publisher.stop()
        webhooks.close()
        influx.close()
        engine.dispose()
