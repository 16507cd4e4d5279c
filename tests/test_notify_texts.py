"""The notification catalogs say everything in both languages, and times are the city's: no
server needed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from alerts import texts as alert_texts
from alerts.messages import AlertNotice
from alerts.rules import AlertType, Severity
from collection import texts as collection_texts
from collection.lifecycle import OPEN
from core.chat_robots import MARKDOWN_BYTES, Note, dingtalk_body, shown_url, wecom_body
from core.reasons import MESSAGES, Reason, placeholders
from core.texts import LOCALES, Catalog, local_time, stamp
from devices.contract import Stream

MOMENT = datetime(2026, 12, 31, 17, 30, tzinfo=UTC)  # already 1 January in Shanghai


@pytest.mark.parametrize("catalog", [alert_texts.CATALOG, collection_texts.CATALOG])
def test_every_message_is_in_both_languages_with_the_same_placeholders(catalog: Catalog) -> None:
    assert catalog.problems() == []


def test_a_missing_or_changed_message_is_found() -> None:
    broken = Catalog({"zh_CN": {"a": "{x}", "b": "b"}, "en": {"a": "{y}"}})
    assert sorted(broken.problems()) == [
        "en: a has other placeholders",
        "en: b missing in one language",
    ]


@pytest.mark.parametrize("locale", LOCALES)
def test_every_alert_type_severity_stream_and_waiting_status_has_a_name(locale: str) -> None:
    for kind in AlertType:
        assert alert_texts.CATALOG.text(locale, f"type.{kind.value}")
    for severity in Severity:
        assert alert_texts.CATALOG.text(locale, f"severity.{severity.value}")
    for stream in Stream:
        assert collection_texts.CATALOG.text(locale, f"stream.{stream.value}")
    for status in OPEN:
        assert collection_texts.CATALOG.text(locale, f"status.{status.value}")


def test_every_alert_detail_is_in_chinese_with_its_placeholders() -> None:
    details = {id: message for id, message in MESSAGES.items() if id.startswith("alert.")}
    assert set(alert_texts.DETAILS_ZH) == set(details)
    for id, message in details.items():
        assert placeholders(alert_texts.DETAILS_ZH[id]) == set(message.kinds), id


def _notice(reason: Reason | None, text: str) -> AlertNotice:
    return AlertNotice.model_validate(
        {
            "alert_id": 1,
            "notice": "raised",
            "type": "seq_gap",
            "severity": "minor",
            "state": "active",
            "bin_id": "b",
            "site_id": "s",
            "detail": text,
            "detail_msg": None if reason is None else reason.dump(),
            "started_at": MOMENT,
            "cleared_at": None,
            "duration_s": None,
            "recipient": "manager",
        }
    )


def test_an_alerts_detail_is_written_in_the_channels_language() -> None:
    gap = Reason("alert.seq_gap", {"last": 1200, "seq": 2405, "lost": 1204})
    notice = _notice(gap, gap.text)
    assert alert_texts.detail(notice, "zh_CN", "Asia/Shanghai") == (
        "序号从 1,200 跳到 2,405，丢失 1,204 条数据"
    )
    assert (
        alert_texts.detail(notice, "en", "Asia/Shanghai") == "seq jumped 1,200 → 2,405: 1,204 lost"
    )
    # An alert raised before details were structured: its stored text.
    old = _notice(None, "battery 12 %")
    assert alert_texts.detail(old, "zh_CN", "Asia/Shanghai") == "battery 12 %"


def test_times_are_the_citys_never_utc() -> None:
    assert local_time(MOMENT, "Asia/Shanghai", "zh_CN") == "2027年1月1日 01:30"
    assert local_time(MOMENT, "Asia/Shanghai", "en") == "Jan 1, 2027, 1:30 AM"
    assert stamp(MOMENT, "Asia/Shanghai") == "2027-01-01 01:30 +08:00"
    assert stamp(MOMENT, "Asia/Kolkata") == "2026-12-31 23:00 +05:30"


def test_what_a_bin_or_a_file_sent_is_shown_in_the_robots_markdown_never_acted_on() -> None:
    """Links, images and WeCom's tags from a bin's detail or a site's name are text; the mail's
    plain text keeps them as sent."""
    sent = "smoke [打开处理](https://evil.example/x) ![](https://evil.example/p.png) <@all>"
    note = Note.of('【紧急告警】<font color="info">x</font>](y)', [f"详情：{sent}"])
    for body in (wecom_body(note), dingtalk_body(note)):
        text = json.loads(body)["markdown"]
        markdown = text.get("content") or text["text"]
        assert "](" not in markdown and "<" not in markdown and ">" not in markdown, markdown
        assert "[打开处理] (https://evil.example/x)" in markdown and "＜@all＞" in markdown
    assert sent in note.plain


def test_a_robot_url_is_shown_without_its_key_and_long_text_is_cut_whole() -> None:
    url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6"
    assert shown_url(url) == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?…"
    body = wecom_body(Note.of("标题", ["垃圾桶满溢" * 400]))
    content = body.decode().split('"content": "', 1)[1]
    assert len(content.encode()) <= MARKDOWN_BYTES + 10 and content.endswith('…"}}')
