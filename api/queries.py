"""Every InfluxQL statement the API runs, in one place.

Values always travel as bound parameters (`$name`), never in the query text; ids and windows are
checked before they get here (api.schemas). Times are bound as integer epoch nanoseconds and
durations as `{"duration": ...}`, the two forms InfluxDB binds without reparsing a string.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from api.schemas import Bucket, Reading, Window
from compliance.figures import accuracy
from core.influx import InfluxClient, Series
from core.telemetry import FIELDS, MEASUREMENT
from core.times import epoch_ns, from_epoch_ms

# The fields ingest writes on the telemetry measurement, named rather than `*` so the tags that
# `*` would add as columns stay out of the readings.
_FIELDS: Final = ", ".join(FIELDS)
_IN_WINDOW: Final = "bin = $bin AND time >= $start AND time < $end"
# How far back latest_by_bin looks for the bins that report; a bin silent for longer costs a
# second query of its own.
LATEST_WINDOW: Final = timedelta(days=1)


def latest_by_bin(
    influx: InfluxClient, site_id: str, bin_ids: Collection[str]
) -> dict[str, Reading]:
    """The newest reading of each of `bin_ids` at a site (absent: it never reported there).
    One query over the last LATEST_WINDOW answers the bins that report (GROUP BY bin with ORDER
    BY time DESC LIMIT 1 returns one point per bin series); only the bins it did not find are
    then looked for further back, by name. With no time bound, every call read each bin series
    in every shard of the raw retention (90 days by default; docs/performance.md)."""
    since = epoch_ns(datetime.now(UTC) - LATEST_WINDOW)
    series = influx.query(
        f"SELECT {_FIELDS} FROM {MEASUREMENT} WHERE site = $site AND time >= $since "
        "GROUP BY bin ORDER BY time DESC LIMIT 1",
        params={"site": site_id, "since": since},
    )
    latest = {s.tags["bin"]: _reading(row) for s in series for row in s.rows()}
    silent = sorted(set(bin_ids) - latest.keys())
    if silent:
        named = " OR ".join(f"bin = $bin{n}" for n in range(len(silent)))
        series = influx.query(
            f"SELECT {_FIELDS} FROM {MEASUREMENT} WHERE site = $site AND ({named}) "
            "AND time < $since GROUP BY bin ORDER BY time DESC LIMIT 1",
            params={"site": site_id, "since": since}
            | {f"bin{n}": bin_id for n, bin_id in enumerate(silent)},
        )
        latest |= {s.tags["bin"]: _reading(row) for s in series for row in s.rows()}
    return latest


def latest_fill_by_bin(
    influx: InfluxClient, since: datetime, sites: frozenset[str] | None
) -> dict[str, float]:
    """The newest fill level of every bin of `sites` (None: all) that reported since `since`, in
    one query (the console's map colours a site by it). Bounded in time, and read newest first
    (ORDER BY time DESC LIMIT 1 per bin series, as latest_by_bin) rather than with last(),
    which reads each series' whole window."""
    names = sorted(sites) if sites is not None else []
    if sites is not None and not names:
        return {}
    of_sites = " OR ".join(f"site = $site{n}" for n in range(len(names)))
    where = f"time >= $since AND ({of_sites})" if sites is not None else "time >= $since"
    series = influx.query(
        f"SELECT fill_pct FROM {MEASUREMENT} WHERE {where} GROUP BY bin ORDER BY time DESC LIMIT 1",
        params={"since": epoch_ns(since)} | {f"site{n}": name for n, name in enumerate(names)},
    )
    return {s.tags["bin"]: row["fill_pct"] for s in series for row in s.rows()}


def latest_of_bin(influx: InfluxClient, bin_id: str) -> Reading | None:
    """A bin's newest reading, wherever it stood when it sent it."""
    series = influx.query(
        f"SELECT {_FIELDS} FROM {MEASUREMENT} WHERE bin = $bin ORDER BY time DESC LIMIT 1",
        params={"bin": bin_id},
    )
    rows = _rows(series)
    return _reading(rows[0]) if rows else None


def raw_readings(influx: InfluxClient, bin_id: str, window: Window, limit: int) -> list[Reading]:
    """The first `limit` readings of a bin in the window, oldest first."""
    series = influx.query(
        f"SELECT {_FIELDS} FROM {MEASUREMENT} WHERE {_IN_WINDOW} ORDER BY time ASC LIMIT {limit:d}",
        params=_window_params(bin_id, window),
    )
    return [_reading(row) for row in _rows(series)]


def buckets(influx: InfluxClient, bin_id: str, window: Window, limit: int) -> list[Bucket]:
    """The first `limit` of a bin's non-empty buckets: readings downsampled into `window.every`
    buckets aligned to local time, empty ones left out (fill(none)). Accuracy is computed from
    the two sums, never averaged."""
    series = influx.query(
        "SELECT mean(fill_pct) AS fill_pct_mean, max(fill_pct) AS fill_pct_max, "
        "sum(deposits) AS deposits, sum(contaminated) AS contaminated, "
        "sum(checked_deposits) AS checked_deposits, "
        "min(battery_pct) AS battery_pct_min, max(temp_c) AS temp_c_max, "
        f"count(fill_pct) AS readings FROM {MEASUREMENT} WHERE {_IN_WINDOW} "
        f"GROUP BY time($every) fill(none) LIMIT {limit:d} tz($tz)",
        params={
            **_window_params(bin_id, window),
            "every": {"duration": window.every},
            "tz": window.timezone,
        },
    )
    return [
        Bucket(
            time=from_epoch_ms(row["time"]),
            fill_pct_mean=row["fill_pct_mean"],
            fill_pct_max=row["fill_pct_max"],
            deposits=row["deposits"],
            contaminated=row["contaminated"],
            accuracy=accuracy(
                checked_deposits=row["checked_deposits"], contaminated=row["contaminated"]
            ),
            battery_pct_min=row["battery_pct_min"],
            temp_c_max=row["temp_c_max"],
            readings=row["readings"] or 0,
        )
        for row in _rows(series)
    ]


def last_heartbeat(influx: InfluxClient, *, timeout: float) -> tuple[int, float] | None:
    """When any ingest worker last stored a batch (epoch ms), and how long that batch's oldest
    message had waited since MQTT receipt; None when no worker has written yet."""
    statement = "SELECT last(oldest_wait_ms) AS lag_ms FROM ingest"
    rows = _rows(influx.query(statement, timeout=timeout))
    return (rows[0]["time"], float(rows[0]["lag_ms"])) if rows else None


def _window_params(bin_id: str, window: Window) -> dict[str, Any]:
    return {"bin": bin_id, "start": epoch_ns(window.start), "end": epoch_ns(window.end)}


def _rows(series: list[Series]) -> list[dict[str, Any]]:
    return [row for s in series for row in s.rows()]


def _reading(row: dict[str, Any]) -> Reading:
    received_ms = row.get("received_ms")
    return Reading(
        time=from_epoch_ms(row["time"]),
        received_at=from_epoch_ms(received_ms) if received_ms is not None else None,
        fill_pct=row["fill_pct"],
        seq=row.get("seq"),
        deposits=row.get("deposits"),
        contaminated=row.get("contaminated"),
        weight_kg=row.get("weight_kg"),
        battery_pct=row.get("battery_pct"),
        temp_c=row.get("temp_c"),
        overflow=_flag(row.get("overflow")),
        over90=_flag(row.get("over90")),
    )


def _flag(value: int | None) -> bool | None:
    return None if value is None else bool(value)
