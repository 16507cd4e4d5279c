"""Ingest's Prometheus metrics, one registry per worker so several workers (or tests) in one
process never share counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


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

    def serve(self, port: int) -> None:
        """Expose /metrics on loopback (Prometheus scrapes it from the same host or a sidecar)."""
        start_http_server(port, addr="127.0.0.1", registry=self.registry)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value, for status lines and tests."""
        return self.registry.get_sample_value(name, labels) or 0.0
