"""Polling, never sleeping: tests wait for a condition with a deadline and say what they waited for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

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
