"""The fleet model on its own: deterministic, contract-valid and shaped like a real city's day."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.times import epoch_ms
from devices.contract import Reading
from devices.registry import BinTags
from simulator.model import FleetModel, Resumed, Round, resume_start

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A Monday at local midnight, so whole simulated days are weekdays until Saturday.
MONDAY = datetime(2026, 11, 23, tzinfo=SHANGHAI)


def tags(
    bin_id: str, *, stream: str = "residual", site: str = "s1", site_type: str = "compound"
) -> BinTags:
    return BinTags(
        bin=bin_id,
        site=site,
        site_type=site_type,
        stream=stream,
        community="c1",
        street="st1",
        district="d1",
        operator="op1",
    )


def mixed_fleet() -> list[BinTags]:
    streams = ("kitchen", "recyclable", "residual", "hazardous")
    site_types = ("agency", "school", "compound")
    return [
        tags(
            f"bin-{site}-{stream}",
            stream=stream,
            site=f"site-{site}",
            site_type=site_types[site % 3],
        )
        for site in range(6)
        for stream in streams
    ]


def run(model: FleetModel, rounds: int) -> list[Round]:
    return [model.step() for _ in range(rounds)]


def wire(rounds: list[Round]) -> list[str]:
    return [
        f"{bin_id} {r.model_dump_json(exclude_none=True)}"
        for rnd in rounds
        for bin_id, r in rnd.readings
    ]


def test_same_seed_gives_byte_identical_readings() -> None:
    first = wire(run(FleetModel(mixed_fleet(), seed=7, start=MONDAY, interval_s=300), 100))
    again = wire(run(FleetModel(mixed_fleet(), seed=7, start=MONDAY, interval_s=300), 100))
    other = wire(run(FleetModel(mixed_fleet(), seed=8, start=MONDAY, interval_s=300), 100))
    assert first == again
    assert first != other


def test_a_bins_readings_do_not_depend_on_the_rest_of_the_fleet() -> None:
    alone = FleetModel([tags("bin-a", stream="kitchen")], seed=3, start=MONDAY, interval_s=600)
    crowded = FleetModel(
        [tags("bin-0"), tags("bin-a", stream="kitchen"), tags("bin-z", site="s2")],
        seed=3,
        start=MONDAY,
        interval_s=600,
    )
    a_alone = [dict(rnd.readings)["bin-a"] for rnd in run(alone, 50)]
    a_crowded = [dict(rnd.readings)["bin-a"] for rnd in run(crowded, 50)]
    assert a_alone == a_crowded


def test_seq_counts_from_zero_and_ts_strictly_increases_per_bin() -> None:
    model = FleetModel(mixed_fleet(), seed=1, start=MONDAY, interval_s=60)
    per_bin: dict[str, list[Reading]] = defaultdict(list)
    for rnd in run(model, 30):
        assert len(rnd.readings) == 24
        for bin_id, reading in rnd.readings:
            per_bin[bin_id].append(reading)
    for readings in per_bin.values():
        assert [r.seq for r in readings] == list(range(30))
        stamps = [epoch_ms(r.ts) for r in readings]
        assert all(b - a == 60_000 for a, b in itertools.pairwise(stamps))


def test_millisecond_intervals_still_give_distinct_epoch_ms() -> None:
    start = datetime(2026, 11, 23, 8, 0, 0, 500, tzinfo=UTC)  # half a millisecond in
    model = FleetModel([tags("bin-a")], seed=1, start=start, interval_s=0.001)
    stamps = [epoch_ms(rnd.ts) for rnd in run(model, 20)]
    assert stamps == list(range(stamps[0], stamps[0] + 20))


def test_interval_below_a_millisecond_is_refused() -> None:
    with pytest.raises(ValueError, match=r"0\.001"):
        FleetModel([tags("bin-a")], seed=1, start=MONDAY, interval_s=0.0004)


def test_every_reading_survives_the_contract_round_trip() -> None:
    model = FleetModel(mixed_fleet(), seed=2, start=MONDAY, interval_s=900)
    for rnd in run(model, 96):
        for _bin_id, reading in rnd.readings:
            assert (
                Reading.model_validate_json(reading.model_dump_json(exclude_none=True)) == reading
            )


def test_counts_and_levels_stay_within_the_contract_even_when_bins_overflow() -> None:
    fleet = [tags(f"k{i}", stream="kitchen", site=f"s{i}") for i in range(10)]
    model = FleetModel(fleet, seed=5, start=MONDAY, interval_s=1800)
    readings = [r for rnd in run(model, 48 * 3) for _bin_id, r in rnd.readings]
    assert all(0 <= r.fill_pct <= 100 for r in readings)
    assert all(r.contaminated is not None and r.deposits is not None for r in readings)
    assert all(0 <= (r.contaminated or 0) <= (r.deposits or 0) for r in readings)
    overflowing = [r for r in readings if r.fill_pct == 100 and (r.deposits or 0) > 0]
    assert overflowing, "three days without emptying should overflow kitchen bins"


def test_emptying_drops_fill_to_near_zero() -> None:
    model = FleetModel([tags("bin-a", stream="kitchen")], seed=4, start=MONDAY, interval_s=3600)
    run(model, 30)
    model.empty("bin-a")
    assert dict(model.step().readings)["bin-a"].fill_pct < 15


def test_kitchen_bins_fill_faster_than_hazardous_ones_over_a_day() -> None:
    fleet = [
        tags(f"{stream}-{i}", stream=stream, site=f"s{i}")
        for stream in ("kitchen", "hazardous")
        for i in range(10)
    ]
    model = FleetModel(fleet, seed=6, start=MONDAY, interval_s=300)
    for bin_tags in fleet:
        model.empty(bin_tags.bin)
    first = dict(model.step().readings)
    last = dict(run(model, 288)[-1].readings)
    gain = {
        stream: sum(
            last[b.bin].fill_pct - first[b.bin].fill_pct for b in fleet if b.stream == stream
        )
        for stream in ("kitchen", "hazardous")
    }
    assert gain["kitchen"] > 10 * gain["hazardous"]


def test_compounds_sort_worse_than_schools() -> None:
    fleet = [
        tags(f"{site_type}-{i}", site=f"{site_type}-site-{i}", site_type=site_type)
        for site_type in ("compound", "school")
        for i in range(8)
    ]
    model = FleetModel(fleet, seed=9, start=MONDAY, interval_s=1800)
    deposits: dict[str, int] = defaultdict(int)
    contaminated: dict[str, int] = defaultdict(int)
    for rnd in run(model, 48 * 4):
        for bin_id, reading in rnd.readings:
            site_type = bin_id.split("-")[0]
            deposits[site_type] += reading.deposits or 0
            contaminated[site_type] += reading.contaminated or 0
    assert deposits["school"] > 500
    assert (
        contaminated["compound"] / deposits["compound"]
        > contaminated["school"] / deposits["school"]
    )


def test_lunchtime_brings_more_kitchen_waste_than_three_in_the_morning() -> None:
    fleet = [tags(f"k{i}", stream="kitchen", site=f"s{i}") for i in range(10)]
    model = FleetModel(fleet, seed=11, start=MONDAY, interval_s=600)
    by_hour: dict[int, int] = defaultdict(int)
    for rnd in run(model, 6 * 24 * 5):
        # A reading counts what arrived during the ten minutes before it.
        hour = (rnd.ts - timedelta(minutes=10)).astimezone(SHANGHAI).hour
        by_hour[hour] += sum(r.deposits or 0 for _bin_id, r in rnd.readings)
    assert by_hour[12] > 5 * max(by_hour[3], 1)


def test_a_resumed_fleet_starts_after_the_earliest_stored_end_and_skips_what_is_stored() -> None:
    fleet = [tags("a"), tags("b")]
    minute = timedelta(minutes=1)
    backfill_from = MONDAY
    ends = {
        "a": Resumed(ts=MONDAY + 30 * minute, seq=29, fill_pct=42.0, battery_pct=61.0),
        "b": Resumed(ts=MONDAY + 32 * minute, seq=7, fill_pct=99.0, battery_pct=None),
    }
    start = resume_start(backfill_from, ends, ["a", "b"], interval_s=60)
    assert start == MONDAY + 31 * minute
    # A bin with nothing stored, or a stored end older than the backfill, changes nothing.
    assert resume_start(backfill_from, ends, ["a", "b", "c"], interval_s=60) == backfill_from
    assert resume_start(MONDAY + 40 * minute, ends, ["a", "b"], interval_s=60) == (
        MONDAY + 40 * minute
    )
    model = FleetModel(fleet, seed=1, start=start, interval_s=60, resume=ends)
    rounds = run(model, 3)
    sent = [(bin_id, r.ts, r.seq) for rnd in rounds for bin_id, r in rnd.readings]
    # b's stored data covers up to 32 minutes: its first new reading is at 33, with seq 8.
    assert sent == [
        ("a", MONDAY + 31 * minute, 30),
        ("a", MONDAY + 32 * minute, 31),
        ("a", MONDAY + 33 * minute, 32),
        ("b", MONDAY + 33 * minute, 8),
    ]
    first_a = rounds[0].readings[0][1]
    assert first_a.fill_pct >= 42.0  # fill continues from the stored level, never drops


def test_first_fills_stay_under_every_threshold_unless_asked_to_spread_to_full() -> None:
    """By default a bin starts 0-70 % full, under every default threshold (70-85 %); the demo's
    fresh start asks for 0-100 %, so some bins are over their threshold from the first reading
    whatever the hour (a first `make demo` at night had nothing to plan). The spread changes
    nothing else a bin draws: the same seed gives the same deposits."""
    fleet = [
        tags(f"bin-{n}-{stream}", stream=stream, site=f"site-{n}")
        for n in range(40)
        for stream in ("kitchen", "recyclable", "residual", "hazardous")
    ]
    at_night = datetime(2026, 12, 4, 1, 30, tzinfo=SHANGHAI)
    default = run(FleetModel(fleet, seed=1, start=at_night, interval_s=60), 1)[0]
    spread = run(FleetModel(fleet, seed=1, start=at_night, interval_s=60, first_fill_max=100), 1)[0]
    assert max(r.fill_pct for _b, r in default.readings) < 70.0
    over = [b for b, r in spread.readings if r.fill_pct >= 85.0]
    assert len(over) >= 10, over  # about 15 % of 160 bins
    assert [r.deposits for _b, r in default.readings] == [r.deposits for _b, r in spread.readings]
    with pytest.raises(ValueError, match="first_fill_max"):
        FleetModel(fleet, seed=1, start=at_night, interval_s=60, first_fill_max=101)
