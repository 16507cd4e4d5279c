"""Webhook attempts (and any other outgoing attempt: chat robots, e-mail) off the services'
loops, one lane per destination: a receiver that never answers holds up only the attempts
queued for it, never another receiver's nor the collector's or alerter's tick.

A lane is a queue per receiver (scheme, host and port of the URL) drained by at most
`webhook_workers_per_destination` threads, started when work arrives and gone when the lane is
empty; each attempt is bounded by the sender's timeouts. `submit` returns at once; the outcome
goes to the caller's `done` in the lane's thread, which records it in the database. A key stays
busy from `submit` until `done` has returned, so a service ticking meanwhile does not send the
same thing twice. What is queued when the service stops is simply not sent: nothing was
recorded, so the next run sends it."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import partial
from typing import Final
from urllib.parse import urlsplit

from core.settings import Settings
from core.webhooks import Outcome, WebhookSender

log = logging.getLogger(__name__)

# A lane holding this many attempts refuses more until it drains: a dead receiver cannot make
# the service hoard memory (what is refused is tried again on a later tick).
LANE_LIMIT: Final = 1000


@dataclass(frozen=True, slots=True)
class _Job:
    key: Hashable
    attempt: Callable[[], Outcome]
    done: Callable[[Outcome], None]


class WebhookLanes:
    def __init__(self, settings: Settings) -> None:
        self.sender = WebhookSender(settings)
        self._workers = settings.webhook.workers_per_destination
        self._lock = threading.Condition()
        self._queues: dict[str, deque[_Job]] = {}
        self._running: dict[str, int] = {}
        self._busy: set[Hashable] = set()
        self._closed = False

    def busy(self, key: Hashable) -> bool:
        """Whether `key` was submitted and its outcome not yet recorded."""
        with self._lock:
            return key in self._busy

    def submit(
        self,
        key: Hashable,
        url: str,
        body: bytes,
        *,
        secret: str,
        event: str,
        done: Callable[[Outcome], None],
    ) -> bool:
        """Queue one signed webhook POST; False (nothing queued) when `key` is busy, its lane
        full, or the lanes closed."""
        post = partial(self.sender.post, url, body, secret=secret, event=event)
        return self.submit_attempt(key, lane_of(url), post, done=done)

    def submit_attempt(
        self,
        key: Hashable,
        lane: str,
        attempt: Callable[[], Outcome],
        *,
        done: Callable[[Outcome], None],
    ) -> bool:
        """Queue any one attempt in `lane` (a destination: `lane_of(url)`, `smtp://host:port`);
        False as for `submit`. `attempt` must return its `Outcome`, never raise."""
        with self._lock:
            queue = self._queues.setdefault(lane, deque())
            if self._closed or key in self._busy or len(queue) >= LANE_LIMIT:
                return False
            self._busy.add(key)
            queue.append(_Job(key, attempt, done))
            if self._running.get(lane, 0) < self._workers:
                self._running[lane] = self._running.get(lane, 0) + 1
                threading.Thread(
                    target=self._drain, args=(lane,), name=f"webhook {lane}", daemon=True
                ).start()
        return True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight (tests, shutdown); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._busy, timeout)

    def close(self, timeout: float = 0.0) -> None:
        """Stop taking work, drop what is queued, give attempts in flight `timeout` seconds."""
        with self._lock:
            self._closed = True
            for queue in self._queues.values():
                for job in queue:
                    self._busy.discard(job.key)
                queue.clear()
            self._lock.notify_all()
        self.wait_idle(timeout)
        self.sender.close()

    def _drain(self, lane: str) -> None:
        while True:
            with self._lock:
                queue = self._queues[lane]
                if not queue:
                    self._running[lane] -= 1
                    return
                job = queue.popleft()
            try:
                outcome = job.attempt()
                job.done(outcome)
            except Exception:  # `done` isolates its own failures; this is a bug in between
                log.exception("attempt %s to %s failed", job.key, lane)
            finally:
                with self._lock:
                    self._busy.discard(job.key)
                    self._lock.notify_all()


def lane_of(url: str) -> str:
    """The destination a URL's attempts queue for: scheme, host and port."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port}"
    except ValueError:
        return url
