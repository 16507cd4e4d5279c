"""A deterministic model of a bin fleet: what each bin would measure, round after round.

Pure on purpose (no MQTT, no clock, no I/O): `publisher` is the boundary that sends what this
produces, so everything about realism and determinism is tested here without a broker.

Each bin draws from its own `random.Random` seeded with `(seed, bin_id)`, and each site's sorting
quality from `(seed, site)`: a bin's history does not change when another bin joins the fleet, and
the same seed with the same inputs gives byte-identical readings. Rates follow the city's local
time of day (meals for kitchen waste, office hours for the rest) and the day of the week.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from devices.contract import Reading, SiteType, Stream
from devices.registry import BinTags

DEFAULT_TIMEZONE = "Asia/Shanghai"

_MINUTES_PER_DAY = 1440

# A bin starts at a fill drawn between 0 and this (%), unless it resumes from stored data: under
# the fleet file's default thresholds (70 % and up), so a run's first readings raise no
# requests. The demo's fresh start draws up to 100 % (`simulate --first-fill-max`).
FIRST_FILL_MAX_PCT = 70.0

# Deposits per hour into one typical bin when its stream's rhythm is at 1.0, and the share of the
# bin one deposit fills: kitchen bins fill within a day or two, hazardous ones take weeks.
_PEAK_DEPOSITS_PER_HOUR = {
    Stream.kitchen: 24.0,
    Stream.recyclable: 8.0,
    Stream.residual: 10.0,
    Stream.hazardous: 0.3,
}
_FILL_PER_DEPOSIT_PCT = {
    Stream.kitchen: 0.5,
    Stream.recyclable: 0.6,
    Stream.residual: 0.5,
    Stream.hazardous: 0.25,
}
# Weight of a full 240 L bin: food waste is dense, recyclables (paper, bottles) are light.
_FULL_MASS_KG = {
    Stream.kitchen: 120.0,
    Stream.recyclable: 20.0,
    Stream.residual: 45.0,
    Stream.hazardous: 30.0,
}

# Daily rhythm as (local hour, relative rate) knots, linearly interpolated minute by minute.
_DAYTIME = ((0, 0.03), (6, 0.05), (8, 1.0), (20, 1.0), (22, 0.2), (24, 0.03))
_MEALS = (
    (0, 0.02),
    (6, 0.05),
    (6.75, 0.3),
    (7, 1.0),
    (8, 1.0),
    (8.5, 0.2),
    (11, 0.2),
    (11.5, 1.0),
    (13, 1.0),
    (13.5, 0.2),
    (17, 0.2),
    (17.5, 1.0),
    (19, 1.0),
    (19.5, 0.2),
    (22, 0.1),
    (24, 0.02),
)
_RHYTHM = {
    Stream.kitchen: _MEALS,
    Stream.recyclable: _DAYTIME,
    Stream.residual: _DAYTIME,
    Stream.hazardous: _DAYTIME,
}

# Residents are home in the evening and at weekends; offices and schools are busy on weekdays only.
_SITE_ACTIVITY = {SiteType.compound: 1.3, SiteType.school: 1.0, SiteType.agency: 0.8}
_WEEKEND_ACTIVITY = {SiteType.compound: 1.1, SiteType.school: 0.3, SiteType.agency: 0.2}
# Share of deposits wrongly sorted before the site's own quality is applied: the pilot found
# agencies and schools (supervised, trained) sorting better than residential compounds.
_BASE_CONTAMINATION = {SiteType.agency: 0.08, SiteType.school: 0.06, SiteType.compound: 0.20}
_SITE_QUALITY_RANGE = (0.6, 1.4)

# Leshan-like climate: monthly mean from ~7.5 °C in January to ~26.5 °C in July, ±4 °C a day
# peaking mid-afternoon; rotting food warms a full kitchen bin by a few degrees.
_ANNUAL_MEAN_C = 17.0
_ANNUAL_SWING_C = 9.5
_COLDEST_DAY_OF_YEAR = 15
_DAILY_SWING_C = 4.0
_WARMEST_HOUR = 15.0
_KITCHEN_ROT_C = 3.0

_BATTERY_DRAIN_PER_HOUR = 0.02
_BATTERY_DRAIN_PER_READING = 0.001
# Above this mean, Knuth's Poisson sampler loops too long and the normal approximation is good.
_POISSON_EXACT_MAX = 30.0
_BINOMIAL_EXACT_MAX = 30


@dataclass(frozen=True, slots=True)
class BinProfile:
    """What does not change about a bin during a run: its stream, its traffic, its users' habits."""

    bin_id: str
    stream: Stream
    site_type: SiteType
    traffic: float
    contamination: float
    fill_per_deposit: float
    full_mass_kg: float
    temp_offset_c: float


@dataclass(frozen=True, slots=True)
class BinState:
    """What a bin carries from one reading to the next."""

    seq: int
    fill_pct: float
    battery_pct: float


@dataclass(frozen=True, slots=True)
class Resumed:
    """A bin's last stored reading, for a run that continues where the stored data ends."""

    ts: datetime
    seq: int | None
    fill_pct: float
    battery_pct: float | None


def resume_start(
    start: datetime, ends: Mapping[str, Resumed], bin_ids: Iterable[str], *, interval_s: float
) -> datetime:
    """Where a resumed run starts: an interval after the earliest bin's last stored reading,
    but never before `start` (a bin silent for days does not drag the whole fleet back); from
    `start` when a bin has nothing stored yet. The model skips each bin's rounds that come
    less than an interval after its own last reading, so no period is written twice."""
    last = [ends[b].ts for b in bin_ids if b in ends]
    if not ends or len(last) < len({*bin_ids}):
        return start
    return max(start, min(last) + timedelta(seconds=interval_s))


@dataclass(frozen=True, slots=True)
class Round:
    """Every bin's reading at one simulated moment, in bin-id order."""

    index: int
    ts: datetime
    readings: tuple[tuple[str, Reading], ...]


def _rate_table(knots: tuple[tuple[float, float], ...], peak_per_hour: float) -> list[float]:
    """Expected deposits in each minute of the day, interpolated between the knots."""
    table = []
    for minute in range(_MINUTES_PER_DAY):
        hour = (minute + 0.5) / 60
        for (h0, v0), (h1, v1) in itertools.pairwise(knots):
            if h0 <= hour <= h1:
                table.append((v0 + (v1 - v0) * (hour - h0) / (h1 - h0)) * peak_per_hour / 60)
                break
    return table


@dataclass(frozen=True, slots=True)
class _DailyRhythm:
    """Cumulative expected deposits over the day, so any interval integrates in O(1)."""

    per_minute: tuple[float, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def of(cls, stream: Stream) -> _DailyRhythm:
        per_minute = _rate_table(_RHYTHM[stream], _PEAK_DEPOSITS_PER_HOUR[stream])
        cumulative = [0.0]
        for value in per_minute:
            cumulative.append(cumulative[-1] + value)
        return cls(tuple(per_minute), tuple(cumulative))

    def between(self, start_minute: float, minutes: float) -> float:
        """Expected deposits from `start_minute` (of the local day) for `minutes`."""
        return self._upto(start_minute + minutes) - self._upto(start_minute)

    def _upto(self, minute: float) -> float:
        days, rest = divmod(minute, _MINUTES_PER_DAY)
        whole = int(rest)
        return (
            days * self.cumulative[-1]
            + self.cumulative[whole]
            + (rest - whole) * self.per_minute[whole % _MINUTES_PER_DAY]
        )


_RHYTHMS = {stream: _DailyRhythm.of(stream) for stream in Stream}


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count: exact (Knuth) for small means, normal approximation for large ones."""
    if mean <= 0:
        return 0
    if mean > _POISSON_EXACT_MAX:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def binomial(rng: random.Random, trials: int, p: float) -> int:
    """Successes in `trials` draws of probability `p` (normal approximation for many trials)."""
    if trials <= _BINOMIAL_EXACT_MAX:
        return sum(1 for _ in range(trials) if rng.random() < p)
    mean = trials * p
    return min(trials, max(0, round(rng.gauss(mean, math.sqrt(mean * (1 - p))))))


def _ambient_c(local: datetime) -> float:
    """Air temperature of the city at a local time, without weather."""
    day = local.timetuple().tm_yday
    hour = local.hour + local.minute / 60
    seasonal = _ANNUAL_MEAN_C - _ANNUAL_SWING_C * math.cos(
        2 * math.pi * (day - _COLDEST_DAY_OF_YEAR) / 365.25
    )
    return seasonal + _DAILY_SWING_C * math.cos(2 * math.pi * (hour - _WARMEST_HOUR) / 24)


class FleetModel:
    """The fleet's state and the rules that advance it one reporting interval at a time."""

    def __init__(
        self,
        bins: Iterable[BinTags],
        *,
        seed: int,
        start: datetime,
        interval_s: float,
        timezone: str = DEFAULT_TIMEZONE,
        resume: Mapping[str, Resumed] | None = None,
        first_fill_max: float = FIRST_FILL_MAX_PCT,
    ) -> None:
        """`resume`: bins that continue from their last stored reading (its seq, fill and
        battery), each silent until an interval after it. `first_fill_max`: the other bins
        start at a fill drawn between 0 and this (%)."""
        if start.tzinfo is None:
            raise ValueError("start must be an aware datetime")
        if not 0.0 <= first_fill_max <= 100.0:
            raise ValueError("first_fill_max must be a fill level, 0 to 100")
        interval_ms = round(interval_s * 1000)
        if interval_ms < 1:
            raise ValueError("interval_s must be at least 0.001: readings carry epoch milliseconds")
        # Whole milliseconds for the start and the step, so every round's ts survives the epoch-ms
        # serialisation exactly and no two rounds collapse onto the same millisecond.
        start = start.astimezone(UTC)
        self._start = start.replace(microsecond=start.microsecond // 1000 * 1000)
        self._interval = timedelta(milliseconds=interval_ms)
        self._interval_minutes = interval_ms / 60_000
        self._zone = ZoneInfo(timezone)
        self._round = 0
        self._profiles: list[BinProfile] = []
        self._rngs: dict[str, random.Random] = {}
        self._states: dict[str, BinState] = {}
        self._not_before: dict[str, datetime] = {}
        quality: dict[str, float] = {}
        for tags in sorted(bins, key=lambda t: t.bin):
            if tags.bin in self._rngs:
                raise ValueError(f"bin {tags.bin!r} is listed twice")
            if tags.site not in quality:
                quality[tags.site] = random.Random(f"{seed}:site:{tags.site}").uniform(
                    *_SITE_QUALITY_RANGE
                )
            rng = random.Random(f"{seed}:bin:{tags.bin}")
            stream, site_type = Stream(tags.stream), SiteType(tags.site_type)
            self._profiles.append(
                BinProfile(
                    bin_id=tags.bin,
                    stream=stream,
                    site_type=site_type,
                    traffic=rng.uniform(0.6, 1.4) * _SITE_ACTIVITY[site_type],
                    contamination=min(0.9, _BASE_CONTAMINATION[site_type] * quality[tags.site]),
                    fill_per_deposit=_FILL_PER_DEPOSIT_PCT[stream],
                    full_mass_kg=_FULL_MASS_KG[stream] * rng.uniform(0.85, 1.15),
                    temp_offset_c=rng.uniform(-1.5, 2.5),
                )
            )
            state = BinState(
                seq=0,
                fill_pct=rng.uniform(0.0, first_fill_max),
                battery_pct=rng.uniform(55.0, 100.0),
            )
            end = (resume or {}).get(tags.bin)
            if end is not None:
                state = BinState(
                    seq=0 if end.seq is None else end.seq + 1,
                    fill_pct=end.fill_pct,
                    battery_pct=state.battery_pct if end.battery_pct is None else end.battery_pct,
                )
                self._not_before[tags.bin] = end.ts + self._interval
            self._states[tags.bin] = state
            self._rngs[tags.bin] = rng

    @property
    def bin_ids(self) -> tuple[str, ...]:
        return tuple(profile.bin_id for profile in self._profiles)

    @property
    def next_ts(self) -> datetime:
        """The simulated time of the next round."""
        return self._start + self._round * self._interval

    def empty(self, bin_id: str) -> None:
        """A crew emptied the bin: fill drops to the residue left on its walls."""
        state = self._states[bin_id]
        self._states[bin_id] = replace(state, fill_pct=self._rngs[bin_id].uniform(0.0, 2.0))

    def rounds(self) -> Iterator[Round]:
        """Rounds forever; the caller decides when to stop."""
        while True:
            yield self.step()

    def step(self) -> Round:
        """Advance one interval and return every bin's reading at its end."""
        ts = self.next_ts
        local = ts.astimezone(self._zone)
        # Deposits counted by this reading arrived during the interval that ends at `ts`.
        begin = (ts - self._interval).astimezone(self._zone)
        start_minute = (
            begin.hour * 60 + begin.minute + (begin.second + begin.microsecond / 1e6) / 60
        )
        weekend = begin.weekday() >= 5
        expected = {
            stream: rhythm.between(start_minute, self._interval_minutes)
            for stream, rhythm in _RHYTHMS.items()
        }
        ambient = _ambient_c(local)
        hours = self._interval_minutes / 60
        drain = _BATTERY_DRAIN_PER_HOUR * hours + _BATTERY_DRAIN_PER_READING
        readings = []
        not_before = self._not_before
        for profile in self._profiles:
            bin_id = profile.bin_id
            if not_before and ts < not_before.get(bin_id, ts):
                continue  # resumed: this bin's stored data already covers this round
            rng = self._rngs[bin_id]
            state = self._states[bin_id]
            activity = _WEEKEND_ACTIVITY[profile.site_type] if weekend else 1.0
            deposits = poisson(rng, expected[profile.stream] * profile.traffic * activity)
            contaminated = binomial(rng, deposits, profile.contamination)
            fill = state.fill_pct
            if deposits:
                # A full bin stays at 100: what does not fit lands beside it (overflow).
                fill = min(
                    100.0, fill + deposits * profile.fill_per_deposit * rng.uniform(0.7, 1.3)
                )
            battery = max(0.0, state.battery_pct - drain)
            temp = ambient + profile.temp_offset_c + rng.gauss(0.0, 0.3)
            if profile.stream is Stream.kitchen:
                temp += _KITCHEN_ROT_C * fill / 100
            readings.append(
                (
                    bin_id,
                    Reading(
                        ts=ts,
                        seq=state.seq,
                        fill_pct=round(fill, 1),
                        deposits=deposits,
                        contaminated=contaminated,
                        weight_kg=round(fill / 100 * profile.full_mass_kg, 1),
                        battery_pct=round(battery, 2),
                        temp_c=round(temp, 1),
                    ),
                )
            )
            self._states[bin_id] = BinState(seq=state.seq + 1, fill_pct=fill, battery_pct=battery)
        self._round += 1
        return Round(index=self._round - 1, ts=ts, readings=tuple(readings))
