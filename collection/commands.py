"""`binwatch collector`: dispatch, verify, escalate and run the clock-driven rules until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime

import typer

from binwatch.errors import BinwatchError
from binwatch.influx import InfluxClient
from binwatch.settings import Settings
from binwatch.webhooks import WebhookSender
from collection.dispatch import Publisher
from collection.service import Collector
from devices.registry import make_engine

log = logging.getLogger(__name__)


def collector() -> None:
    """Dispatch collection requests, verify completions, escalate overdue ones (Ctrl-C stops)."""
    settings = Settings()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    engine = make_engine(settings.database_url)
    influx = InfluxClient(settings)
    webhooks = WebhookSender()
    publisher = Publisher(settings)
    try:
        publisher.start()
        service = Collector(
            settings, engine=engine, influx=influx, publisher=publisher, webhooks=webhooks
        )
        service.run(stop, lambda: datetime.now(UTC))
    except BinwatchError as exc:
        log.error("collector stopped: %s", exc)
        raise typer.Exit(1) from None
    finally:
        publisher.stop()
        webhooks.close()
        influx.close()
        engine.dispose()
