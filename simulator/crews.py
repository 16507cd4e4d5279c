"""The operators' crews, simulated, in two ways.

**Following the plan.** An operator whose routes of the day are planned (`RoutesPlanned` on
`{prefix}/operators/+/routes`, as the collector publishes them) has its crews drive them: each
vehicle goes through its job stops in the planned order at the planned pace in simulated time
(a stop is reached `(its departure − the route's start) / speed` real seconds after the plan
arrived), and reports each stop as its crew's phone does: a tap "emptied" on
`POST /api/v1/operators/{operator_id}/routes/{vehicle_id}/stops/{stop_id}/taps` with the
vehicle's crew key (`BINWATCH_API_CREW_TOKENS`), which completes a request's stop and marks a
forecast stop done on the crew's screen. A vehicle without a crew key reports a request's stop
with the operator's actions instead (acknowledge, complete, with `BINWATCH_API_TOKEN`). The bin
is emptied in the fleet model in every case. A later version of the day's plan (a re-plan, an
urgent request inserted) is driven as it says, on the same clocks: a stop not reached yet goes
with the vehicle and time the new version gives it, stops reached stay done, new ones are added.

**Request by request**, for operators without a plan today, and for a request the plan in
force does not hold (raised since, or left out): they hear dispatches on
`{prefix}/operators/+/dispatch`, acknowledge through the API, travel for a while (simulated
time, scaled by the run's speed), empty the bin and complete through the API.

Some crews misbehave, so a demo shows escalations and disputes too: a `late_share` of jobs
arrive only after the request has climbed the whole grid (a planned stop: `LATE_BY_S` after its
planned time, out of the route's order), and a `skip_share` report the job done without
emptying the bin. Which job does what is drawn from `(seed, request id)` (a forecast stop:
its bin id and the plan's day), so a run is repeatable. Emptying happens between two rounds of
the model (`apply`), never while one is being computed.
"""

from __future__ import annotations

import dataclasses
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
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import httpx
import paho.mqtt.client as paho
from pydantic import ValidationError

from core.mqtt import make_client, sub_account
from core.settings import Settings
from devices.contract import Topics
from devices.messages import Dispatch, RoutesPlanned, VehicleRoute
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
    return _bearer(settings.api.token.get_secret_value())


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tap_id(stop_id: int) -> str:
    """The id of the simulated crew's tap on a stop: the same on every try and after a restart
    of the simulator (the API answers a repeat with what the first did)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"binwatch-simulator/stops/{stop_id}"))


@dataclass(order=True)
class _Job:
    """An action a crew will take at `due` (the clock's seconds): "ack", "complete", "tap"
    (a planned stop, by the vehicle's crew key: `stop_id`, `vehicle_id`), or "empty" (a planned
    stop of a bin without a request, for a vehicle without a crew key: nothing to tell the API).
    `planned`: a stop of a route, completed even when the request was acknowledged before."""

    due: float
    request_id: int = field(compare=True)
    operator_id: str = field(compare=False)
    bin_id: str = field(compare=False)
    empties: bool = field(compare=False)
    action: str = field(compare=False)
    travel_s: float = field(compare=False, default=0.0)
    tries: int = field(compare=False, default=0)
    planned: bool = field(compare=False, default=False)
    stop_id: int = field(compare=False, default=0)
    vehicle_id: str = field(compare=False, default="")


@dataclass
class _Drive:
    """A vehicle following its route: its plan's time `origin` is reached at `began` (the
    clock's seconds); simulated time runs from there at the run's speed."""

    origin: datetime
    began: float


# What a planned stop's crew does first on reaching it (a tap, an acknowledgement, or only
# emptying the bin); a "complete" follows an acknowledgement already made.
FIRST_ACTIONS: Final = frozenset({"tap", "ack", "empty"})


@dataclass(frozen=True, slots=True)
class Conduct:
    """Which jobs a misbehaving crew does late (`late_share`) or reports done without emptying
    the bin (`skip_share`): drawn from `(seed, key)`, a request id or, for a stop without a
    request, its bin id and day (`stop_key`), so a run repeats. One rule for the simulator's crews and for
    bench/routes.py, so the bench's shares are the demo's."""

    seed: int = 1
    late_share: float = 0.0
    skip_share: float = 0.0

    def __post_init__(self) -> None:
        if self.late_share < 0 or self.skip_share < 0 or self.late_share + self.skip_share > 1:
            raise ValueError("late_share and skip_share must be shares adding up to at most 1")

    @staticmethod
    def stop_key(request_id: int | None, bin_id: str, day: date) -> object:
        """A job's key: its request, or its bin on that day (by the bin alone, a bin drawn
        "skip" would be skipped on every day's plan)."""
        return request_id or f"{bin_id}@{day.isoformat()}"

    def of(self, key: object) -> Literal["late", "skip", ""]:
        """What the crew does with the job `key`: "late", "skip", or "" (on time, emptied)."""
        draw = random.Random(f"{self.seed}:{key}").random()
        if draw < self.late_share:
            return "late"
        return "skip" if draw < self.late_share + self.skip_share else ""


def _stop_key(request_id: int | None, bin_id: str) -> str:
    """A planned stop across plan versions: its request, or its bin when it has none."""
    return f"request-{request_id}" if request_id else f"bin-{bin_id}"


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
        today: Callable[[], date] | None = None,
    ) -> None:
        self._conduct = Conduct(seed, late_share, skip_share)
        self._topics = Topics(settings.topic_prefix)
        self._zone = ZoneInfo(settings.timezone)
        self._scale = 1 / speed if speed > 0 else 0.0
        self._travel_s = travel_s
        self._http = http or httpx.Client(
            base_url=settings.api.url, timeout=HTTP_TIMEOUT_S, headers=api_headers(settings)
        )
        self._clock = clock
        self._today = today or (lambda: datetime.now(self._zone).date())
        self._crew_keys = {
            vehicle: _bearer(token.get_secret_value())
            for vehicle, token in settings.api.crew_tokens.items()
        }
        # Its own account (`simulator-crews`): the simulator's bins hold `simulator`, and the
        # broker allows one connection per account (client id = user name).
        self._connection = make_client(
            sub_account(settings, "crews"),
            f"binwatch-crews-{uuid.uuid4().hex[:12]}",
            persistent=False,
        )
        self._connection.client.on_connect = self._on_connect
        self._connection.client.on_message = self._on_message
        self._inbox: queue.SimpleQueue[Dispatch | RoutesPlanned] = queue.SimpleQueue()
        self._empties: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._jobs: list[_Job] = []
        self._seen: set[int] = set()
        self._versions: dict[str, tuple[str, int]] = {}  # operator → (day, version) followed
        self._planned: dict[str, set[int]] = {}  # operator → the requests its plan holds
        self._drives: dict[tuple[str, str], _Drive] = {}  # (operator, vehicle) → its clock
        self._stops: set[str] = set()  # planned stops taken today: "request-N" or "bin-ID"
        self._day = ""  # the day of the plans followed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="crews", daemon=True)
        self.subscribed = threading.Event()
        self.completed: list[int] = []  # requests completed, in the order they were
        self.tapped: list[int] = []  # planned stops a crew key tapped, in the order they were
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
            client.subscribe(self._topics.routes("+"), qos=1)
            self.subscribed.set()

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        try:
            if message.topic.endswith("/routes"):
                self.receive(RoutesPlanned.model_validate_json(message.payload))
            else:
                self.receive(Dispatch.model_validate_json(message.payload))
        except ValidationError as exc:
            log.warning("crews ignored a dispatch on %s: %s", message.topic, exc)

    def _work(self) -> None:
        while not self._stop.is_set():
            if not self.work_once():
                self._stop.wait(IDLE_S)

    def work_once(self) -> bool:
        """Take in what arrived, then act on the first job due, if one is; whether one was.
        The crews' thread runs this; a test may run it on a clock of its own instead."""
        while not self._inbox.empty():
            arrived = self._inbox.get()
            if isinstance(arrived, RoutesPlanned):
                self._follow(arrived)
            else:
                self._take(arrived)
        if self._jobs and self._jobs[0].due <= self._clock():
            self._do(heapq.heappop(self._jobs))
            return True
        return False

    def receive(self, message: Dispatch | RoutesPlanned) -> None:
        """A dispatch or a plan, as if it had arrived over MQTT."""
        self._inbox.put(message)

    def upcoming(self) -> list[tuple[str, str, int]]:
        """The planned stops not reached yet, in the order they are due: (bin, vehicle, stop)."""
        return [(j.bin_id, j.vehicle_id, j.stop_id) for j in sorted(self._jobs) if j.planned]

    def _take(self, message: Dispatch) -> None:
        """Plan the acknowledgement of a new job, due now; the crew sets off once it lands."""
        if message.request_id in self._seen:
            return  # QoS 1 may deliver a dispatch twice
        if message.request_id in self._planned.get(message.operator_id, ()):
            return  # a stop of the plan in force: its vehicle comes
        self._seen.add(message.request_id)
        conduct = self._conduct.of(message.request_id)
        travel_s = self._travel_s
        if conduct == "late":
            late_s = (message.due_at - message.created_at).total_seconds() + LATE_BY_S
            travel_s = max(travel_s, late_s)
        job = _Job(
            self._clock(),
            message.request_id,
            message.operator_id,
            message.bin_id,
            conduct != "skip",
            "ack",
            travel_s,
        )
        heapq.heappush(self._jobs, job)

    def _follow(self, plan: RoutesPlanned) -> None:
        """Drive today's plan of an operator (a version newer than the one followed): each
        vehicle's stops not taken yet, at their planned times on the vehicle's clock. Requests
        the plan holds are no longer served one by one (their pending actions are dropped)."""
        today = self._today().isoformat()
        followed = self._versions.get(plan.operator_id)
        if plan.day != today or (followed is not None and followed >= (plan.day, plan.version)):
            return
        if plan.day != self._day:  # a new day: yesterday's stops no longer say "done"
            self._stops.clear()  # (a bin's forecast stop is keyed by the bin alone)
            self._day = plan.day
        self._versions[plan.operator_id] = (plan.day, plan.version)
        held = {
            stop.request_id
            for route in plan.vehicles
            for stop in route.stops
            if stop.kind == "job" and stop.request_id is not None
        }
        self._planned[plan.operator_id] = held
        kept = [j for j in self._jobs if j.planned or j.request_id not in held]
        # A stop not reached yet is driven as this version says (its vehicle, its time): its
        # pending first action is dropped here and scheduled again below. Stops reached stay done.
        in_plan = {
            _stop_key(stop.request_id, stop.bin_id)
            for route in plan.vehicles
            for stop in route.stops
            if stop.kind == "job" and stop.bin_id is not None
        }

        def moved(job: _Job) -> bool:
            return (
                job.planned
                and job.tries == 0
                and job.action in FIRST_ACTIONS
                and _stop_key(job.request_id, job.bin_id) in in_plan
            )

        self._stops -= {_stop_key(j.request_id, j.bin_id) for j in self._jobs if moved(j)}
        kept = [j for j in self._jobs if (j.planned or j.request_id not in held) and not moved(j)]
        if len(kept) != len(self._jobs):
            self._jobs = kept
            heapq.heapify(self._jobs)
        for route in plan.vehicles:
            self._drive(plan.operator_id, route, date.fromisoformat(plan.day))

    def _drive(self, operator_id: str, route: VehicleRoute, day: date) -> None:
        if not route.stops:
            return
        drive = self._drives.setdefault(
            (operator_id, route.vehicle_id), _Drive(route.stops[0].departure_at, self._clock())
        )
        for stop in route.stops:
            if stop.kind != "job" or stop.bin_id is None:
                continue
            key = _stop_key(stop.request_id, stop.bin_id)
            if key in self._stops:
                continue
            self._stops.add(key)
            conduct = self._conduct.of(Conduct.stop_key(stop.request_id, stop.bin_id, day))
            after_s = max(0.0, (stop.departure_at - drive.origin).total_seconds())
            if conduct == "late":
                after_s += LATE_BY_S
            due = drive.began + after_s * self._scale
            if route.vehicle_id in self._crew_keys:
                action = "tap"
            else:
                action = "ack" if stop.request_id else "empty"
            job = _Job(
                due,
                stop.request_id or 0,
                operator_id,
                stop.bin_id,
                conduct != "skip",
                action,
                planned=True,
                stop_id=stop.stop_id,
                vehicle_id=route.vehicle_id,
            )
            heapq.heappush(self._jobs, job)

    def _do(self, job: _Job) -> None:
        """Post the job's action; on success plan what follows, on 429/503 plan the same
        action again after Retry-After (bounded by `MAX_TRIES`), otherwise drop the job."""
        if job.action in ("complete", "empty", "tap") and job.empties and job.tries == 0:
            self._empties.put(job.bin_id)  # once, however often the API is asked
        if job.action == "empty":
            return
        response = self._post(job, job.action)
        # A planned stop whose request was acknowledged already (by a crew serving it one
        # by one before the plan came) is completed all the same; a tap refused (409: the
        # request was cancelled or completed by someone else) is done with.
        acked_before = job.planned and response is not None and response.status_code == 409
        if response is not None and (not response.is_error or acked_before):
            if job.action == "ack":
                due = self._clock() + job.travel_s * self._scale
                follow = dataclasses.replace(job, due=due, action="complete", tries=0)
                heapq.heappush(self._jobs, follow)
            elif job.action == "tap" and not response.is_error:
                self.tapped.append(job.stop_id)
                if response.json().get("outcome") == "completed":
                    self.completed.append(job.request_id)
            elif not response.is_error:
                self.completed.append(job.request_id)
            return
        if response is None or response.status_code not in _RETRYABLE:
            return  # refused for good, or unreachable: logged by _post
        if job.tries + 1 >= MAX_TRIES:
            log.warning(
                "crew gave up to %s %s after %d tries",
                job.action,
                _what(job),
                job.tries + 1,
            )
            return
        self.retries += 1
        job.tries += 1
        job.due = self._clock() + retry_after_s(response.headers.get("Retry-After"))
        heapq.heappush(self._jobs, job)

    def _post(self, job: _Job, action: str) -> httpx.Response | None:
        """The API's answer (refusals logged); None when it could not be reached."""
        try:
            if action == "tap":
                response = self._http.post(
                    f"/api/v1/operators/{job.operator_id}/routes/{job.vehicle_id}"
                    f"/stops/{job.stop_id}/taps",
                    json={"tap_id": tap_id(job.stop_id), "action": "emptied"},
                    headers=self._crew_keys[job.vehicle_id],
                )
            else:
                response = self._http.post(
                    f"/api/v1/collections/{job.request_id}/{action}",
                    json={"operator_id": job.operator_id, "note": "simulated crew"},
                )
        except httpx.HTTPError as exc:
            log.warning("crew could not %s %s: %s", action, _what(job), exc)
            return None
        if response.is_error and not (job.planned and response.status_code == 409):
            log.warning(
                "crew could not %s %s: %s %s",
                action,
                _what(job),
                response.status_code,
                response.text,
            )
        return response


def _what(job: _Job) -> str:
    return f"stop {job.stop_id}" if job.action == "tap" else f"request {job.request_id}"


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
