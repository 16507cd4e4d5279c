"""The pure arithmetic of compliance (api/compliance.py, api/compliance_schemas.py): no servers."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from api.compliance import (
    DeviceCounts,
    Sums,
    device_counts,
    metrics,
    periods,
    ranked,
    ranking_csv,
    score,
    total,
)
from api.compliance_schemas import Ranking, ReportWindow, SiteRow
from binwatch.errors import InvalidRequest
from devices.contract import SiteType

START = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def test_accuracy_is_a_ratio_of_sums_not_a_mean_of_percentages() -> None:
    few = Sums(deposits=2, contaminated=2, checked_deposits=2, bin_hours=1)
    many = Sums(deposits=200, contaminated=0, checked_deposits=200, bin_hours=1)
    result = metrics(few + many, bins=2, start=START, end=START + DAY, devices=None)
    assert result.accuracy == pytest.approx(200 / 202)
    assert result.accuracy is not None
    assert round(100 * result.accuracy, 1) == 99.0  # the mean of 0 % and 100 % would be 50 %


def test_no_deposits_is_null_accuracy_not_100_percent() -> None:
    result = metrics(Sums(bin_hours=5), bins=1, start=START, end=START + DAY, devices=None)
    assert result.accuracy is None
    assert result.deposits_per_day == 0
    # Unchecked deposits alone (no contamination count) do not make accuracy 100 % either.
    unchecked = metrics(Sums(deposits=9), bins=1, start=START, end=START + DAY, devices=None)
    assert unchecked.accuracy is None


def test_participation_overflow_share_and_coverage() -> None:
    sums = Sums(deposits=96, overflow_minutes=90.0, over90_minutes=120.0, bin_hours=12)
    result = metrics(sums, bins=4, start=START, end=START + 2 * DAY, devices=DeviceCounts(1, 2))
    assert result.deposits_per_day == 48
    assert result.deposits_per_bin_day == 12
    assert result.overflow_share == pytest.approx(90 / (12 * 60))
    assert result.reporting_coverage == pytest.approx(12 / (4 * 48))
    assert (result.bins_offline, result.bins_low_battery) == (1, 2)


def test_a_group_without_bins_has_no_rates() -> None:
    result = metrics(Sums(), bins=0, start=START, end=START + DAY, devices=None)
    assert result.deposits_per_bin_day is None and result.reporting_coverage is None
    assert score(result).value is None


def test_device_counts() -> None:
    counts = device_counts(
        ["a", "b", "c"], recent={"a", "b", "elsewhere"}, battery={"a": 19.9, "b": 20.0, "x": 1}
    )
    assert counts == DeviceCounts(offline=1, low_battery=1)


def test_score_weights_and_renormalisation() -> None:
    full = metrics(
        Sums(deposits=100, contaminated=10, checked_deposits=100, overflow_minutes=36.0,
             bin_hours=12),
        bins=1, start=START, end=START + timedelta(hours=24), devices=None,
    )  # fmt: skip
    # accuracy 90; overflow share 36 / 720 = 5 % → 50; coverage 12 / 24 → 50.
    assert score(full).value == pytest.approx(0.5 * 90 + 0.3 * 50 + 0.2 * 50)
    no_deposits = metrics(
        Sums(overflow_minutes=36.0, bin_hours=12),
        bins=1, start=START, end=START + timedelta(hours=24), devices=None,
    )  # fmt: skip
    result = score(no_deposits)
    assert result.value == pytest.approx((0.3 * 50 + 0.2 * 50) / 0.5)
    shares = {part.name: part.effective_weight for part in result.parts}
    assert shares == {"accuracy": None, "overflow": pytest.approx(0.6), "device_health": 0.4}
    # Overflowing for 10 % of the time or more scores 0 on overflow, never below.
    awful = metrics(Sums(overflow_minutes=600.0, bin_hours=10), bins=1, start=START,
                    end=START + timedelta(hours=10), devices=None)  # fmt: skip
    assert {p.name: p.value for p in score(awful).parts}["overflow"] == 0


def _row(site_id: str, value: float | None) -> SiteRow:
    sums = Sums(bin_hours=1)
    base = metrics(sums, bins=1, start=START, end=START + timedelta(hours=1), devices=None)
    result = score(base).model_copy(update={"value": value})
    return SiteRow(rank=0, id=site_id, name=site_id, site_type=SiteType.compound,
                   community_id="c", score=result, metrics=base)  # fmt: skip


def test_ranking_order_ties_and_missing_scores() -> None:
    rows = [_row("d", 80.001), _row("a", None), _row("c", 90.0), _row("b", 80.0), _row("e", 70)]
    result = ranked(rows)
    assert [(r.rank, r.id) for r in result] == [(1, "c"), (2, "b"), (2, "d"), (4, "e"), (5, "a")]
    assert ranked(list(reversed(rows))) == result


def test_local_days_weeks_and_months() -> None:
    # Shanghai days start at 16:00Z; readings at 15:00Z and 17:00Z fall on different local days.
    tz = "Asia/Shanghai"
    start, end = datetime(2026, 3, 1, 12, tzinfo=UTC), datetime(2026, 3, 2, 0, tzinfo=UTC)
    days = [
        (datetime(2026, 2, 28, 16, tzinfo=UTC), Sums(deposits=1)),  # local 1 March
        (datetime(2026, 3, 1, 16, tzinfo=UTC), Sums(deposits=2)),  # local 2 March
    ]
    midnight = datetime(2026, 3, 1, 16, tzinfo=UTC)
    assert periods(days, every="1d", start=start, end=end, timezone=tz) == [
        (start, midnight, Sums(deposits=1)),
        (midnight, end, Sums(deposits=2)),
    ]
    assert periods(days, every="1w", start=start, end=end, timezone=tz) == [
        (start, datetime(2026, 3, 1, 16, tzinfo=UTC), Sums(deposits=1)),  # week of Mon 23 Feb
        (datetime(2026, 3, 1, 16, tzinfo=UTC), end, Sums(deposits=2)),  # week of Mon 2 March
    ]
    month = periods(days, every="1mo", start=start, end=end, timezone=tz)
    assert month == [(start, end, Sums(deposits=3))]


def test_months_across_a_dst_change_are_whole_local_months() -> None:
    tz = "Europe/Berlin"  # 29 March 2026: CET → CEST
    start, end = datetime(2026, 2, 28, 23, tzinfo=UTC), datetime(2026, 4, 30, 22, tzinfo=UTC)
    days = [(datetime(2026, 3, 15, tzinfo=UTC), Sums(bin_hours=1)),
            (datetime(2026, 4, 15, tzinfo=UTC), Sums(bin_hours=2))]  # fmt: skip
    march, april = periods(days, every="1mo", start=start, end=end, timezone=tz)
    assert march[:2] == (start, datetime(2026, 3, 31, 22, tzinfo=UTC))
    assert (march[1] - march[0]) == timedelta(hours=31 * 24 - 1)
    assert april[:2] == (datetime(2026, 3, 31, 22, tzinfo=UTC), end)


def test_totals_add_up() -> None:
    assert total([Sums(deposits=1, bin_hours=2), Sums(deposits=3, overflow_minutes=1.5)]) == Sums(
        deposits=4, bin_hours=2, overflow_minutes=1.5
    )


def window(**overrides: object) -> ReportWindow:
    args: dict[str, object] = {
        "start": None, "end": None, "every": None, "source": "auto",
        "now": datetime(2026, 3, 10, 8, 41, tzinfo=UTC), "timezone": "Asia/Shanghai",
    }  # fmt: skip
    args.update(overrides)
    return ReportWindow.build(**args)  # type: ignore[arg-type]


def test_report_window_defaults_and_source() -> None:
    default = window()
    assert default.end == datetime(2026, 3, 10, 8, tzinfo=UTC)
    assert default.end - default.start == 7 * DAY and default.source == "hourly"
    day = window(start=datetime(2026, 3, 9, 8, tzinfo=UTC))
    assert (day.source, day.hours) == ("raw", 24)
    assert window(start=datetime(2026, 3, 9, 8, tzinfo=UTC), source="hourly").source == "hourly"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"start": datetime(2026, 3, 10, 9, tzinfo=UTC)}, "start must be before end"),
        ({"end": datetime(2026, 3, 10, 8, 30, tzinfo=UTC)}, "end must be on a whole hour"),
        ({"start": datetime(2025, 3, 1, tzinfo=UTC)}, "at most 366"),
        ({"start": datetime(2026, 3, 1, tzinfo=UTC), "source": "raw"}, "source=raw covers"),
    ],
)
def test_report_window_refusals(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        window(**overrides)


def test_ranking_csv_has_the_json_numbers_and_empty_nulls() -> None:
    rows = ranked([_row("b", 50.5), _row("a", None)])
    ranking = Ranking(site_type=SiteType.compound, start=START, end=START + DAY,
                      timezone="Asia/Shanghai", source="hourly", items=rows)  # fmt: skip
    lines = list(csv.DictReader(io.StringIO(ranking_csv(ranking))))
    assert [(line["rank"], line["id"], line["score"]) for line in lines] == [
        ("1", "b", "50.5"),
        ("2", "a", ""),
    ]
    assert lines[0]["accuracy"] == "" and lines[0]["reporting_coverage"] == "1.0"
