"""The forecast rule's error, measured on the simulator's fill curves.

Runs the simulator's fleet model (simulator/model.py) for the default pilot fleet over `--days`
simulated days at the demo's reporting interval; a bin that reaches 100 % is emptied
`--empty-after` later, as a crew would, so each bin goes through fill cycles. At every
collector forecast run (every 10 simulated minutes) it gives the rule exactly what the collector
would read from InfluxDB: the bin's readings of the last `FORECAST_HISTORY`, averaged in
`FORECAST_BUCKET` buckets aligned as InfluxDB aligns them, stamped with the bucket's start, with
their counts. It then compares, for the cycles that reached 100 % within the run:

- hours to full, forecast against simulated, at the first run after the bin crossed 20, 40, 60
  and 80 % of its cycle: mean absolute error, bias (forecast − simulated; negative = too early),
  the share of those moments with a forecast at all (the evidence rule may decline), and the
  share of forecasts whose stated ± error covers the simulated time;
- the decision the collector takes from it (full before the operators' next working day starts):
  requests opened (one per cycle at most, as the collector opens one per bin), how many of them
  were right (the bin really was full before that working day), and the same for requests
  opened while the bin was under 50 %.

    .venv/bin/python bench/forecast.py [--days 7] [--seed 1]

Pure computation, no servers: takes a minute or so for ~280 bins and a week.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where bench/ingest.py would shadow the
# `ingest` package: the repository root goes there instead (as bench/ingest.py does).
_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path[0] = str(_HERE.parent)

import argparse  # noqa: E402
import bisect  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
from collections import defaultdict  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from binwatch.database import migrate  # noqa: E402
from collection import rules, series  # noqa: E402
from collection.service import FORECAST_EVERY  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.sql import make_engine  # noqa: E402
from devices.fleet import default_fleet_path, import_fleet, load_fleet  # noqa: E402
from devices.models import Bin  # noqa: E402
from devices.registry import BinTags, bin_tags  # noqa: E402
from simulator.model import FleetModel  # noqa: E402

BUCKET = timedelta(minutes=int(series.FORECAST_BUCKET.removesuffix("m")))
LEVELS = (20.0, 40.0, 60.0, 80.0)
FULL_PCT = 100.0
HALF_PCT = 50.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Cycle:
    """One bin's fill from an emptying to 100 %: its readings and when it was full."""

    bin_id: str
    stream: str
    times: list[datetime] = field(default_factory=list)
    fills: list[float] = field(default_factory=list)
    full_at: datetime | None = None


def simulate(
    bins: list[BinTags],
    *,
    seed: int,
    start: datetime,
    days: float,
    interval_s: float,
    empty_after: timedelta,
) -> list[Cycle]:
    """Every bin's fill cycles over the run; the last, unfinished one of each bin included."""
    model = FleetModel(bins, seed=seed, start=start, interval_s=interval_s)
    streams = {tags.bin: tags.stream for tags in bins}
    current = {b: Cycle(b, streams[b]) for b in streams}
    cycles: list[Cycle] = []
    empty_due: dict[str, datetime] = {}
    end = start + timedelta(days=days)
    while model.next_ts < end:
        step = model.step()
        for bin_id, reading in step.readings:
            cycle = current[bin_id]
            cycle.times.append(step.ts)
            cycle.fills.append(reading.fill_pct)
            if reading.fill_pct >= FULL_PCT and cycle.full_at is None:
                cycle.full_at = step.ts
                empty_due[bin_id] = step.ts + empty_after
        for bin_id, due in list(empty_due.items()):
            if due <= model.next_ts:
                model.empty(bin_id)
                cycles.append(current[bin_id])
                current[bin_id] = Cycle(bin_id, streams[bin_id])
                del empty_due[bin_id]
    return cycles + list(current.values())


def buckets(
    times: list[datetime],
    fills: list[float],
    now: datetime,
    history: timedelta,
    width: timedelta = BUCKET,
) -> list[rules.FillPoint]:
    """What `series.recent_fill` returns for this bin at `now`: means per bucket of `width`
    aligned to the epoch over [now − history, now), stamped with the bucket's start, with their
    counts."""
    first = bisect.bisect_left(times, now - history)
    last = bisect.bisect_left(times, now)
    sums: dict[datetime, tuple[float, int]] = {}
    for at, fill in zip(times[first:last], fills[first:last], strict=True):
        slot = EPOCH + (at - EPOCH) // width * width
        total, count = sums.get(slot, (0.0, 0))
        sums[slot] = (total + fill, count + 1)
    return [rules.FillPoint(at, total / n, n) for at, (total, n) in sorted(sums.items())]


@dataclass
class Tally:
    """What the evaluation found, added up."""

    errors: dict[tuple[str, float], list[float]] = field(default_factory=lambda: defaultdict(list))
    covered: dict[tuple[str, float], int] = field(default_factory=lambda: defaultdict(int))
    asked: dict[tuple[str, float], int] = field(default_factory=lambda: defaultdict(int))
    fired = fired_right = fired_half = fired_half_right = 0
    leads: list[float] = field(default_factory=list)  # hours from each request to full
    relative: list[float] = field(default_factory=list)  # |error| / forecast hours to full


def evaluate(
    cycles: list[Cycle],
    settings: Settings,
    *,
    start: datetime,
    history: timedelta,
    thresholds: dict[str, float],
) -> Tally:
    evidence = rules.Evidence.of(settings.collection)
    zone = settings.timezone
    tally = Tally()
    for cycle in cycles:
        if not cycle.times:
            continue
        pending = list(LEVELS)
        requested = False
        # The collector's forecast runs on its own clock, every FORECAST_EVERY from the start.
        run = start + (cycle.times[0] - start) // FORECAST_EVERY * FORECAST_EVERY + FORECAST_EVERY
        end = cycle.full_at or cycle.times[-1]
        while run <= end:
            index = bisect.bisect_left(cycle.times, run) - 1
            fill = cycle.fills[index] if index >= 0 else 0.0
            points = buckets(cycle.times, cycle.fills, run, history)
            found = rules.forecast(points, evidence)
            if cycle.full_at is not None:
                truth_h = (cycle.full_at - run).total_seconds() / 3600
                while pending and fill >= pending[0]:
                    key = (cycle.stream, pending.pop(0))
                    tally.asked[key] += 1
                    if found is not None:
                        tally.errors[key].append(found.hours_to_full - truth_h)
                        miss = abs(found.hours_to_full - truth_h)
                        tally.relative.append(miss / max(found.hours_to_full, 1 / 60))
                        tally.covered[key] += abs(found.hours_to_full - truth_h) <= found.error_h
                next_day = rules.next_local_hour(
                    run, hour=settings.collection.work_start_hour, timezone=zone
                )
                fires = found is not None and found.full_at < next_day
                # One request per cycle: the collector does not open a second for the same bin,
                # and over its threshold the bin has one from the threshold rule already.
                if fires and not requested and fill < thresholds[cycle.bin_id]:
                    requested = True
                    right = cycle.full_at < next_day
                    tally.leads.append(truth_h)
                    tally.fired += 1
                    tally.fired_right += right
                    if fill < HALF_PCT:
                        tally.fired_half += 1
                        tally.fired_half_right += right
            run += FORECAST_EVERY
    return tally


def report(tally: Tally, cycles: list[Cycle]) -> None:
    finished = sum(c.full_at is not None for c in cycles)
    print(f"fill cycles: {len(cycles)} ({finished} reached 100 % within the run)")
    print()
    print("hours to full, forecast − simulated, at the first forecast run past each fill level")
    header = f"{'stream':<11}{'level':>6}{'moments':>9}{'forecast':>10}{'MAE h':>8}"
    print(header + f"{'bias h':>8}{'median |e|':>11}{'in ± error':>11}")
    every: list[float] = []
    for stream in sorted({s for s, _ in tally.asked}):
        for level in LEVELS:
            key = (stream, level)
            asked, errors = tally.asked.get(key, 0), tally.errors.get(key, [])
            every += errors
            if not asked:
                continue
            share = f"{len(errors) / asked:.0%}"
            if errors:
                mae = statistics.fmean(abs(e) for e in errors)
                bias = statistics.fmean(errors)
                median = statistics.median(abs(e) for e in errors)
                inside = f"{tally.covered[key] / len(errors):.0%}"
                figures = f"{mae:>8.2f}{bias:>+8.2f}{median:>11.2f}{inside:>11}"
            else:
                figures = f"{'-':>8}{'-':>8}{'-':>11}{'-':>11}"
            print(f"{stream:<11}{level:>5.0f}%{asked:>9}{share:>10}" + figures)
    if every:
        mae, bias = statistics.fmean(abs(e) for e in every), statistics.fmean(every)
        share_inside = sum(tally.covered.values()) / len(every)
        print(
            f"all: {len(every)} forecasts, MAE {mae:.2f} h, bias {bias:+.2f} h, "
            f"simulated time within the stated ± error: {share_inside:.0%}"
        )
        percentiles = statistics.quantiles(tally.relative, n=100)
        print(
            "|error| / forecast hours to full: median "
            f"{percentiles[49]:.2f}, 68th percentile {percentiles[67]:.2f}, 90th {percentiles[89]:.2f}"
        )
    print()
    print(
        f"forecast requests opened under the bin's threshold: {tally.fired}, right (full before the working day): "
        f"{tally.fired_right}; for bins under {HALF_PCT:.0f} %: {tally.fired_half}, "
        f"right: {tally.fired_half_right}"
    )
    if tally.leads:
        print(
            f"cycles that reached 100 % with a forecast request first: {tally.fired} of "
            f"{finished}; hours from request to full: median "
            f"{statistics.median(tally.leads):.1f}, 10th percentile "
            f"{statistics.quantiles(tally.leads, n=10)[0]:.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=7.0, help="simulated days")
    parser.add_argument("--seed", type=int, default=1, help="the fleet model's seed")
    parser.add_argument(
        "--interval", type=float, default=60.0, help="reporting interval, s (the demo's)"
    )
    parser.add_argument("--empty-after", type=float, default=1.0, help="hours from full to emptied")
    parser.add_argument(
        "--start", default="2026-11-23T00:00:00+08:00", help="simulated start (a Monday)"
    )
    parser.add_argument(
        "--history-h",
        type=float,
        default=series.FORECAST_HISTORY.total_seconds() / 3600,
        help="hours of readings the forecast gets (the collector's FORECAST_HISTORY)",
    )
    args = parser.parse_args()
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="binwatch-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'registry.db'}"
        migrate(url)
        engine = make_engine(url)
        with Session(engine) as session:
            import_fleet(session, load_fleet(default_fleet_path()))
            bins = list(bin_tags(session).values())
            rows = session.execute(select(Bin.id, Bin.threshold_pct))
            thresholds = {bin_id: pct for bin_id, pct in rows}
        engine.dispose()
    start = datetime.fromisoformat(args.start)
    print(
        f"{len(bins)} bins, {args.days:g} days from {args.start}, a reading every "
        f"{args.interval:g} s, seed {args.seed}; emptied {args.empty_after:g} h after full"
    )
    evidence = rules.Evidence.of(settings.collection)
    history = timedelta(hours=args.history_h)
    print(
        f"evidence: {evidence.min_span} since the emptying, {evidence.min_readings} readings, "
        f"0 < rate ≤ {evidence.max_rate_pct_h:g} %/h, error ≤ {rules.MAX_RELATIVE_ERROR:.0%}, "
        f"reach ≤ {evidence.max_reach:g} × span; "
        f"history {history} in {series.FORECAST_BUCKET} buckets"
    )
    cycles = simulate(
        bins,
        seed=args.seed,
        start=start,
        days=args.days,
        interval_s=args.interval,
        empty_after=timedelta(hours=args.empty_after),
    )
    tally = evaluate(cycles, settings, start=start, history=history, thresholds=thresholds)
    report(tally, cycles)


if __name__ == "__main__":
    main()
