"""Polling, never sleeping: tests wait for a condition with a deadline and say what they waited for."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from core.settings import Settings

T = TypeVar("T")


def wait_for(probe: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05) -> T:
    """Call `probe` until it returns something truthy; fail with `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: T = probe()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}"
            )
        time.sleep(interval)
        last = probe()
    return last


ADMIN_TOKEN = "test-admin-token"
"""The bootstrap admin key the test settings carry (BINWATCH_ADMIN_TOKEN)."""
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ADMIN_ACTOR = "admin key bootstrap-admin (BINWATCH_ADMIN_TOKEN)"
"""How audit trails name that key (`Principal.actor`)."""


def isolated_settings(mqtt_url: str, influx_url: str, registry_url: str) -> Settings:
    """The `settings` fixture's, for fixtures of a wider scope (a module's stack) too."""
    tag = uuid.uuid4().hex[:10]
    return Settings(
        mqtt_url=mqtt_url,
        influx_url=influx_url,
        influx_db=f"test_{tag}",
        topic_prefix=f"test/{tag}/binwatch/v1",
        database_url=registry_url,
        ingest_client_id=f"ingest-{tag}",
        ingest_share_group=f"ingest-{tag}",
        ingest_metrics_port=0,
        admin_token=ADMIN_TOKEN,
        api_token=ADMIN_TOKEN,
        # Tests call the API far faster than anyone should; tests/test_security_api.py
        # checks the limit with settings of its own.
        api_rate_per_s=1e6,
        api_rate_burst=1_000_000,
        # The tests' webhook receivers listen on 127.0.0.1 over plain http.
        webhook_allow_private=True,
    )
