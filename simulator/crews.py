"""The operators' crews, simulated: they hear dispatches on `{prefix}/operators/+/dispatch`,
acknowledge through the API, travel for a while (simulated time, scaled by the run's speed),
empty the bin in the running fleet model and complete through the API.

Some crews misbehave, so a demo shows escalations and disputes too: a `late_share` of jobs
arrive only after the request has climbed the whole grid, and a `skip_share` report the job
done without emptying the bin. Which job does what is drawn from `(seed, request id)`, so a
run is repeatable. Emptying happens between two rounds of the model (`apply`), never while one
is being computed.
"""

from __future__ import annotations

import heapq
import logging
import math
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx
import paho.mqtt.client as paho
from pydantic import ValidationError

from core.mqtt import make_client, sub_account
from core.settings import Settings
from devices.contract import Topics
from devices.messages import Dispatch
from simulator.model import FleetModel

log = logging.getLogger(__name__)

# A crew needs this long in simulated time from acknowledging to emptying the bin: a truck
# crossing a district between other jobs.
TRAVEL_S: Final = 40 * 60.0
# A late crew comes this long after the request was due: past both escalation levels at the
# default settings (4 h apart), so the demo shows the squad called out.
LATE_BY_S: Final = 5 * 3600.0
# How long the crews' thread sleeps when it has nothing due: short enough that jobs are timely.
IDLE_S: Final = 0.05
HTTP_TIMEOUT_S: Final = 10.0
# An action the API answers 429 or 503 is tried again after its Retry-After (real seconds: it is
# the API's clock, not the simulation's), at most this many times: a crew keeps its job through
# a busy minute, not through an API that refuses it for good.
MAX_TRIES: Final = 6
# Without a readable Retry-After, wait this long; never longer than the cap, whatever it says.
DEFAULT_RETRY_S: Final = 1.0
MAX_RETRY_S: Final = 60.0
_RETRYABLE: Final = frozenset({429, 503})


def api_headers(settings: Settings) -> dict[str, str]:
    """The crews' API key (BINWATCH_API_TOKEN: an operator key, or an admin key acting for
    every operator as the demo's crews do); without one the API answers 401."""
    if settings.api.token is None:
        return {}
    return {"Authorization": f"Bearer {settings.api.token.get_secret_value()}"}


@dataclass(order=True)
class _Job:
    """An action a crew will take at `due` (the clock's seconds): "ack" or "complete"."""

    due: float
    request_id: int = field(compare=True)
    message: Dispatch = field(compare=False)
    empties: bool = field(compare=False)
    action: str = field(compare=False)
    travel_s: float = field(compare=False, default=0.0)
    tries: int = field(compare=False, default=0)


class Crews:
    """`start()` subscribes; pass `apply` to `run_simulation(between_rounds=...)`; `stop()`."""

    def __init__(
        self,
        settings: Settings,
        *,
        speed: float,
        seed: int = 1,
        late_share: float = 0.0,
        skip_share: float = 0.0,
        travel_s: float = TRAVEL_S,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= late_share + skip_share <= 1 or late_share < 0 or skip_share < 0:
            raise ValueError("late_share and skip_share must be shares adding up to at most 1")
        self._topics = Topics(settings.topic_prefix)
        self._scale = 1 / speed if speed > 0 else 0.0
        self._seed, self._late, self._skip, self._travel_s = seed, late_share, skip_share, travel_s
        self._http = http or httpx.Client(
            base_url=settings.api.url, timeout=HTTP_TIMEOUT_S, headers=api_headers(settings)
        )
        self._clock = clock
        # Its own account (`simulator-crews`): the simulator's bins hold `simulator`, and the
        # broker allows one connection per account (client id = user name).
        self._connection = make_client(
            sub_account(settings, "crews"),
            f"binwatch-crews-{uuid.uuid4().hex[:12]}",
            persistent=False,
        )
        self._connection.client.on_connect = self._on_connect
        self._connection.client.on_message = self._on_message
        self._inbox: queue.SimpleQueue[Dispatch] = queue.SimpleQueue()
        self._empties: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._jobs: list[_Job] = []
        self._seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="crews", daemon=True)
        self.subscribed = threading.Event()
        self.completed: list[int] = []
        self.retries = 0  # actions tried again after the API said when (Retry-After)

    def start(self) -> None:
        self._connection.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._connection.stop()
        self._http.close()

    def apply(self, model: FleetModel) -> None:
        """Empty, in `model`, the bins crews have reached since the last round."""
        known = set(model.bin_ids)
        while not self._empties.empty():
            bin_id = self._empties.get()
            if bin_id in known:
                model.empty(bin_id)

    # paho's thread: record and return; the crews' thread does the work.
    def _on_connect(
        self, client: paho.Client, _u: Any, _f: Any, reason: paho.ReasonCode, _p: Any
    ) -> None:
        if not reason.is_failure:
            client.subscribe(self._topics.dispatch("+"), qos=1)
            self.subscribed.set()

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        try:
            self._inbox.put(Dispatch.model_validate_json(message.payload))
        except ValidationError as exc:
            log.warning("crews ignored a dispatch on %s: %s", message.topic, exc)

    def _work(self) -> None:
        while not self._stop.is_set():
            while not self._inbox.empty():
                self._take(self._inbox.get())
            if self._jobs and self._jobs[0].due <= self._clock():
                self._do(heapq.heappop(self._jobs))
            else:
                self._stop.wait(IDLE_S)

    def _take(self, message: Dispatch) -> None:
        """Plan the acknowledgement of a new job, due now; the crew sets off once it lands."""
        if message.request_id in self._seen:
            return  # QoS 1 may deliver a dispatch twice
        self._seen.add(message.request_id)
        draw = random.Random(f"{self._seed}:{message.request_id}").random()
        travel_s = self._travel_s
        if draw < self._late:
            late_s = (message.due_at - message.created_at).total_seconds() + LATE_BY_S
            travel_s = max(travel_s, late_s)
        empties = draw >= self._late + self._skip or draw < self._late
        job = _Job(self._clock(), message.request_id, message, empties, "ack", travel_s)
        heapq.heappush(self._jobs, job)

    def _do(self, job: _Job) -> None:
        """Post the job's action; on success plan what follows, on 429/503 plan the same
        action again after Retry-After (bounded by `MAX_TRIES`), otherwise drop the job."""
        if job.action == "complete" and job.empties and job.tries == 0:
            self._empties.put(job.message.bin_id)  # once, however often the API is asked
        response = self._post(job.message, job.action)
        if response is not None and not response.is_error:
            if job.action == "ack":
                due = self._clock() + job.travel_s * self._scale
                follow = _Job(due, job.request_id, job.message, job.empties, "complete")
                heapq.heappush(self._jobs, follow)
            else:
                self.completed.append(job.request_id)
            return
        if response is None or response.status_code not in _RETRYABLE:
            return  # refused for good, or unreachable: logged by _post
        if job.tries + 1 >= MAX_TRIES:
            log.warning(
                "crew gave up to %s request %d after %d tries",
                job.action,
                job.request_id,
                job.tries + 1,
            )
            return
        self.retries += 1
        job.tries += 1
        job.due = self._clock() + retry_after_s(response.headers.get("Retry-After"))
        heapq.heappush(self._jobs, job)

    def _post(self, message: Dispatch, action: str) -> httpx.Response | None:
        """The API's answer (refusals logged); None when it could not be reached."""
        try:
            response = self._http.post(
                f"/api/v1/collections/{message.request_id}/{action}",
                json={"operator_id": message.operator_id, "note": "simulated crew"},
            )
        except httpx.HTTPError as exc:
            log.warning("crew could not %s request %d: %s", action, message.request_id, exc)
            return None
        if response.is_error:
            log.warning(
                "crew could not %s request %d: %s %s",
                action,
                message.request_id,
                response.status_code,
                response.text,
            )
        return response


def retry_after_s(header: str | None) -> float:
    """The wait a Retry-After header asks for, in seconds (RFC 9110 §10.2.3: a number of
    seconds or an HTTP date), within [0, `MAX_RETRY_S`]; `DEFAULT_RETRY_S` when absent or
    unreadable."""
    if header is None:
        return DEFAULT_RETRY_S
    try:
        seconds = float(header)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(header) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return DEFAULT_RETRY_S
    if math.isnan(seconds):
        return DEFAULT_RETRY_S
    return min(max(seconds, 0.0), MAX_RETRY_S)
