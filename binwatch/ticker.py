"""The loop the background services run (`binwatch collector`, `binwatch alerter`), and their
start-up: one implementation, so both behave alike under failure.

Every `TICK_S` each service's steps run in order against a clock passed in (tests call
`tick(now)` with the time they choose, never sleeping). A step that raises is logged, counted and
tried again on the next tick, so one unavailable dependency (InfluxDB down, say) never stops the
others."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import typer
from sqlalchemy import Engine

from binwatch.errors import BinwatchError
from binwatch.influx import InfluxClient
from binwatch.settings import Settings
from binwatch.webhooks import WebhookSender
from devices.registry import make_engine

log = logging.getLogger(__name__)

# Dispatches, deliveries and clearing are due within seconds; five keeps the registry cool.
TICK_S: Final = 5.0

Step = Callable[[datetime], None]


class TickingService:
    """A service made of steps; subclasses say which, in `steps()`."""

    name = "service"

    def __init__(self) -> None:
        self.failures = 0  # steps that raised: logged, retried next tick; tests expect none

    def steps(self) -> list[Step]:
        raise NotImplementedError

    def run(self, stop: threading.Event, clock: Callable[[], datetime]) -> None:
        while not stop.is_set():
            self.tick(clock())
            stop.wait(TICK_S)

    def tick(self, now: datetime) -> None:
        for step in self.steps():
            try:
                step(now)
            except Exception:
                self.failures += 1
                log.exception("%s step %s failed; retrying next tick", self.name, step.__name__)


class Resources:
    """What a service needs from the outside, opened once and closed on the way out."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: Engine = make_engine(settings.database_url, settings)
        self.influx = InfluxClient(settings)
        self.webhooks = WebhookSender()

    def close(self) -> None:
        self.webhooks.close()
        self.influx.close()
        self.engine.dispose()


def serve(
    name: str, build: Callable[[Resources], tuple[TickingService, Callable[[], None]]]
) -> None:
    """Run the service `build` makes until SIGINT/SIGTERM; `build` also returns what to close
    besides the shared resources. A BinwatchError stops it with exit code 1 and its message."""
    settings = Settings()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    resources = Resources(settings)
    close_own: Callable[[], None] = lambda: None  # noqa: E731
    try:
        service, close_own = build(resources)
        service.run(stop, lambda: datetime.now(UTC))
    except BinwatchError as exc:
        log.error("%s stopped: %s", name, exc)
        raise typer.Exit(1) from None
    finally:
        close_own()
        resources.close()
