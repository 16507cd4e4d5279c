"""Text for people, in their language and the city's time: the small catalogs the background
services (alerter, collector) render notifications from, and local times for them and for the
reasons written into requests and alerts.

Why not the console's gettext catalogs (api/console/locales): the services that send
notifications sit below `api` in the layers (import-linter forbids the import), and a domain
reading api's files by path would be the same dependency hidden. So each domain keeps its own
few messages in a `Catalog` (alerts/texts.py, collection/texts.py), checked by a test for the
same keys and placeholders in every language, and the shared mechanics live here. Times go
through Babel like the console's, in `settings.timezone`, never UTC."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from babel.dates import format_datetime, format_timedelta
from babel.numbers import format_decimal

DEFAULT_LOCALE: Final = "zh_CN"
LOCALES: Final = ("zh_CN", "en")


def local_time(moment: datetime, timezone: str, locale: str = DEFAULT_LOCALE) -> str:
    """`moment` in the city's zone as people there read it: `2026年12月1日 15:06` in Chinese,
    `Dec 1, 2026, 3:06 PM` in English (Babel's formatting, as on the console)."""
    pattern = _TIME_PATTERNS.get(locale, _TIME_PATTERNS[DEFAULT_LOCALE])
    return str(format_datetime(moment, pattern, tzinfo=ZoneInfo(timezone), locale=locale))


_TIME_PATTERNS: Final = {"zh_CN": "y年M月d日 HH:mm", "en": "MMM d, y, h:mm a"}


def duration(seconds: float, locale: str) -> str:
    """A length of time in words, to its two largest units: `75分钟`, `1 hour`."""
    return str(format_timedelta(timedelta(seconds=seconds), threshold=2, locale=locale))


def list_of(parts: Sequence[str], locale: str) -> str:
    """Clauses one after another, as `locale` separates them (`；` in Chinese)."""
    return ("；" if locale == DEFAULT_LOCALE else "; ").join(parts)


def decimal(value: float, digits: int, locale: str) -> str:
    """`value` with `digits` decimals as `locale` writes it (grouped: 12,345.6)."""
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    return str(format_decimal(value, pattern, locale=locale))


def stamp(moment: datetime, timezone: str) -> str:
    """`moment` in the city's zone with its offset (`2026-12-01 15:06 +08:00`), for reasons and
    notes stored in the registry: local, and still unambiguous when read elsewhere."""
    return with_offset(moment.astimezone(ZoneInfo(timezone)))


def with_offset(moment: datetime) -> str:
    """`stamp` in the offset `moment` carries."""
    offset = moment.strftime("%z")
    return f"{moment:%Y-%m-%d %H:%M} {offset[:3]}:{offset[3:]}"


class Catalog:
    """Messages by locale and key, `str.format` templates. An unknown locale falls back on
    Chinese, the pilot's language."""

    def __init__(self, messages: Mapping[str, Mapping[str, str]]) -> None:
        self.messages = messages

    def text(self, locale: str, key: str, **values: object) -> str:
        table = self.messages.get(locale) or self.messages[DEFAULT_LOCALE]
        return table[key].format(**values)

    def problems(self) -> list[str]:
        """Keys missing from a language, or whose placeholders differ from Chinese's."""
        found: list[str] = []
        base = self.messages[DEFAULT_LOCALE]
        for locale in LOCALES:
            table = self.messages.get(locale, {})
            for key in set(base) | set(table):
                if key not in table or key not in base:
                    found.append(f"{locale}: {key} missing in one language")
                elif _fields(table[key]) != _fields(base[key]):
                    found.append(f"{locale}: {key} has other placeholders")
        return found


def _fields(template: str) -> set[str]:
    return {name for _text, name, _spec, _conv in string.Formatter().parse(template) if name}
