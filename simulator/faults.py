"""Faults the simulator can inject so a demo shows every alert: `fire`, `tilt`, `silence` and
`battery`, each at one bin from a moment of the run, given as `KIND:BIN_ID@MINUTES` (simulated
minutes after the first round), e.g. `--inject fire:sz-peoples-government-s1-kitchen@30`.

A running simulator also takes faults "from now on" as `KIND:BIN_ID` on its faults topic
(`binwatch demo --inject`, which sends the event of a fire or tilt itself, at once)."""

from __future__ import annotations

import queue
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from devices.contract import BIN_ID_PATTERN, Event, Reading

KINDS: Final = ("fire", "tilt", "silence", "battery")
# A burning bin: hot enough for the overheat rule as well as the fire event.
FIRE_TEMP_C: Final = 85.0
# A drained battery: under the default alert level of 15 %.
DRAINED_PCT: Final = 8.0
_SPEC = re.compile(rf"({'|'.join(KINDS)}):({BIN_ID_PATTERN})@(\d+(?:\.\d+)?)")
# Under the topic prefix: where a running simulator listens for faults to inject from now on.
# Faults whose event `binwatch demo --inject` publishes itself.
ANNOUNCED_BY_SENDER: Final = ("fire", "tilt")


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    bin_id: str
    after: timedelta

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """`ValueError` says what a bad spec should look like."""
        match = _SPEC.fullmatch(spec)
        if match is None:
            raise ValueError(
                f"{spec!r} is not KIND:BIN_ID@MINUTES with KIND one of {', '.join(KINDS)}"
            )
        return cls(match[1], match[2], timedelta(minutes=float(match[3])))


class Injector:
    """Alters each round's readings and adds the events of the faults that have begun."""

    def __init__(self, faults: list[Fault]) -> None:
        self.faults = faults
        self._start: datetime | None = None
        self._announced: set[Fault] = set()
        self._arrived: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()

    def arrive(self, spec: str) -> None:
        """A fault `KIND:BIN_ID` from now on (from any thread: paho's, for the faults topic);
        `ValueError` for a bad spec. It takes effect from the next round."""
        fault = Fault.parse(f"{spec}@0")
        self._arrived.put((fault.kind, fault.bin_id))

    def apply(
        self, ts: datetime, readings: tuple[tuple[str, Reading], ...]
    ) -> tuple[list[tuple[str, Reading]], list[tuple[str, Event]]]:
        self._start = self._start or ts
        while not self._arrived.empty():
            kind, bin_id = self._arrived.get()
            fault = Fault(kind, bin_id, ts - self._start)
            self.faults.append(fault)
            if kind in ANNOUNCED_BY_SENDER:
                self._announced.add(fault)
        active = [f for f in self.faults if ts - self._start >= f.after]
        events: list[tuple[str, Event]] = []
        for fault in active:
            if fault.kind in ("fire", "tilt") and fault not in self._announced:
                event = Event.model_validate({"ts": ts, "type": fault.kind, "detail": "simulated"})
                events.append((fault.bin_id, event))
            self._announced.add(fault)
        out: list[tuple[str, Reading]] = []
        for bin_id, reading in readings:
            kinds = {f.kind for f in active if f.bin_id == bin_id}
            if "silence" in kinds:
                continue
            if "fire" in kinds:
                reading = reading.model_copy(update={"temp_c": FIRE_TEMP_C})
            if "battery" in kinds:
                reading = reading.model_copy(update={"battery_pct": DRAINED_PCT})
            out.append((bin_id, reading))
        return out, events
