"""The console's languages, without a server: every string the console can show has a
translation in both catalogs, the catalogs name the registry's codes completely, the locale is
chosen per user then from Accept-Language, and dates and numbers follow the locale and the
city's time zone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from alerts.rules import AlertType, Severity
from api.console import labels
from api.console.i18n import LOCALES, Formats, catalog_path, choose_locale, translations
from api.console.reasons import explainer
from collection.lifecycle import Status
from collection.rules import Rule
from core.reasons import MESSAGES, Arg, Reason, placeholders
from devices.contract import SiteType, Stream

CONSOLE = catalog_path("en").parents[3]


def _extracted() -> Iterator[tuple[str, str, int]]:
    with (CONSOLE / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    for filename, line, message, _comments, _context in extract_from_dir(
        CONSOLE, method_map=method_map, options_map=options_map
    ):
        assert isinstance(message, str), f"{filename}:{line}: plural messages are not used yet"
        yield message, filename, line


def test_strings_are_extracted_from_code_and_templates() -> None:
    places = {filename.split("/")[0] for _message, filename, _line in _extracted()}
    assert {"templates", "labels.py", "pages.py", "auth.py"} <= places


@pytest.mark.parametrize("locale", LOCALES)
def test_every_string_has_a_translation(locale: str) -> None:
    with catalog_path(locale).open("rb") as po:
        catalog = read_po(po, locale=locale)
    untranslated = [
        f"{filename}:{line}: {message!r}"
        for message, filename, line in _extracted()
        if message not in catalog or not catalog[message].string or catalog[message].fuzzy
    ]
    assert untranslated == [], f"untranslated in {locale}"


@pytest.mark.parametrize("locale", LOCALES)
def test_each_string_is_in_a_catalog_once(locale: str) -> None:
    # Babel keeps the last of two entries silently, so a second one (two branches adding the
    # same string) would change a translation with no error anywhere.
    entries = Counter(
        line for line in catalog_path(locale).read_text(encoding="utf-8").splitlines()
        if line.startswith("msgid ") and line != 'msgid ""'
    )  # fmt: skip
    assert [entry for entry, count in entries.items() if count > 1] == []


@pytest.mark.parametrize("locale", LOCALES)
def test_every_system_written_reason_has_a_translation_with_its_placeholders(locale: str) -> None:
    # Their msgids are core/reasons.py's English templates, outside the console's sources.
    with catalog_path(locale).open("rb") as po:
        catalog = read_po(po, locale=locale)
    wrong = []
    for id, message in MESSAGES.items():
        entry = catalog.get(message.text)
        if entry is None or not entry.string or entry.fuzzy:
            wrong.append(f"{id}: untranslated")
        elif placeholders(str(entry.string)) != set(message.kinds):
            wrong.append(f"{id}: other placeholders")
    assert wrong == []


def _sample(id: str) -> Reason:
    """`id`'s message with an argument of each kind."""
    at = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    told = [Reason.of("escalation.published", topic="a/b"), Reason("webhook.queued")]
    values: dict[str, Arg | datetime | timedelta | list[Reason]] = {
        "time": at,
        "duration": timedelta(minutes=90),
        "type": "fire",
        "stream": "kitchen",
        "text": "烟雾",
        "parts": told,
    }
    kinds = MESSAGES[id].kinds
    return Reason.of(id, **{name: values.get(str(kind), 1234.5) for name, kind in kinds.items()})


@pytest.mark.parametrize("locale", LOCALES)
def test_every_reason_is_written_in_the_readers_language(locale: str) -> None:
    explain = explainer(Formats(locale, ZoneInfo("Asia/Shanghai")))
    for id in MESSAGES:
        reason = _sample(id)
        said = explain(reason.dump(), reason.text)
        assert said and "%(" not in said and "%%" not in said, id
    threshold = Reason("request.threshold", {"fill": 85.4, "threshold": 80})
    assert (
        explain(threshold.dump(), threshold.text)
        == {
            "zh_CN": "满溢度 85% 已达到阈值 80%",
            "en": "Fill level 85% reached the threshold of 80%",
        }[locale]
    )
    gap = _sample("alert.seq_gap")  # numbers as the locale groups them
    assert "1,234" in explain(gap.dump(), gap.text)
    event = _sample("alert.event")  # the city's time (07:30 the next day), the type named
    assert (
        explain(event.dump(), event.text)
        == {
            "zh_CN": "火情，设备于 2026/12/2 07:30 上报",
            "en": "Fire reported at Dec 2, 2026, 7:30\u202fAM",
        }[locale]
    )
    # A person's note, or a row from before reasons were structured: its text as stored.
    assert explain(None, "请下午来清运") == "请下午来清运"
    assert explain({"id": "no.such.message", "args": {}}, "old text") == "old text"


def test_the_stored_english_text_is_as_before() -> None:
    # API clients and the audit read the text column: it stays what the code wrote before.
    assert _sample("request.threshold").text == "fill 1234 % reached the threshold of 1234 %"
    assert _sample("alert.event_detail").text == "fire reported at 2026-12-01 23:30 +00:00: 烟雾"
    assert Reason("alert.overheat", {"temp": 71.26, "limit": 70}).text == "71.3 °C ≥ 70 °C"
    escalation = Reason.of(
        "escalation.community",
        level=1,
        area="xiaoba",
        told=[
            Reason.of("escalation.published", topic="grid/xiaoba"),
            Reason.of("escalation.people_queued", channels="wecom, email"),
            Reason("webhook.queued"),
        ],
    )
    assert escalation.text == (
        "level 1: community xiaoba: published to grid/xiaoba; wecom, email queued; webhook queued"
    )
    zh = Formats("zh_CN", ZoneInfo("Asia/Shanghai"))
    named = explainer(zh, area=lambda area_id: {"xiaoba": "肖坝社区"}.get(area_id, area_id))
    assert named(escalation.dump(), escalation.text) == (
        "第 1 级：肖坝社区（社区）：已发布到 grid/xiaoba；已排队通知：wecom, email；Webhook 已排队"
    )
    # without the registry's names, the area's id
    assert explainer(zh)(escalation.dump(), escalation.text).startswith("第 1 级：xiaoba（社区）：")


def test_chinese_names_the_streams_as_the_national_standard_does() -> None:
    chinese = translations("zh_CN")
    assert [chinese.gettext(labels.STREAMS[stream]) for stream in Stream] == [
        "可回收物",
        "有害垃圾",
        "厨余垃圾",
        "其他垃圾",
    ]


@pytest.mark.parametrize(
    ("names", "codes"),
    [
        (labels.STREAMS, Stream),
        (labels.SITE_TYPES, SiteType),
        (labels.REQUEST_STATUSES, Status),
        (labels.REQUEST_RULES, Rule),
        (labels.ALERT_TYPES, AlertType),
        (labels.SEVERITIES, Severity),
    ],
)
def test_every_code_has_a_name(names: dict[str, str], codes: type[StrEnum]) -> None:
    assert set(names) == {code.value for code in codes}


@pytest.mark.parametrize(
    ("preferred", "header", "chosen"),
    [
        ("en", "zh-CN,zh;q=0.9", "en"),
        ("zh_CN", "en", "zh_CN"),
        (None, "en-GB,en;q=0.9", "en"),
        (None, "fr-FR, en;q=0.5, zh;q=0.8", "zh_CN"),
        (None, "zh-TW", "zh_CN"),
        (None, "fr, de;q=0.3", "zh_CN"),
        (None, "en;q=0, zh;q=0.1", "zh_CN"),
        (None, "x-;;q=zz, en", "en"),
        (None, None, "zh_CN"),
    ],
)
def test_the_locale_is_the_users_then_the_browsers_then_chinese(
    preferred: str | None, header: str | None, chosen: str
) -> None:
    assert choose_locale(preferred, header) == chosen


def test_times_are_the_citys_and_numbers_the_locales() -> None:
    moment = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)  # 07:30 the next day in Shanghai
    chinese = Formats("zh_CN", ZoneInfo("Asia/Shanghai"))
    english = Formats("en", ZoneInfo("Asia/Shanghai"))
    assert chinese.time(moment) == "2026/12/2 07:30"
    # English: the month in words, never the American 12/2/26 a reader in China may misread
    assert english.time(moment) == "Dec 2, 2026, 7:30\u202fAM"
    assert english.day(moment.date()) == "Dec 1, 2026" and chinese.day(moment.date()) == "2026/12/1"
    assert chinese.percent(87.4) == "87%"
    assert english.number(12345.6, 1) == "12,345.6"
    assert chinese.until(moment + timedelta(hours=2), moment) == "2小时后"
    assert english.until(moment - timedelta(minutes=40), moment) == "40 minutes ago"
    assert chinese.time(None) == "—"
