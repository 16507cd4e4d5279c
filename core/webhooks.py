"""Signed webhook POSTs: the HTTP boundary for anything binwatch pushes to someone else's server
(collection dispatches and escalations, alert notices).

The body is JSON; `X-Binwatch-Signature: t=<unix seconds>,v1=<hex>` carries the time of sending
and the HMAC-SHA256, with the secret the receiver shares with us, of `<t>.` followed by the exact
body bytes. The receiver recomputes it and refuses a timestamp older than a few minutes, so a
captured POST cannot be replayed later (the scheme Stripe's webhooks use; docs/collection.md
shows the check). Nothing goes out unsigned: `post` refuses an empty secret, and callers let a
webhook without a secret wait. `X-Binwatch-Event` names what the body is.

One call is one attempt to a URL `core.webhook_targets` allows (redirects are not followed:
a 3xx is an answer like any other); callers keep the attempt count and schedule retries with
`retry_delay`, and `core.webhook_lanes` runs the attempts off the services' loops. httpx
errors become an `Outcome` here and nowhere else."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol

import httpcore
import httpx

from core.printable import escape_controls
from core.settings import Settings
from core.webhook_targets import AddressRefused, GuardedBackend, url_problem

SIGNATURE_HEADER: Final = "X-Binwatch-Signature"
EVENT_HEADER: Final = "X-Binwatch-Event"
# How old a signature a receiver should accept: clocks a little apart, a slow network.
TOLERANCE_S: Final = 300
# A receiver must accept the connection this fast; the other phases get `webhook_timeout_s`.
CONNECT_TIMEOUT_S: Final = 5.0
# Retries back off from half a minute, doubling, to at most an hour: a receiver restarting is
# reached quickly, one down for a day is not hammered.
RETRY_FIRST: Final = timedelta(seconds=30)
RETRY_MAX: Final = timedelta(hours=1)
# Of a refusal's answer, this much goes into the error shown on the request or notice.
ANSWER_BYTES: Final = 200
# 4xx means the receiver refuses this body: sending it again cannot help, except for these.
_RETRYABLE_4XX: Final = frozenset({408, 425, 429})


class _NoQueryInLog(logging.Filter):
    """httpx logs every request's URL (at INFO); a chat robot's URL carries its key in the query
    (core/chat_robots.py). Whatever level a process logs at, the line shows the URL without it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                f"{str(a).partition('?')[0]}?…" if isinstance(a, httpx.URL) and a.query else a
                for a in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_NoQueryInLog())


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The signature header's value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    body: bytes, secret: str, header: str | None, *, now: float, tolerance_s: float = TOLERANCE_S
) -> bool:
    """What a receiver does: the timestamp is recent and the MAC matches, compared in constant
    time. (docs/collection.md has the same check without binwatch, for receivers to copy.)"""
    if header is None:
        return False
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(
        sign(body, secret, timestamp), f"t={timestamp},v1={fields.get('v1')}"
    )


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failed attempt (1-based)."""
    doublings = min(max(0, attempts - 1), 16)  # 2**16 × 30 s is far past the cap already
    return min(RETRY_MAX, RETRY_FIRST * 2**doublings)


class Attempted(Protocol):
    """An outbox row that is sent and retried: an alert's webhook or MQTT notice, a person's
    notification."""

    attempts: int
    next_at: datetime | None
    delivered_at: datetime | None
    done: bool
    error: str | None


def record_attempt(
    row: Attempted, now: datetime, error: str | None, retryable: bool, *, limit: int
) -> bool:
    """One attempt's outcome on its outbox row (the caller commits): delivered, or failed and
    due again after `retry_delay`, or given up (not retryable, or `limit` attempts spent).
    True when it gave up."""
    row.attempts += 1
    if error is None:
        row.delivered_at, row.done, row.error = now, True, None
        return False
    final = not retryable or row.attempts >= limit
    row.error, row.done = error, final
    row.next_at = None if final else now + retry_delay(row.attempts)
    return final


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt: delivered, or the reason it was not and whether trying again can help.
    The error often quotes the other side (a receiver's answer, a robot's errmsg, an SMTP
    reply) and is stored in a text column and shown: its control characters are written as
    escapes. A NUL failed the write on PostgreSQL, so the attempt was never recorded and was
    made again every tick."""

    delivered: bool
    error: str | None = None
    retryable: bool = False

    def __post_init__(self) -> None:
        if self.error is not None:
            object.__setattr__(self, "error", escape_controls(self.error))


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over `GuardedBackend`. httpx has no parameter for the network backend,
    so the connection pool is rebuilt with it (same settings: no proxy, HTTP/1.1, no retries)."""

    def __init__(self, *, allow_private: bool) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(allow_private=allow_private),
        )


class WebhookSender:
    """Thread-safe (httpx pools connections)."""

    def __init__(self, settings: Settings) -> None:
        self.allow_private = settings.webhook.allow_private
        self._http = httpx.Client(
            transport=_GuardedTransport(allow_private=self.allow_private),
            timeout=httpx.Timeout(settings.webhook.timeout_s, connect=CONNECT_TIMEOUT_S),
            follow_redirects=False,
            trust_env=False,
        )

    def close(self) -> None:
        self._http.close()

    def post(self, url: str, body: bytes, *, secret: str, event: str) -> Outcome:
        """POST `body` once, signed with `secret` (never empty: unsigned POSTs are refused)."""
        if not secret:
            raise ValueError("a webhook is never sent unsigned: set its secret first")
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: event,
            SIGNATURE_HEADER: sign(body, secret, int(time.time())),
        }
        answer = self.exchange(url, body, headers, shown=url)
        if isinstance(answer, Outcome):
            return answer
        code, said = answer
        if 200 <= code < 300:
            return Outcome(True)
        return refusal(url, code, said)

    def exchange(
        self, url: str, body: bytes, headers: dict[str, str], *, shown: str, keep: int = 0
    ) -> Outcome | tuple[int, bytes]:
        """One POST to an allowed URL: its status and the start of its answer (`keep` bytes of a
        2xx answer, `ANSWER_BYTES` of another), or the `Outcome` of a refused or unreachable
        URL. Errors name the URL as `shown`: a chat robot's URL carries its key, which must
        reach no log or API answer."""
        if problem := url_problem(shown, allow_private=self.allow_private):
            return Outcome(False, f"refused: {problem}")
        try:
            with self._http.stream("POST", url, content=body, headers=headers) as response:
                code = response.status_code
                said = _first_bytes(response, keep if response.is_success else ANSWER_BYTES)
        except httpx.HTTPError as exc:
            if isinstance(exc.__cause__, AddressRefused):
                return Outcome(False, f"refused: {exc.__cause__}")
            why = str(exc).replace(url, shown) or type(exc).__name__
            return Outcome(False, f"{shown} unreachable: {why}", True)
        # A URL the address check passes but httpx cannot send to: a control character in it
        # (InvalidURL), a host IDNA cannot encode (`a..b`, a label over 63 characters, `xn--`).
        # Raised, the attempt was never recorded, and was made again on every tick.
        except (httpx.InvalidURL, UnicodeError) as exc:
            why = str(exc).replace(url, shown) or type(exc).__name__
            return Outcome(False, f"refused: {shown} cannot be called: {why}")
        return code, said


def refusal(shown: str, code: int, said: bytes) -> Outcome:
    """A non-2xx answer as an Outcome: 5xx, 408, 425 and 429 may pass if tried again."""
    retryable = code >= 500 or code in _RETRYABLE_4XX
    text = said.decode("utf-8", "replace").strip()
    return Outcome(False, f"{shown} answered {code}: {text}", retryable)


def _first_bytes(response: httpx.Response, limit: int) -> bytes:
    """The start of an answer's body; the rest is never read (a receiver cannot make us
    download an endless body)."""
    kept = b""
    if limit <= 0:
        return kept
    for chunk in response.iter_bytes():
        kept += chunk
        if len(kept) >= limit:
            break
    return kept[:limit]
