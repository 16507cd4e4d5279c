"""The monthly report of an area or a site, as one value that the printable page, the PDF, the
CSV and the .xlsx all render: the compliance report of a local calendar month with its days,
each site type's ranking (compliance/ranking.py's rule), the charts, and which figures of
docs/metrics.md are shown, in which order, under which name and rounded how."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

from api.console.charts import BarChart, daily_bars
from api.console.i18n import N_, Formats
from compliance.figures import period_bounds
from compliance.ranking import ranked, rule
from compliance.rollups import local_midnight
from compliance.schemas import ComplianceReport, Metrics, RankingRule, Score, SiteRow
from devices.contract import SiteType

Kind = Literal["score", "fraction", "decimal", "minutes", "count"]


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of the report: a Metrics field (or the score), its name (a catalog msgid) and
    how it is written (`fraction`s are shown as percentages)."""

    key: str
    label: str
    kind: Kind

    def value(self, metrics: Metrics, score: Score) -> float | None:
        """The figure as shown: a score 0–100, a fraction as a percentage, the rest as is."""
        if self.key == "score":
            return score.value
        raw = getattr(metrics, self.key)
        if raw is None:
            return None
        return 100 * float(raw) if self.kind == "fraction" else float(raw)

    def rounded(self, metrics: Metrics, score: Score) -> float | int | None:
        """The value for a spreadsheet: counts and minutes whole, the others to 1 decimal."""
        value = self.value(metrics, score)
        if value is None:
            return None
        return round(value) if self.kind in ("count", "minutes") else round(value, 1)

    def shown(self, metrics: Metrics, score: Score, fmt: Formats) -> str:
        value = self.value(metrics, score)
        if self.kind == "fraction":
            return fmt.percent(value, 1)
        return fmt.number(value, 1 if self.kind in ("score", "decimal") else 0)


FIGURES: Final = (
    Figure("score", N_("Cleanliness score"), "score"),
    Figure("accuracy", N_("Sorting accuracy"), "fraction"),
    Figure("checked_deposits", N_("Checked deposits"), "count"),
    Figure("contaminated", N_("Wrongly sorted"), "count"),
    Figure("deposits", N_("Deposits"), "count"),
    Figure("deposits_per_day", N_("Deposits per day"), "decimal"),
    Figure("deposits_per_bin_day", N_("Deposits per bin and day"), "decimal"),
    Figure("overflow_minutes", N_("Minutes overflowing"), "minutes"),
    Figure("overflow_share", N_("Share of time overflowing"), "fraction"),
    Figure("over90_minutes", N_("Minutes at least 90 percent full"), "minutes"),
    Figure("reporting_coverage", N_("Reporting coverage"), "fraction"),
    Figure("bins", N_("Bins"), "count"),
    Figure("bins_offline", N_("Bins offline"), "count"),
    Figure("bins_low_battery", N_("Bins with a low battery"), "count"),
    Figure("requests", N_("Collection requests"), "count"),
    Figure("requests_completed", N_("Requests completed"), "count"),
    Figure("completed_within_deadline", N_("Completed by the deadline"), "fraction"),
    Figure("response_median_minutes", N_("Median response (minutes)"), "minutes"),
    Figure("response_p90_minutes", N_("90th percentile response (minutes)"), "minutes"),
    Figure("disputes", N_("Disputed completions"), "count"),
    Figure("escalations", N_("Escalated requests"), "count"),
)
PARTS: Final = {
    "accuracy": N_("Sorting accuracy"),
    "overflow": N_("No overflow"),
    "device_health": N_("Device health"),
    "collection": N_("Collections on time"),
}
NOT_RANKED: Final = N_("%(checked)s checked deposits, at least %(needed)s needed")


@dataclass(frozen=True, slots=True)
class Day:
    day: date
    metrics: Metrics | None
    score: Score | None


@dataclass(frozen=True, slots=True)
class Place:
    """A site's place in its type's ranking over the whole city (rank None: not ranked)."""

    rank: int | None
    ranked: int  # how many sites of the type are ranked


@dataclass(frozen=True, slots=True)
class MonthlyReport:
    month: date  # its first day
    report: ComplianceReport  # with a breakdown by local day
    rule: RankingRule
    by_type: tuple[tuple[SiteType, tuple[SiteRow, ...]], ...]  # an area's sites, ranked per type
    site_type: SiteType | None  # a site's own type
    place: Place | None  # a site's place in its type's city ranking
    days: tuple[Day, ...]  # every local day of the window, with or without data
    charts: tuple[tuple[str, BarChart], ...]  # (title msgid, chart)

    @property
    def is_site(self) -> bool:
        return self.report.subject.kind == "site"


def month_bounds(month: date, *, timezone: str, now: datetime) -> tuple[datetime, datetime]:
    """The month's local midnights, the end cut to the last whole hour before `now`."""
    zone = ZoneInfo(timezone)
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    last_hour = now.replace(minute=0, second=0, microsecond=0)
    return local_midnight(month, zone), min(local_midnight(following, zone), last_hour)


def monthly(
    month: date,
    report: ComplianceReport,
    *,
    site_type: SiteType | None = None,
    place: Place | None = None,
) -> MonthlyReport:
    """Assemble the month's report from its compliance report (asked with every=1d)."""
    evidence = rule(report.start, report.end)
    by_type = tuple(
        (kind, tuple(ranked([row for row in report.sites if row.site_type == kind], evidence)))
        for kind in SiteType
        if any(row.site_type == kind for row in report.sites)
    )
    zone = ZoneInfo(report.timezone)
    found = {period.start.astimezone(zone).date(): period for period in report.periods or []}
    days = []
    for begin, _end in period_bounds(
        every="1d", start=report.start, end=report.end, timezone=report.timezone
    ):
        day = begin.astimezone(zone).date()
        period = found.get(day)
        days.append(Day(day, period.metrics if period else None, period.score if period else None))
    return MonthlyReport(
        month=month,
        report=report,
        rule=evidence,
        by_type=by_type,
        site_type=site_type,
        place=place,
        days=tuple(days),
        charts=(
            (
                N_("Cleanliness score by day"),
                _chart(days, lambda d: d.score.value if d.score else None),
            ),
            (
                N_("Sorting accuracy by day"),
                _chart(days, lambda d: _percent(d.metrics.accuracy if d.metrics else None)),
            ),
        ),
    )


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


def _chart(days: Sequence[Day], value: Callable[[Day], float | None]) -> BarChart:
    return daily_bars([(day.day, value(day)) for day in days])


def not_ranked_reason(row: SiteRow, gettext: Callable[[str], str], fmt: Formats) -> str:
    """Why a site is not ranked, in the reader's language; empty for a ranked one."""
    if row.not_ranked is None:
        return ""
    return gettext(NOT_RANKED) % {
        "checked": fmt.number(row.not_ranked.checked_deposits),
        "needed": fmt.number(row.not_ranked.min_checked_deposits),
    }


RULE: Final = N_(
    "Sites are ranked by cleanliness score when they have at least %(per_day)s checked "
    "deposits per day of the period (%(needed)s in this period). Scores equal to %(decimals)s "
    "decimals share a rank; among them, the site with more checked deposits comes first. Sites "
    "with fewer are listed apart."
)
PLACE: Final = N_("Rank %(rank)s of %(count)s ranked sites of this type in the city.")
NO_PLACE: Final = N_("Not ranked among the city's sites of this type: %(reason)s.")
PERIOD: Final = N_("%(start)s to %(end)s (%(zone)s)")


def rule_text(evidence: RankingRule, gettext: Callable[[str], str], fmt: Formats) -> str:
    return gettext(RULE) % {
        "per_day": fmt.number(evidence.min_checked_deposits_per_day),
        "needed": fmt.number(evidence.min_checked_deposits),
        "decimals": evidence.score_decimals,
    }


def place_text(found: MonthlyReport, gettext: Callable[[str], str], fmt: Formats) -> str:
    """A site's place in its type's city ranking, in words."""
    place = found.place
    if place is None:
        return ""
    if place.rank is not None:
        return gettext(PLACE) % {"rank": fmt.number(place.rank), "count": fmt.number(place.ranked)}
    checked = found.report.metrics.checked_deposits
    reason = gettext(NOT_RANKED) % {
        "checked": fmt.number(checked),
        "needed": fmt.number(found.rule.min_checked_deposits),
    }
    return gettext(NO_PLACE) % {"reason": reason}


def period_text(report: ComplianceReport, gettext: Callable[[str], str], fmt: Formats) -> str:
    """The window in local time, its end exclusive: the next month's first midnight, or the
    last whole hour of a month still running."""
    return gettext(PERIOD) % {
        "start": fmt.time(report.start),
        "end": fmt.time(report.end),
        "zone": fmt.zone_name(),  # 中国时间 / China Time, not the zone's id (Asia/Shanghai)
    }


def report_title(found: MonthlyReport, gettext: Callable[[str], str], fmt: Formats) -> str:
    """The report's title, also the downloads' file name: 肖坝社区 2026年11月 月度报告."""
    return gettext(N_("%(name)s monthly report %(month)s")) % {
        "name": found.report.subject.name,
        "month": fmt.month(found.month),
    }
