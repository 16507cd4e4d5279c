"""Ingest's Prometheus metrics, one registry per worker so several workers (or tests) in one
process never share counters, and its `/health` beside `/metrics` on the same port."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from core.errors import metrics_port_error

HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]
"""Whether the worker is healthy, and what its `/health` says: read from memory only, so the
answer never waits on InfluxDB or the broker."""


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "binwatch_ingest_received_messages", "MQTT messages received", registry=r
        )
        self.stored = Counter(
            "binwatch_ingest_stored_points", "points written to InfluxDB", registry=r
        )
        self.rejected = Counter(
            "binwatch_ingest_rejected",
            "messages or readings rejected, by reason",
            ["reason"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "binwatch_ingest_dead_lettered", "dead letters stored", registry=r
        )
        self.write_errors = Counter(
            "binwatch_ingest_write_errors", "failed InfluxDB writes (retried)", registry=r
        )
        self.reconnects = Counter(
            "binwatch_ingest_reconnects", "MQTT connections made after the first", registry=r
        )
        self.buffer_depth = Gauge(
            "binwatch_ingest_buffer_messages",
            "messages received but not yet acknowledged",
            registry=r,
        )
        self.oldest_unacked = Gauge(
            "binwatch_ingest_oldest_unacked_seconds",
            "how long the oldest message not yet acknowledged has waited (0: none)",
            registry=r,
        )
        self.subscribed = Gauge(
            "binwatch_ingest_subscribed",
            "1 while the broker has confirmed the subscriptions",
            registry=r,
        )
        self.batch_points = Histogram(
            "binwatch_ingest_batch_points",
            "points per InfluxDB write",
            registry=r,
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000),
        )
        self.write_seconds = Histogram(
            "binwatch_ingest_write_seconds",
            "InfluxDB write latency",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def serve(self, port: int, health: HealthCheck) -> None:
        """Expose /metrics and /health on loopback (Prometheus scrapes from the same host or a
        sidecar; compose's health check asks /health)."""
        metrics_app = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != "/health":
                return metrics_app(environ, start_response)
            healthy, body = health()
            status = "200 OK" if healthy else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [json.dumps(body).encode()]

        try:
            server = make_server("127.0.0.1", port, app, ThreadingWSGIServer, _QuietHandler)
        except OSError as exc:
            raise metrics_port_error(port, "BINWATCH_INGEST_METRICS_PORT", exc) from None
        threading.Thread(target=server.serve_forever, name="ingest-http", daemon=True).start()

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value, for status lines and tests."""
        return self.registry.get_sample_value(name, labels) or 0.0


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        pass
