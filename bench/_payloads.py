"""Readings for the benchmark, shaped exactly as the simulator sends them, but cheap to produce.

The bench builds `TEMPLATE_ROUNDS` rounds of the pilot fleet with `simulator.model.FleetModel`
(so fill levels, deposits, weights and temperatures are realistic) and serialises each reading
with the contract model, as the simulator does. The publisher then cycles through them, rewriting
only `ts` and `seq`, so message *i* costs a bytes `%` format instead of a pydantic dump: the
publisher must not be what limits the figures it is used to measure.

Message *i* is bin `i % len(bins)` in round `i // len(bins)`; its `ts` is
`start_ms + round * interval_ms`, so every reading of a run is its own InfluxDB point (same series
and time would overwrite) and a run's points are exactly those with `start_ms <= time < end_ms`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Enough rounds that consecutive readings of one bin differ as they would in the field.
TEMPLATE_ROUNDS = 48


@dataclass(frozen=True, slots=True)
class PayloadSpec:
    """Everything a publisher process needs, as JSON-able data (it is handed over in a file)."""

    prefix: str
    bins: list[str]
    # templates[round][bin]: the reading's JSON object without its leading `{"ts":…,"seq":…,`.
    templates: list[list[str]]
    start_ms: int
    interval_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "bins": self.bins,
            "templates": self.templates,
            "start_ms": self.start_ms,
            "interval_ms": self.interval_ms,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PayloadSpec:
        return cls(
            data["prefix"], data["bins"], data["templates"], data["start_ms"], data["interval_ms"]
        )

    def end_ms(self, count: int) -> int:
        """One past the last `ts` the first `count` messages carry."""
        rounds = -(-count // len(self.bins))
        return self.start_ms + rounds * self.interval_ms

    def messages(self, first: int = 0) -> Iterator[tuple[str, bytes]]:
        """(topic, payload) of message `first`, `first + 1`, … for ever."""
        topics = [f"{self.prefix}/bins/{b}/telemetry" for b in self.bins]
        bodies = [[t.encode() for t in row] for row in self.templates]
        n, k = len(self.bins), len(self.templates)
        index = first
        while True:
            rnd, j = divmod(index, n)
            ts = self.start_ms + rnd * self.interval_ms
            yield topics[j], b'{"ts":%d,"seq":%d,%s' % (ts, rnd, bodies[rnd % k][j])
            index += 1


def build_spec(
    bins: list[Any], *, prefix: str, start: datetime, interval_s: int, seed: int = 7
) -> PayloadSpec:
    """Templates from the fleet model for `bins` (registry `BinTags`)."""
    from simulator.model import FleetModel  # the bench process only, not the publishers

    model = FleetModel(bins, seed=seed, start=start, interval_s=interval_s)
    order = list(model.bin_ids)
    templates: list[list[str]] = []
    for current in model.rounds():
        if current.index >= TEMPLATE_ROUNDS:
            break
        by_bin = dict(current.readings)
        row = []
        for bin_id in order:
            text = by_bin[bin_id].model_dump_json(exclude_none=True)
            document = json.loads(text)
            head = f'{{"ts":{document["ts"]},"seq":{document["seq"]},'
            if not text.startswith(head):  # the contract's field order changed: keep up with it
                raise RuntimeError(f"unexpected reading layout: {text}")
            row.append(text[len(head) :])
        templates.append(row)
    start_ms = round(start.astimezone(UTC).timestamp() * 1000)
    return PayloadSpec(prefix, order, templates, start_ms, interval_s * 1000)
