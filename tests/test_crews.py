"""The simulated crews' reading of Retry-After, as a pure function (their behaviour against the
real API is in tests/test_collection.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from simulator.crews import DEFAULT_RETRY_S, MAX_RETRY_S, retry_after_s


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
