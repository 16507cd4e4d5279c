"""The ranking rule (compliance/ranking.py, docs/metrics.md "Ranking"), by hand: who has enough
evidence to be ranked, the order, the ties and their order, and the sites listed apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from compliance.figures import Sums, metrics, score
from compliance.ranking import ranked, rule
from compliance.schemas import NotRanked, SiteRow
from devices.contract import SiteType

START = datetime(2026, 11, 1, tzinfo=UTC)
MONTH = START + timedelta(days=30)
HOURS = 30 * 24


def site(site_id: str, *, checked: int, contaminated: int, bins: int = 1) -> SiteRow:
    """A site of `bins` bins, each reporting every hour of the 30 days, never overflowing."""
    sums = Sums(
        deposits=checked,
        contaminated=contaminated,
        checked_deposits=checked,
        bin_hours=bins * HOURS,
    )
    figures = metrics(sums, bins=bins, start=START, end=MONTH, devices=None)
    return SiteRow(rank=0, id=site_id, name=site_id, site_type=SiteType.compound,
                   community_id="c", score=score(figures), metrics=figures)  # fmt: skip


@pytest.mark.parametrize(
    ("hours", "needed"),
    [
        (30 * 24, 600),  # a 30-day month: 20 a day
        (31 * 24, 620),
        (7 * 24, 140),
        (12, 10),  # half a day: pro rata
        (1, 1),  # 20 / 24 = 0.83, rounded up
    ],
)
def test_the_evidence_needed_grows_with_the_window(hours: int, needed: int) -> None:
    evidence = rule(START, START + timedelta(hours=hours))
    assert evidence.min_checked_deposits == needed
    assert evidence.min_checked_deposits_per_day == 20
    assert evidence.score_decimals == 2


def test_44_deposits_in_a_month_do_not_top_sites_with_thousands() -> None:
    # Scores by hand (overflow and device health 100 for all; accuracy weighs 0.5 of 1.0):
    #   tiny  44/44 right     → accuracy 100 %  → 0.5×100 + 0.3×100 + 0.2×100 = 100
    #   big   3000, 150 wrong → accuracy 95 %   → 0.5×95 + 50 = 97.5
    #   big2  2000, 100 wrong → accuracy 95 %   → 97.5 (a tie with big)
    #   fair  1000, 200 wrong → accuracy 80 %   → 0.5×80 + 50 = 90
    #   none  no deposits, no bins              → no score at all
    rows = [
        site("tiny", checked=44, contaminated=0),
        site("fair", checked=1000, contaminated=200),
        site("big2", checked=2000, contaminated=100),
        site("big", checked=3000, contaminated=150),
        site("none", checked=0, contaminated=0, bins=0),
    ]
    scores = {row.id: row.score.value for row in rows}
    assert scores == {
        "tiny": pytest.approx(100),
        "fair": pytest.approx(90),
        "big2": pytest.approx(97.5),
        "big": pytest.approx(97.5),
        "none": None,
    }
    result = ranked(rows, rule(START, MONTH))
    # The tie shares rank 1 (the next is 3rd), listed by more checked deposits first.
    assert [(row.rank, row.id) for row in result] == [
        (1, "big"), (1, "big2"), (3, "fair"), (None, "tiny"), (None, "none")
    ]  # fmt: skip
    assert result[3].not_ranked == NotRanked(checked_deposits=44, min_checked_deposits=600)
    assert result[4].not_ranked == NotRanked(checked_deposits=0, min_checked_deposits=600)
    assert all(row.not_ranked is None for row in result[:3])
    assert ranked(list(reversed(rows)), rule(START, MONTH)) == result  # order of input is moot


def test_the_bar_itself_is_enough_and_one_less_is_not() -> None:
    at_bar = site("at-bar", checked=600, contaminated=60)  # 90 % → 95
    below = site("below", checked=599, contaminated=0)  # 100 % → 100, but not ranked
    result = ranked([below, at_bar], rule(START, MONTH))
    assert [(row.rank, row.id) for row in result] == [(1, "at-bar"), (None, "below")]


def test_scores_equal_to_two_decimals_tie_and_id_breaks_equal_evidence() -> None:
    # 1000 checked: 0.5 × 100 × (1 − 4/1000) + 50 = 99.8 and 0.5 × 100 × (1 − 5/1000) + 50 = 99.75;
    # "b" is given 99.804, which rounds to 99.80: a tie with "a", on the same evidence.
    a = site("a", checked=1000, contaminated=4)
    b = site("b", checked=1000, contaminated=4)
    c = site("c", checked=1000, contaminated=5)
    b = b.model_copy(update={"score": b.score.model_copy(update={"value": 99.804})})
    result = ranked([c, b, a], rule(START, MONTH))
    assert [(row.rank, row.id) for row in result] == [(1, "a"), (1, "b"), (3, "c")]
    assert result[2].score.value == pytest.approx(99.75)
