"""The pure arithmetic of compliance (compliance/figures.py, compliance/schemas.py), and the
collection requests' SQL reads (compliance/requests.py) on each registry backend, without
MQTT or InfluxDB."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from binwatch.database import migrate
from collection.models import CollectionRequest
from compliance.figures import (
    DeviceCounts,
    RequestSums,
    Sums,
    csv_cell,
    device_counts,
    metrics,
    nearest_rank,
    period_bounds,
    periods,
    ranking_csv,
    request_total,
    score,
    total,
    within_deadline,
)
from compliance.ranking import ranked, rule
from compliance.requests import request_sums
from compliance.schemas import Ranking, ReportSpan, ReportWindow, SiteRow
from core.coverage import Coverage, Covered
from core.errors import InvalidRequest
from core.sql import make_engine
from devices.contract import SiteType
from devices.fleet import default_fleet_path, import_fleet, load_fleet
from devices.models import Bin, Site

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
    assert shares == {
        "accuracy": None,
        "overflow": pytest.approx(0.6),
        "device_health": 0.4,
        "collection": None,  # no requests: nothing to judge
    }
    # Overflowing for 10 % of the time or more scores 0 on overflow, never below.
    awful = metrics(Sums(overflow_minutes=600.0, bin_hours=10), bins=1, start=START,
                    end=START + timedelta(hours=10), devices=None)  # fmt: skip
    assert {p.name: p.value for p in score(awful).parts}["overflow"] == 0


HOUR_RULE = rule(START, START + timedelta(hours=1))  # 1 checked deposit is enough evidence


def _row(site_id: str, value: float | None) -> SiteRow:
    sums = Sums(deposits=1, checked_deposits=1 if value is not None else 0, bin_hours=1)
    base = metrics(sums, bins=1, start=START, end=START + timedelta(hours=1), devices=None)
    result = score(base).model_copy(update={"value": value})
    return SiteRow(rank=0, id=site_id, name=site_id, site_type=SiteType.compound,
                   community_id="c", score=result, metrics=base)  # fmt: skip


def test_ranking_order_ties_and_missing_scores() -> None:
    rows = [_row("d", 80.001), _row("a", None), _row("c", 90.0), _row("b", 80.0), _row("e", 70)]
    result = ranked(rows, HOUR_RULE)
    assert [(r.rank, r.id) for r in result] == [
        (1, "c"), (2, "b"), (2, "d"), (4, "e"), (None, "a")
    ]  # fmt: skip
    assert ranked(list(reversed(rows)), HOUR_RULE) == result


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
    args: dict[str, object] = {"start": None, "end": None, "every": None, "source": "auto"}
    args.update(overrides)
    now = datetime(2026, 3, 10, 8, 41, tzinfo=UTC)
    span = ReportSpan.check(now=now, **args)  # type: ignore[arg-type]
    covered = Coverage((Covered(datetime(2026, 1, 1, tzinfo=UTC), None),))
    return span.window(now=now, timezone="Asia/Shanghai", coverage=lambda _start, _end: covered)


def test_report_window_defaults_and_source() -> None:
    default = window()
    assert default.end == datetime(2026, 3, 10, 8, tzinfo=UTC)
    assert default.end - default.start == 7 * DAY and default.source == "daily"
    # Local days start at 16:00Z; hours that ended 8 hours ago or more are settled.
    assert [(s.start.day, s.start.hour, s.tier) for s in default.segments] == [
        (3, 8, "site_hour"),
        (3, 16, "daily"),
        (9, 16, "site_hour"),
        (10, 0, "hourly"),
    ]
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
    b, a = ranked([_row("b", 50.5), _row("a", None)], HOUR_RULE)
    ranking = Ranking(site_type=SiteType.compound, start=START, end=START + DAY,
                      timezone="Asia/Shanghai", source="hourly", rule=HOUR_RULE, items=[b],
                      not_ranked=[a])  # fmt: skip
    lines = list(csv.DictReader(io.StringIO("".join(ranking_csv(ranking)))))
    assert [(line["rank"], line["id"], line["score"], line["not_ranked"]) for line in lines] == [
        ("1", "b", "50.5", ""),
        ("", "a", "", "too_few_checked_deposits"),
    ]
    assert lines[0]["accuracy"] == "1.0" and lines[0]["reporting_coverage"] == "1.0"


# Texts a spreadsheet would run as formulas (each start OWASP lists), and texts it would not.
FORMULAS = ('=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx")
PLAIN = ("肖坝社区 =1", "a-b", "1-2", "'quoted")


def test_csv_keeps_a_name_that_looks_like_a_formula_a_name() -> None:
    rows = [_row(f"s{i}", 50.0).model_copy(update={"name": n})
            for i, n in enumerate(FORMULAS + PLAIN)]  # fmt: skip
    ranking = Ranking(site_type=SiteType.compound, start=START, end=START + DAY,
                      timezone="Asia/Shanghai", source="hourly", rule=HOUR_RULE,
                      items=ranked(rows, HOUR_RULE), not_ranked=[])  # fmt: skip
    lines = list(csv.DictReader(io.StringIO("".join(ranking_csv(ranking)), newline="")))
    names = {line["id"]: line["name"] for line in lines}
    assert [names[f"s{i}"] for i in range(len(FORMULAS + PLAIN))] == [
        *("'" + name for name in FORMULAS),
        *PLAIN,
    ]
    assert csv_cell(-2.5) == -2.5 and csv_cell(None) == ""  # figures stay numbers


def test_period_bounds_list_every_period_with_or_without_data() -> None:
    tz = "Asia/Shanghai"
    start, end = datetime(2026, 3, 1, 12, tzinfo=UTC), datetime(2026, 3, 3, 20, tzinfo=UTC)
    # Local midnights at 16:00Z: 1 March (cut to 12:00Z), 2 March, 3 March, 4 March (cut).
    assert period_bounds(every="1d", start=start, end=end, timezone=tz) == [
        (start, datetime(2026, 3, 1, 16, tzinfo=UTC)),
        (datetime(2026, 3, 1, 16, tzinfo=UTC), datetime(2026, 3, 2, 16, tzinfo=UTC)),
        (datetime(2026, 3, 2, 16, tzinfo=UTC), datetime(2026, 3, 3, 16, tzinfo=UTC)),
        (datetime(2026, 3, 3, 16, tzinfo=UTC), end),
    ]
    # The periods of the data are among them, with the same bounds.
    days = [(datetime(2026, 3, 2, 16, tzinfo=UTC), Sums(deposits=1))]
    ((begin, finish, _),) = periods(days, every="1d", start=start, end=end, timezone=tz)
    assert (begin, finish) in period_bounds(every="1d", start=start, end=end, timezone=tz)
    assert period_bounds(every="1mo", start=start, end=end, timezone=tz) == [(start, end)]


# --- collection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "median", "p90"),
    [
        ([], None, None),
        ([7.5], 7.5, 7.5),  # one value is every percentile
        ([1, 2, 3, 4, 5], 3, 5),  # ranks ⌈2.5⌉ = 3 and ⌈4.5⌉ = 5
        ([10, 20, 30, 40], 20, 40),  # even: ⌈2⌉ = 2, the lower middle value; ⌈3.6⌉ = 4
        ([float(v) for v in range(1, 11)], 5, 9),  # 0.9 × 10 = 9 exactly: rank 9, not 10
        ([float(v) for v in range(1, 21)], 10, 18),
    ],
)
def test_nearest_rank_percentiles(
    values: list[float], median: float | None, p90: float | None
) -> None:
    assert (nearest_rank(values, 50), nearest_rank(values, 90)) == (median, p90)


def test_request_figures_add_across_sites_and_periods() -> None:
    a = RequestSums(requests=3, on_time=1, missed=1, disputes=1, response_minutes=(30.0, 90.0))
    b = RequestSums(requests=2, on_time=1, escalations=2, response_minutes=(10.0,))
    both = RequestSums(requests=5, on_time=2, missed=1, disputes=1, escalations=2,
                       response_minutes=(30.0, 90.0, 10.0))  # fmt: skip
    assert a + b == both == request_total([a, b])
    assert request_total([]) == RequestSums()
    figures = metrics(Sums(), bins=1, start=START, end=START + DAY, devices=None, requests=a + b)
    assert (figures.requests, figures.requests_completed) == (5, 3)
    assert (figures.requests_on_time, figures.requests_missed) == (2, 1)
    # Percentiles of the joined times (10, 30, 90), never a mean of the sites' percentiles.
    assert (figures.response_median_minutes, figures.response_p90_minutes) == (30.0, 90.0)
    assert figures.completed_within_deadline == pytest.approx(2 / 3)
    assert (figures.disputes, figures.escalations) == (1, 2)


def test_within_deadline_needs_a_verdict() -> None:
    assert within_deadline(RequestSums(requests=4, on_time=3, missed=1)) == 0.75
    assert within_deadline(RequestSums(requests=2, missed=2)) == 0.0
    # Requests open and not yet due (or cancelled) have no verdict: no share, not 100 %.
    nothing_judged = metrics(Sums(), bins=1, start=START, end=START + DAY, devices=None,
                             requests=RequestSums(requests=2))  # fmt: skip
    assert nothing_judged.completed_within_deadline is None
    assert nothing_judged.response_median_minutes is None
    assert {p.name: p.value for p in score(nothing_judged).parts}["collection"] is None


def test_score_with_and_without_the_collection_part() -> None:
    sums = Sums(deposits=100, contaminated=10, checked_deposits=100, overflow_minutes=36.0,
                bin_hours=12)  # fmt: skip
    end = START + timedelta(hours=24)
    # accuracy 90, overflow 50, device health 50 (as above); 3 of 4 judged requests on time: 75.
    requests = RequestSums(requests=5, on_time=3, missed=1, response_minutes=(20.0,) * 4)
    without = score(metrics(sums, bins=1, start=START, end=end, devices=None))
    assert without.value == pytest.approx(0.5 * 90 + 0.3 * 50 + 0.2 * 50)  # 70
    with_collection = score(metrics(sums, bins=1, start=START, end=end, devices=None,
                                    requests=requests))  # fmt: skip
    # The weights 0.5, 0.3, 0.2, 0.25 renormalised over 1.25: 0.4, 0.24, 0.16, 0.2.
    assert with_collection.value == pytest.approx(
        (0.5 * 90 + 0.3 * 50 + 0.2 * 50 + 0.25 * 75) / 1.25
    )  # 71.0
    assert with_collection.value == pytest.approx(71.0)
    parts = {part.name: part for part in with_collection.parts}
    assert [part.name for part in with_collection.parts] == [
        "accuracy", "overflow", "device_health", "collection"
    ]  # fmt: skip
    assert parts["collection"].value == 75
    assert parts["collection"].weight == 0.25
    assert parts["collection"].effective_weight == pytest.approx(0.2)
    assert parts["accuracy"].effective_weight == pytest.approx(0.4)
    assert parts["collection"].points == pytest.approx(15.0)
    assert sum(p.points for p in parts.values() if p.points is not None) == pytest.approx(71.0)
    # A group whose bins are gone but whose requests are judged is scored on collection alone.
    binless = score(metrics(Sums(), bins=0, start=START, end=end, devices=None,
                            requests=requests))  # fmt: skip
    assert binless.value == pytest.approx(75)


def test_csv_has_the_collection_columns() -> None:
    base = metrics(Sums(bin_hours=1), bins=1, start=START, end=START + timedelta(hours=1),
                   devices=None, requests=RequestSums(requests=1, on_time=1,
                                                      response_minutes=(12.5,)))  # fmt: skip
    row = SiteRow(rank=0, id="a", name="a", site_type=SiteType.compound, community_id="c",
                  score=score(base), metrics=base)  # fmt: skip
    ranking = Ranking(site_type=SiteType.compound, start=START, end=START + DAY,
                      timezone="Asia/Shanghai", source="hourly", rule=HOUR_RULE, items=[],
                      not_ranked=ranked([row], HOUR_RULE))  # fmt: skip
    (line,) = csv.DictReader(io.StringIO("".join(ranking_csv(ranking))))
    assert (line["requests"], line["response_median_minutes"]) == ("1", "12.5")
    # Overflow, device health and collection all 100, weighted 0.3, 0.2 and 0.25 of 0.75.
    collection = {p.name: p for p in row.score.parts}["collection"]
    assert collection.points == pytest.approx(100 * 0.25 / 0.75)
    assert line["completed_within_deadline"] == "1.0"
    assert line["collection_points"] == str(collection.points)
    assert float(line["score"]) == pytest.approx(100)


# --- the registry reads of collection requests (SQLite and PostgreSQL, no MQTT or InfluxDB) ----------------------------

X, Y = "sz-peoples-government", "lvxin-street-office"


@pytest.fixture
def registry(registry_url: str) -> Iterator[Session]:
    """A registry migrated and loaded with the pilot fleet, on each backend."""
    url = registry_url
    migrate(url)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            import_fleet(session, load_fleet(default_fleet_path()))
            yield session
    finally:
        engine.dispose()


def add_request(
    session: Session,
    bin_id: str,
    *,
    created: datetime,
    due: datetime,
    status: str,
    completed: datetime | None = None,
    escalation_level: int = 0,
    operator_id: str | None = None,
) -> None:
    """A collection request written straight into the registry, as the collector would have
    left it (the operator defaults to the site's)."""
    bin_ = session.get_one(Bin, bin_id)
    site = session.get_one(Site, bin_.site_id)
    session.add(
        CollectionRequest(
            bin_id=bin_.id,
            site_id=site.id,
            operator_id=operator_id or site.operator_id,
            stream=bin_.stream,
            rule="manual",
            reason="test",
            status=status,
            created_at=created,
            due_at=due,
            updated_at=completed or created,
            completed_at=completed,
            escalation_level=escalation_level,
            webhook_attempts=0,
        )
    )
    session.commit()


def test_requests_judged_against_their_deadlines(registry: Session) -> None:
    h = timedelta(hours=1)
    end = START + DAY
    kitchen, residual = f"{X}-s1-kitchen", f"{X}-s1-residual"
    recyclable, hazardous = f"{X}-s1-recyclable", f"{X}-s1-hazardous"
    # Completed 30 min after creation, long before its deadline: on time.
    add_request(registry, kitchen, created=START, due=START + 12 * h, status="verified",
                completed=START + 30 * timedelta(minutes=1))  # fmt: skip
    # Completed at 7 h, due at 5 h (escalated meanwhile): completed late, missed; 360 min.
    add_request(registry, residual, created=START + h, due=START + 5 * h, status="completed",
                completed=START + 7 * h, escalation_level=1)  # fmt: skip
    # Still open past its deadline (10 h), escalated twice: missed.
    add_request(registry, recyclable, created=START + 2 * h, due=START + 10 * h,
                status="acknowledged", escalation_level=2)  # fmt: skip
    # Cancelled: counted as a request, never judged.
    add_request(registry, hazardous, created=START + 3 * h, due=START + 15 * h,
                status="cancelled")  # fmt: skip
    # Completed exactly at its deadline (on time), then disputed by the readings; 90 min.
    add_request(registry, kitchen, created=START + 4 * h, due=START + 5.5 * h, status="disputed",
                completed=START + 5.5 * h)  # fmt: skip
    # Open, due exactly at the window's end: missed (due means due_at ≤ the judging instant).
    add_request(registry, hazardous, created=START + 12 * h, due=end, status="open")
    # Open and not yet due at the window's end: no verdict.
    add_request(registry, kitchen, created=START + 20 * h, due=end + 12 * h, status="dispatched")
    # Not this window's: created a minute before it, or at its (exclusive) end; another site's.
    add_request(registry, residual, created=START - timedelta(minutes=1), due=START,
                status="open")  # fmt: skip
    add_request(registry, recyclable, created=end, due=end + h, status="verified",
                completed=end + h)  # fmt: skip
    add_request(registry, f"{Y}-s1-kitchen", created=START + h, due=START + 3 * h,
                status="verified", completed=START + 2.5 * h)  # fmt: skip

    got = request_sums(registry, [X], start=START, end=end, as_of=end)
    assert set(got) == {(X, 0)}
    figures = metrics(Sums(), bins=4, start=START, end=end, devices=None, requests=got[X, 0])
    assert (figures.requests, figures.requests_completed) == (7, 3)
    assert sorted(got[X, 0].response_minutes) == [30.0, 90.0, 360.0]
    # Nearest rank of 3: median rank ⌈1.5⌉ = 2, p90 rank ⌈2.7⌉ = 3.
    assert (figures.response_median_minutes, figures.response_p90_minutes) == (90.0, 360.0)
    # On time: the 30-min and the disputed one; missed: late, open overdue, open due at the end.
    assert (figures.requests_on_time, figures.requests_missed) == (2, 3)
    assert figures.completed_within_deadline == pytest.approx(2 / 5)
    assert (figures.disputes, figures.escalations) == (1, 2)

    # Judged 11 h in: the request due at the end is not due yet; the one due at 10 h is.
    early = request_sums(registry, [X], start=START, end=end, as_of=START + 11 * h)[X, 0]
    assert (early.on_time, early.missed) == (2, 2)

    # Cut at 12:00: the request created exactly at the cut belongs to the later period.
    halves = request_sums(registry, [X, Y], start=START, end=end, as_of=end,
                          splits=[START + 12 * h])  # fmt: skip
    assert {key: (v.requests, v.on_time, v.missed) for key, v in halves.items()} == {
        (X, 0): (5, 2, 2),
        (X, 1): (2, 0, 1),
        (Y, 0): (1, 1, 0),
    }
    assert halves[Y, 0].response_minutes == (90.0,)

    # An operator's report counts only the requests assigned to it.
    add_request(registry, f"{X}-s1-recyclable", created=START + 13 * h, due=START + 14 * h,
                status="verified", completed=START + 14 * h, operator_id="op-jiejing")  # fmt: skip
    assert request_sums(registry, [X], start=START, end=end, as_of=end)[X, 0].requests == 8
    lvyuan = request_sums(registry, [X], start=START, end=end, as_of=end, operator_id="op-lvyuan")
    assert lvyuan[X, 0].requests == 7
    assert request_sums(registry, [], start=START, end=end, as_of=end) == {}
