"""History is not rewritten in silence: a reading whose (bin, ts) is already stored with other
values is refused (dead letter `rewrites_history`); an identical one, which is what a QoS 1
redelivery is, passes and rewrites the same point.

InfluxDB would overwrite the stored point (same series, same time), and a bin could so change up
to `ingest_max_past_s` of its own compliance figures. Asking InfluxDB about every reading would
cost a lookup each (~80 µs here, docs/ingest.md), so this worker remembers the newest `ts`
stored per bin (asked once per bin after a start, then kept up to date): a reading newer than
that cannot meet a stored point and costs a dictionary lookup. Only readings at or before it
(redeliveries, replays, backdated arrays) are looked up: by exact (bin, time), or, for many of
one bin, as one time range read back.

With several workers on a shared subscription each remembers only what it stored: a conflicting
reading that reaches another worker than the stored one, while newer than that worker's newest,
is not caught (docs/ingest.md)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from core.influx import InfluxClient, Series
from core.times import epoch_ms
from devices.contract import Reading

FIELDS = ("fill_pct", "seq", "deposits", "contaminated", "weight_kg", "battery_pct", "temp_c")
# Statements per /query request: an exact lookup costs ~80 µs in InfluxDB 1.6 here, so a request
# stays well under 100 ms and its parameters under a few tens of KiB.
STATEMENTS_PER_QUERY = 500
# A bin with more uncertain readings than this in one batch (a backdated array) is read back as
# one time range instead of one lookup each: a few points read per reading, not 80 µs each.
EXACT_LOOKUPS_MAX = 64
# Such a range reads at most this many stored points per reading asked about; past that the
# remaining readings are looked up exactly (a bin cannot make its check cost more than that).
RANGE_ROWS_PER_KEY = 4

Key = tuple[str, int]  # (bin id, ts in epoch ms)
Values = tuple[float | int | None, ...]  # a reading's FIELDS, in order


class StoredReadings(Protocol):
    """What InfluxDB holds, as the check needs it."""

    def newest(self, bins: list[str]) -> dict[str, int]:
        """Each bin's newest stored ts (epoch ms); bins with none are left out."""

    def values(self, keys: list[Key]) -> dict[Key, Values]:
        """The stored readings at exactly these (bin, ts); absent ones are left out."""


def values_of(reading: Reading) -> Values:
    return tuple(getattr(reading, name) for name in FIELDS)


class History:
    """What this worker knows of each bin's stored readings, and the check built on it."""

    def __init__(self, store: StoredReadings) -> None:
        self._store = store
        # Newest stored ts per bin seen since start (-1: none); one entry per registered bin.
        self._newest: dict[str, int] = {}

    def conflicts(self, readings: Sequence[tuple[str, Reading]]) -> dict[int, str]:
        """Index → why, for each reading whose (bin, ts) holds other values: stored ones, or an
        earlier reading of the same batch (the first one of a batch wins)."""
        keys = [(bin_id, epoch_ms(reading.ts)) for bin_id, reading in readings]
        newest = self._newest
        unknown = {bin_id for bin_id, _ in keys if bin_id not in newest}
        if unknown:  # first readings since start: ask once per bin how far its history goes
            found = self._store.newest(sorted(unknown))
            newest.update((bin_id, found.get(bin_id, -1)) for bin_id in unknown)
        unsure = {key for key in keys if key[1] <= newest[key[0]]}
        known = self._store.values(sorted(unsure)) if unsure else {}
        # Values are compared only where a time is stored or repeats in the batch: the hot path
        # (a live reading, once) costs two dictionary look-ups.
        first_of: dict[Key, int] = {}
        conflicts: dict[int, str] = {}
        for index, key in enumerate(keys):
            before = known.get(key)
            if before is None:
                first = first_of.setdefault(key, index)
                if first == index:
                    continue
                before = values_of(readings[first][1])
            values = values_of(readings[index][1])
            if before != values:
                conflicts[index] = _differs(key, before, values)
        return conflicts

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


class InfluxReadings:
    """`StoredReadings` from InfluxDB, with bound parameters, many statements per request.
    Only the last `window_s` is searched: ingest refuses readings older than that anyway."""

    _COLUMNS = ", ".join(f'"{name}"' for name in FIELDS)

    def __init__(self, influx: InfluxClient, *, window_s: float, clock: Callable[[], float]):
        self._influx = influx
        self._window_s = window_s
        self._clock = clock

    def newest(self, bins: list[str]) -> dict[str, int]:
        since = round((self._clock() - self._window_s) * 1e9)  # a bound time is in nanoseconds
        found: dict[str, int] = {}
        for start in range(0, len(bins), STATEMENTS_PER_QUERY):
            chunk = bins[start : start + STATEMENTS_PER_QUERY]
            statements = [
                f'SELECT last("fill_pct") FROM "telemetry" WHERE "bin" = $b{n} AND time >= $since'
                ' GROUP BY "bin"'
                for n in range(len(chunk))
            ]
            params: dict[str, str | int] = {f"b{n}": bin_id for n, bin_id in enumerate(chunk)}
            params["since"] = since
            for series in self._influx.query("; ".join(statements), params=params):
                for row in series.rows():
                    found[series.tags["bin"]] = row["time"]
        return found

    def values(self, keys: list[Key]) -> dict[Key, Values]:
        by_bin: dict[str, list[int]] = {}
        for bin_id, ts in keys:
            by_bin.setdefault(bin_id, []).append(ts)
        found: dict[Key, Values] = {}
        exact: list[Key] = []
        for bin_id, times in by_bin.items():
            if len(times) <= EXACT_LOOKUPS_MAX:
                exact += [(bin_id, ts) for ts in times]
            else:
                exact += self._range(bin_id, sorted(times), found)
        for start in range(0, len(exact), STATEMENTS_PER_QUERY):
            chunk = exact[start : start + STATEMENTS_PER_QUERY]
            statements = [
                f'SELECT {self._COLUMNS}, "bin" FROM "telemetry" WHERE "bin" = $b{n} AND time = $t{n}'
                for n in range(len(chunk))
            ]
            params: dict[str, str | int] = {}
            for n, (bin_id, ts_ms) in enumerate(chunk):
                params[f"b{n}"] = bin_id
                params[f"t{n}"] = ts_ms * 1_000_000
            self._collect(self._influx.query("; ".join(statements), params=params), found)
        return found

    def _range(self, bin_id: str, times: list[int], found: dict[Key, Values]) -> list[Key]:
        """Read the bin's stored points over the span of `times`, at most a few per time; the
        times past what was read are returned, to be looked up exactly."""
        limit = RANGE_ROWS_PER_KEY * len(times)
        series = self._influx.query(
            f'SELECT {self._COLUMNS}, "bin" FROM "telemetry" WHERE "bin" = $b'
            f" AND time >= $lo AND time <= $hi LIMIT {limit:d}",
            params={"b": bin_id, "lo": times[0] * 1_000_000, "hi": times[-1] * 1_000_000},
        )
        rows = self._collect(series, found)
        if rows < limit:
            return []
        last = max(ts for (bin_, ts) in found if bin_ == bin_id)
        return [(bin_id, ts) for ts in times if ts > last]

    @staticmethod
    def _collect(result: list[Series], found: dict[Key, Values]) -> int:
        rows = 0
        for series in result:
            for row in series.rows():
                found[(row["bin"], row["time"])] = tuple(row.get(name) for name in FIELDS)
                rows += 1
        return rows
