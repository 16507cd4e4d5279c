"""The console speaks Chinese first and English too: gettext catalogs kept as .po files under
`locales/` (read and compiled in memory at startup with Babel, so there is no build step), the
locale chosen per user or from Accept-Language, and dates, numbers and percentages formatted
for that locale in the city's time zone (never UTC on a screen).

Strings in Python code are marked with `N_` and translated where they are shown; templates use
`_()`. tests/test_console_i18n.py extracts every marked string and fails when either catalog
lacks a translation."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime
from io import BytesIO
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import (
    format_date,
    format_datetime,
    format_skeleton,
    format_time,
    format_timedelta,
    get_datetime_format,
    get_timezone_name,
)
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_percent
from babel.support import Translations

from core.texts import decimal

LOCALES_DIR: Final = Path(__file__).with_name("locales")
LOCALES: Final = ("zh_CN", "en")
DEFAULT_LOCALE: Final = "zh_CN"


def N_(message: str) -> str:
    """Marks a string for extraction; it is translated where it is shown."""
    return message


def catalog_path(locale: str) -> Path:
    return LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po"


@functools.cache
def translations(locale: str) -> Translations:
    """The locale's catalog, compiled from its .po in memory."""
    with catalog_path(locale).open("rb") as po:
        catalog = read_po(po, locale=locale)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


def choose_locale(preferred: str | None, accept_language: str | None) -> str:
    """The user's own locale; else the first of Accept-Language's (by q) that we have, by
    language (`zh`, `zh-TW` → zh_CN, `en-GB` → en); else Chinese, the pilot city's."""
    if preferred in LOCALES:
        return preferred
    for tag in _by_quality(accept_language or ""):
        try:
            language = Locale.parse(tag, sep="-").language
        except (ValueError, UnknownLocaleError):
            continue
        for locale in LOCALES:
            if locale.split("_")[0] == language:
                return locale
    return DEFAULT_LOCALE


def _by_quality(header: str) -> list[str]:
    ranked: list[tuple[float, int, str]] = []
    for n, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and tag != "*" and quality > 0:
            ranked.append((-quality, n, tag))
    return [tag for _, _, tag in sorted(ranked)]


# Locales whose short date cannot be misread (Chinese: year first, 2026/12/3). English's short date
# is the American 12/3/26, which a reader in China may take for the 12th of March: English gets
# the month in words (Dec 3, 2026) instead.
SHORT_DATES: Final = frozenset({"zh_CN"})


@dataclass(frozen=True, slots=True)
class Formats:
    """Numbers and times as the reader's locale writes them, times in the city's zone."""

    locale: str
    timezone: ZoneInfo

    def time(self, moment: datetime | None) -> str:
        """A moment in the city's time: 2026/12/2 07:30, Dec 2, 2026, 7:30 AM."""
        if moment is None:
            return "—"
        if self.locale in SHORT_DATES:
            return format_datetime(moment, "short", tzinfo=self.timezone, locale=self.locale)
        local = moment.astimezone(self.timezone)
        return str(get_datetime_format("short", locale=self.locale)).format(
            format_time(local, "short", locale=self.locale),
            format_date(local, "medium", locale=self.locale),
        )

    def zone_name(self) -> str:
        """The city's zone as the reader names it (中国时间, China Time), not its id."""
        return get_timezone_name(self.timezone, locale=self.locale)

    def clock(self, moment: datetime) -> str:
        """The time of day in the city, hours and minutes: 14:05."""
        return format_datetime(moment, "HH:mm", tzinfo=self.timezone, locale=self.locale)

    def number(self, value: float | None, digits: int = 0) -> str:
        if value is None:
            return "—"
        return decimal(value, digits, self.locale)

    def percent(self, value: float | None, digits: int = 0) -> str:
        """`value` in percent (0–100), as the locale writes a percentage."""
        if value is None:
            return "—"
        pattern = "#,##0" + ("." + "0" * digits if digits else "") + "%"
        return format_percent(value / 100, pattern, locale=self.locale)

    def day(self, day: date) -> str:
        """A calendar day: 2026/11/3, Nov 3, 2026."""
        width = "short" if self.locale in SHORT_DATES else "medium"
        return format_date(day, width, locale=self.locale)

    def month(self, month: date) -> str:
        """A calendar month: 2026年11月, November 2026."""
        return format_skeleton("yMMMM", month, locale=self.locale)

    def until(self, moment: datetime, now: datetime) -> str:
        """How long until `moment` (or since: "3 hours ago"), in words."""
        return format_timedelta(
            moment - now, granularity="minute", add_direction=True, locale=self.locale
        )
