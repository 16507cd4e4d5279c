"""Signed webhook POSTs: the HTTP boundary for anything binwatch pushes to someone else's server
(collection dispatches and escalations now, alerts later).

The body is JSON; `X-Binwatch-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>` with
the secret the receiver shares with us lets it check that the POST is ours and unaltered (the
scheme GitHub's webhooks use). `X-Binwatch-Event` names what the body is. One call is one
attempt: callers keep the attempt count and schedule retries with `retry_delay`, so a slow
receiver never holds up the loop that sends. httpx errors become an `Outcome` here and nowhere
else."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import httpx

SIGNATURE_HEADER: Final = "X-Binwatch-Signature"
EVENT_HEADER: Final = "X-Binwatch-Event"
# A receiver that has not answered by then is treated as down; the next attempt comes later.
TIMEOUT_S: Final = 10.0
# Retries back off from half a minute, doubling, to at most an hour: a receiver restarting is
# reached quickly, one down for a day is not hammered.
RETRY_FIRST: Final = timedelta(seconds=30)
RETRY_MAX: Final = timedelta(hours=1)
# 4xx means the receiver refuses this body: sending it again cannot help, except for these.
_RETRYABLE_4XX: Final = frozenset({408, 425, 429})


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """What a receiver does: compare in constant time with the signature it computes itself."""
    return header is not None and hmac.compare_digest(sign(body, secret), header)


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failed attempt (1-based)."""
    doublings = min(max(0, attempts - 1), 16)  # 2**16 × 30 s is far past the cap already
    return min(RETRY_MAX, RETRY_FIRST * 2**doublings)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt: delivered, or the reason it was not and whether trying again can help."""

    delivered: bool
    error: str | None = None
    retryable: bool = False


class WebhookSender:
    """Thread-safe (httpx pools connections); `transport` is the seam for tests."""

    def __init__(self, *, transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(transport=transport, timeout=TIMEOUT_S)

    def close(self) -> None:
        self._http.close()

    def post(self, url: str, body: bytes, *, secret: str | None, event: str) -> Outcome:
        """POST `body` once. Without a secret the POST goes unsigned (the receiver then cannot
        tell it from a forgery: configure one)."""
        headers = {"Content-Type": "application/json", EVENT_HEADER: event}
        if secret:
            headers[SIGNATURE_HEADER] = sign(body, secret)
        try:
            response = self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Outcome(False, f"{url} unreachable: {exc or type(exc).__name__}", True)
        if response.is_success:
            return Outcome(True)
        code = response.status_code
        retryable = code >= 500 or code in _RETRYABLE_4XX
        return Outcome(False, f"{url} answered {code}: {response.text[:200].strip()}", retryable)
