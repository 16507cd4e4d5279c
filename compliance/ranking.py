"""The ranking rule (docs/metrics.md "Ranking"): which sites have enough evidence to be ranked,
their order, and how ties are broken. A site with 44 deposits in a month could score 100 on
sorting by luck; it is listed apart, with the number it has and the number it needs, instead
of topping a list of sites with thousands."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from compliance.schemas import NotRanked, RankingRule, SiteRow

# Checked deposits a site needs per day of the window to be ranked: a typical pilot bin takes
# 50–250 deposits a day, so any working site clears it by far, while a month of 44 (1.5 a day)
# does not. At 20 a day the sorting accuracy of a site at the bar (600 in 30 days) is known to
# within about ±2.4 percentage points (95 %, at 90 % accuracy), ±1 score point at its weight.
MIN_CHECKED_DEPOSITS_PER_DAY: Final = 20
SCORE_DECIMALS: Final = 2  # scores equal to this many decimals tie


def rule(start: datetime, end: datetime) -> RankingRule:
    """The evidence a site needs over [start, end): MIN_CHECKED_DEPOSITS_PER_DAY per day, pro
    rata for part of a day, rounded up, never less than 1."""
    days = (end - start) / timedelta(days=1)
    return RankingRule(
        min_checked_deposits_per_day=MIN_CHECKED_DEPOSITS_PER_DAY,
        min_checked_deposits=max(1, math.ceil(MIN_CHECKED_DEPOSITS_PER_DAY * days - 1e-9)),
        score_decimals=SCORE_DECIMALS,
    )


def ranked(rows: Sequence[SiteRow], evidence: RankingRule) -> list[SiteRow]:
    """The sites with enough evidence first, in rank order: best score first; scores equal to
    SCORE_DECIMALS share a rank (1, 2, 2, 4) and are listed by more checked deposits first,
    then by site id. Then the others, unranked (rank None) with the reason, by checked deposits
    (most first) and id. The same order on every call, whatever the order of `rows`."""
    needed = evidence.min_checked_deposits
    eligible: list[tuple[float, int, str, SiteRow]] = []
    others: list[SiteRow] = []
    for row in rows:
        checked = row.metrics.checked_deposits
        value = row.score.value
        if checked >= needed and value is not None:
            eligible.append((-round(value, SCORE_DECIMALS), -checked, row.id, row))
        else:
            reason = NotRanked(checked_deposits=checked, min_checked_deposits=needed)
            others.append(row.model_copy(update={"rank": None, "not_ranked": reason}))
    eligible.sort(key=lambda item: item[:3])
    result: list[SiteRow] = []
    for position, (key, _checked, _id, row) in enumerate(eligible, start=1):
        tied = position > 1 and eligible[position - 2][0] == key
        rank = result[-1].rank if tied else position
        result.append(row.model_copy(update={"rank": rank, "not_ranked": None}))
    others.sort(key=lambda row: (-row.metrics.checked_deposits, row.id))
    return result + others
