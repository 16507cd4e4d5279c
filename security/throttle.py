"""Failed logins counted per account and per address, so that guessing passwords stops after a
few tries (issue 15). Pure: the caller passes the time.

Each key (`account:<name>`, `address:<IPv4 address or IPv6 /64>`) keeps the times of its failures within the window;
at the limit it is locked until the oldest of them leaves the window. A success clears the
account's failures (not the address's: one right password must not reset an address that tries
many accounts). The counts live in this process's memory, like the API's rate limiter: with
several API replicas each counts its own (put a shared limiter in front if that matters)."""

from __future__ import annotations

import ipaddress
import threading
from collections import deque
from datetime import datetime, timedelta

IPV6_PREFIX = 64
"""An IPv6 client is counted by its /64: the smallest block a network hands one subscriber, so
one guesser holds 2⁶⁴ addresses of it (and picks a fresh one per try at no cost)."""

SWEEP_AT = 10_000
"""Keys held before failures older than the window are swept out (and then twice as many)."""


class LoginThrottle:
    def __init__(self, *, account_limit: int, address_limit: int, window: timedelta) -> None:
        self._limits = {"account": account_limit, "address": address_limit}
        self._window = window
        self._failures: dict[str, deque[datetime]] = {}
        self._sweep_at = SWEEP_AT
        self._lock = threading.Lock()

    def locked_for(self, *, account: str, address: str, now: datetime) -> timedelta | None:
        """How long this login must wait (None: it may try now)."""
        with self._lock:
            waits = [
                self._wait(f"{kind}:{name}", self._limits[kind], now)
                for kind, name in (("account", account.casefold()), ("address", counted(address)))
            ]
        return max((wait for wait in waits if wait is not None), default=None)

    def failed(self, *, account: str, address: str, now: datetime) -> None:
        with self._lock:
            for key in (f"account:{account.casefold()}", f"address:{counted(address)}"):
                self._failures.setdefault(key, deque()).append(now)
            if len(self._failures) > self._sweep_at:
                self._forget_before(now - self._window)
                self._sweep_at = max(SWEEP_AT, 2 * len(self._failures))

    def tracked(self) -> int:
        """How many accounts and addresses have failures counted (memory held)."""
        return len(self._failures)

    def _forget_before(self, moment: datetime) -> None:
        """Drop keys whose last failure is older than `moment`: made-up user names sprayed from
        many addresses would otherwise be remembered until the same name came back."""
        for key in [key for key, times in self._failures.items() if times[-1] <= moment]:
            del self._failures[key]

    def succeeded(self, *, account: str) -> None:
        with self._lock:
            self._failures.pop(f"account:{account.casefold()}", None)

    def _wait(self, key: str, limit: int, now: datetime) -> timedelta | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        if len(times) < limit:
            return None
        return times[-limit] + self._window - now


def counted(address: str) -> str:
    """What an address's failures are counted under: an IPv4 address (also written as IPv6,
    `::ffff:203.0.113.7`) itself, an IPv6 address its /64 (a guesser rotating through its own
    block tried without end before: every address had its own count), anything else as it is."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])  # a zone (`fe80::1%eth0`) aside
    except ValueError:
        return address  # not an address (a test client's name, "unknown")
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False))
    return str(parsed)
