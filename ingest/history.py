"""History is not rewritten in silence: a reading whose (bin, ts) is already stored with other
values is refused (dead letter `rewrites_history`); an identical one, which is what a QoS 1
redelivery is, passes and rewrites the same point.

InfluxDB would overwrite the stored point (same series, same time), and a bin could so change up
to `ingest_max_past_s` of its own compliance figures. Asking InfluxDB about every reading would
cost a lookup each (~80 µs here, docs/performance.md), so this worker remembers the newest `ts`
it stored per bin: a reading newer than that cannot meet a stored point, and costs a dictionary
lookup. Only readings at or before it (redeliveries, offline buffers, replays) and the first
reading of each bin since start are looked up, by exact (bin, time), many per request.

With several workers on a shared subscription each remembers only what it stored: a conflicting
reading that reaches another worker than the stored one, while newer than that worker's newest,
is not caught (docs/ingest.md)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from binwatch.influx import InfluxClient
from devices.contract import Reading, epoch_ms

FIELDS = ("fill_pct", "seq", "deposits", "contaminated", "weight_kg", "battery_pct", "temp_c")
# Exact lookups per /query request: each costs ~80 µs in InfluxDB 1.6 here, so a request stays
# well under 100 ms and its parameters under a few tens of KiB.
LOOKUPS_PER_QUERY = 500

Key = tuple[str, int]  # (bin id, ts in epoch ms)
Values = tuple[float | int | None, ...]  # a reading's FIELDS, in order
Lookup = Callable[[list[Key]], dict[Key, Values]]


def values_of(reading: Reading) -> Values:
    return tuple(getattr(reading, name) for name in FIELDS)


class History:
    """What this worker knows of each bin's stored readings, and the check built on it."""

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup
        self._newest: dict[str, int] = {}  # one entry per registered bin that sent a reading

    def conflicts(self, readings: Sequence[tuple[str, Reading]]) -> dict[int, str]:
        """Index → why, for each reading whose (bin, ts) holds other values: stored ones, or an
        earlier reading of the same batch (the first one of a batch wins)."""
        keys = [(bin_id, epoch_ms(reading.ts)) for bin_id, reading in readings]
        newest = self._newest
        unsure = {key for key in keys if key[1] <= newest.get(key[0], -1) or key[0] not in newest}
        known = self._lookup(sorted(unsure)) if unsure else {}
        found: dict[int, str] = {}
        for index, key in enumerate(keys):
            values = values_of(readings[index][1])
            before = known.setdefault(key, values)
            if before != values:
                found[index] = _differs(key, before, values)
        return found

    def stored(self, readings: Sequence[tuple[str, Reading]]) -> None:
        """Remember what was just written."""
        newest = self._newest
        for bin_id, reading in readings:
            ts = epoch_ms(reading.ts)
            if ts > newest.get(bin_id, -1):
                newest[bin_id] = ts


def _differs(key: Key, before: Values, after: Values) -> str:
    changes = ", ".join(
        f"{name} {old!r} → {new!r}"
        for name, old, new in zip(FIELDS, before, after, strict=True)
        if old != new
    )
    at = datetime.fromtimestamp(key[1] / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return f"bin {key[0]} already has a reading at {at} with other values ({changes})"


def stored_values(influx: InfluxClient, keys: list[Key]) -> dict[Key, Values]:
    """The stored readings at exactly these (bin, ts), by exact-time lookups with bound
    parameters, many statements per request."""
    columns = ", ".join(f'"{name}"' for name in FIELDS)
    found: dict[Key, Values] = {}
    for start in range(0, len(keys), LOOKUPS_PER_QUERY):
        chunk = keys[start : start + LOOKUPS_PER_QUERY]
        statements = [
            f'SELECT {columns}, "bin" FROM "telemetry" WHERE "bin" = $b{n} AND time = $t{n}'
            for n in range(len(chunk))
        ]
        params: dict[str, str | int] = {}
        for n, (bin_id, ts_ms) in enumerate(chunk):
            params[f"b{n}"] = bin_id
            params[f"t{n}"] = ts_ms * 1_000_000  # a bound time is in nanoseconds
        for series in influx.query("; ".join(statements), params=params):
            for row in series.rows():
                found[(row["bin"], row["time"])] = tuple(row.get(name) for name in FIELDS)
    return found
