"""The loop the background services run (`binwatch collector`, `binwatch alerter`), and their
start-up: one implementation, so both behave alike under failure.

Every `TICK_S` each service's steps run in order against a clock passed in (tests call
`tick(now)` with the time they choose, never sleeping). A step that raises is logged, counted and
tried again on the next tick, so one unavailable dependency (InfluxDB down, say) never stops the
others; inside a step each item (a request, a bin, an alert notice) is handled under `item()`,
so one bad item is logged with its id and counted, and the others go on. Both counts are on the
service's Prometheus `/metrics` (`binwatch_<service>_step_failures_total` and
`binwatch_<service>_item_failures_total`, by `step`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Final

import typer
from prometheus_client import CollectorRegistry, Counter, start_http_server
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.errors import BinwatchError, metrics_port_error
from core.influx import InfluxClient
from core.settings import Settings
from core.signals import stop_on_signals
from core.sql import database_engine
from core.webhook_lanes import WebhookLanes
from core.webhooks import CONNECT_TIMEOUT_S

log = logging.getLogger(__name__)

# Dispatches, deliveries and clearing are due within seconds; five keeps the registry cool.
TICK_S: Final = 5.0

Step = Callable[[datetime], None]


class ServiceMetrics:
    """A service's Prometheus counters, in a registry of its own (tests run several services in
    one process)."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.step_failures = Counter(
            f"binwatch_{service}_step_failures",
            "steps that raised as a whole (retried next tick), by step",
            ["step"],
            registry=self.registry,
        )
        self.item_failures = Counter(
            f"binwatch_{service}_item_failures",
            "items a step could not handle (the others were handled), by step",
            ["step"],
            registry=self.registry,
        )

    def serve(self, port: int, setting: str = "the metrics port") -> None:
        """Expose /metrics on loopback (Prometheus scrapes it from the same host or a sidecar);
        `setting` names where the port comes from, for the error when it is taken."""
        try:
            start_http_server(port, addr="127.0.0.1", registry=self.registry)
        except OSError as exc:
            raise metrics_port_error(port, setting, exc) from None

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value, for tests."""
        return self.registry.get_sample_value(name, labels) or 0.0


class TickingService:
    """A service made of steps; subclasses say which, in `steps()`."""

    name = "service"

    def __init__(self) -> None:
        self.failures = 0  # steps or items that raised: logged and counted; tests expect none
        self.metrics = ServiceMetrics(self.name)

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
                self.metrics.step_failures.labels(step.__name__).inc()
                log.exception("%s step %s failed; retrying next tick", self.name, step.__name__)

    @contextmanager
    def item(self, step: str, item: object, session: Session | None = None) -> Iterator[None]:
        """Handle one item of `step`: an exception is logged with the item's id and counted,
        `session` (if given) rolled back, and the step goes on with the next item."""
        try:
            yield
        except Exception:
            if session is not None:
                session.rollback()
            self.failures += 1
            self.metrics.item_failures.labels(step).inc()
            log.exception("%s step %s failed for %s; the others go on", self.name, step, item)


class Resources:
    """What a service needs from the outside, opened once and closed on the way out."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: Engine = database_engine(settings)
        self.influx = InfluxClient(settings)
        self.webhooks = WebhookLanes(settings)

    def close(self) -> None:
        # Attempts in flight get the time a receiver has to answer; queued ones go next run.
        self.webhooks.close(timeout=self.settings.webhook.timeout_s + CONNECT_TIMEOUT_S)
        self.influx.close()
        self.engine.dispose()


def serve(
    name: str,
    build: Callable[[Resources], tuple[TickingService, Callable[[], None]]],
    *,
    metrics_port: Callable[[Settings], int],
) -> None:
    """Run the service `build` makes until SIGINT/SIGTERM, with its /metrics on loopback at
    `metrics_port(settings)` (0: none); `build` also returns what to close besides the shared
    resources. A BinwatchError stops it with exit code 1 and its message."""
    settings = Settings()
    stop = threading.Event()
    stop_on_signals(stop)
    resources = Resources(settings)
    close_own: Callable[[], None] = lambda: None  # noqa: E731
    try:
        service, close_own = build(resources)
        if port := metrics_port(settings):
            service.metrics.serve(port, f"BINWATCH_{name.upper()}_METRICS_PORT")
        service.run(stop, lambda: datetime.now(UTC))
    except BinwatchError as exc:
        log.error("%s stopped: %s", name, exc)
        raise typer.Exit(1) from None
    finally:
        close_own()
        resources.close()
