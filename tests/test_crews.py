"""The simulated crews' reading of Retry-After and their late and skipped shares, as pure
functions (their behaviour against the real API is in tests/test_collection.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from simulator.crews import DEFAULT_RETRY_S, MAX_RETRY_S, Conduct, retry_after_s


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1", 1.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("-3", 0.0),  # never in the past
        ("86400", MAX_RETRY_S),  # never longer than the cap
        (None, DEFAULT_RETRY_S),
        ("soon", DEFAULT_RETRY_S),
        ("nan", DEFAULT_RETRY_S),
    ],
)
def test_retry_after_in_seconds(header: str | None, seconds: float) -> None:
    assert retry_after_s(header) == seconds


def test_retry_after_as_an_http_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after_s(later) <= 30


def test_conduct_draws_each_job_once_in_the_shares_asked() -> None:
    conduct = Conduct(seed=1, late_share=0.1, skip_share=0.2)
    drawn = [conduct.of(n) for n in range(10_000)]
    assert drawn == [Conduct(1, 0.1, 0.2).of(n) for n in range(10_000)]  # a run repeats
    assert 0.08 < drawn.count("late") / 10_000 < 0.12
    assert 0.18 < drawn.count("skip") / 10_000 < 0.22
    assert {Conduct(seed=1).of(n) for n in range(1_000)} == {""}  # the defaults: all on time
    assert Conduct(1, 0.1, 0.2).of("bin-7") == Conduct(1, 0.1, 0.2).of("bin-7")


@pytest.mark.parametrize(("late", "skip"), [(-0.1, 0.0), (0.0, -0.1), (0.6, 0.5)])
def test_conduct_refuses_shares_that_are_not_shares(late: float, skip: float) -> None:
    with pytest.raises(ValueError, match="shares"):
        Conduct(1, late, skip)
