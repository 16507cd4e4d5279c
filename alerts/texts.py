"""Alert notices as people read them: rendered from the notice (`AlertNotice`) in the channel's
language (Chinese unless the contact says English), times in the city's zone (core/texts.py
says why this catalog is here and not in the console's)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from sqlalchemy.orm import Session

from alerts.messages import AlertNotice
from core.chat_robots import Note
from core.reasons import LocaleWriter, written
from core.texts import Catalog, duration, local_time
from devices.models import ContactChannel, Notification, Site

CATALOG = Catalog(
    {
        "zh_CN": {
            "title.raised": "【{severity}告警】{site}：{type}",
            "title.cleared": "【已解除】{site}：{type}",
            "bin": "垃圾桶：{bin}",
            "site": "地点：{site}（{address}）",
            "started": "开始时间：{at}",
            "cleared": "解除时间：{at}，持续 {duration}",
            "detail": "详情：{detail}",
            "severity.critical": "紧急",
            "severity.major": "重要",
            "severity.minor": "一般",
            "type.fire": "火情",
            "type.tilt": "桶体倾倒",
            "type.lid_open": "桶盖未关",
            "type.fault": "设备故障",
            "type.overheat": "温度过高",
            "type.battery_low": "电量低",
            "type.full_too_long": "满溢过久",
            "type.offline": "设备离线",
            "type.seq_gap": "数据丢失",
            "type.clock_skew": "设备时钟偏差",
        },
        "en": {
            "title.raised": "[{severity} alert] {site}: {type}",
            "title.cleared": "[Cleared] {site}: {type}",
            "bin": "Bin: {bin}",
            "site": "Site: {site} ({address})",
            "started": "Started: {at}",
            "cleared": "Cleared: {at}, after {duration}",
            "detail": "Detail: {detail}",
            "severity.critical": "Critical",
            "severity.major": "Major",
            "severity.minor": "Minor",
            "type.fire": "fire",
            "type.tilt": "bin tilted",
            "type.lid_open": "lid left open",
            "type.fault": "device fault",
            "type.overheat": "overheating",
            "type.battery_low": "battery low",
            "type.full_too_long": "full for too long",
            "type.offline": "bin offline",
            "type.seq_gap": "readings lost",
            "type.clock_skew": "device clock wrong",
        },
    }
)


# The alert rules' details (core/reasons.py) in Chinese, `%`-templates like their English ones;
# an English channel reads the English ones. A test checks every alert message is here with the
# same placeholders.
DETAILS_ZH: Final[Mapping[str, str]] = {
    "alert.event": "%(type)s，设备于 %(at)s 上报",
    "alert.event_detail": "%(type)s，设备于 %(at)s 上报：%(detail)s",
    "alert.online": "垃圾桶报告已恢复在线",
    "alert.silent": "已 %(seconds)s 秒未收到数据",
    "alert.will": "垃圾桶已离线（遗嘱消息）",
    "alert.reports_again": "垃圾桶恢复上报",
    "alert.battery": "电量 %(level)s%%",
    "alert.fill": "满溢度 %(fill)s%%",
    "alert.full_too_long": "已满 %(minutes)s 分钟",
    "alert.seq_gap": "序号从 %(last)s 跳到 %(seq)s，丢失 %(lost)s 条数据",
    "alert.seq_lost_one": "序号 %(seq)s 的数据 %(waited)s 秒内未收到，丢失 1 条",
    "alert.seq_lost": "序号 %(first)s … %(last)s 的数据 %(waited)s 秒内未收到，丢失 %(lost)s 条",
    "alert.overheat": "温度 %(temp)s °C，≥ %(limit)s °C",
    "alert.overheat_rising": "温度 %(temp)s °C，每分钟上升 %(rise)s °C（≥ %(limit)s）",
    "alert.temperature": "温度 %(temp)s °C",
    "alert.clock_ahead": "设备时钟快 %(seconds)s 秒",
    "alert.clock_behind": "设备时钟慢 %(seconds)s 秒",
    "alert.clock_in_step": "设备时钟已恢复准确",
    "alert.bin_retired": "垃圾桶已停用",
    "alert.unseen": "已有 %(hold)s 未再出现",
}


def detail(notice: AlertNotice, locale: str, timezone: str) -> str:
    """The notice's detail in `locale`, numbers and times as it writes them; the stored text
    for an alert from before details were structured."""

    def template(id: str, english: str) -> str:
        return english if locale == "en" else DETAILS_ZH[id]

    writer = LocaleWriter(
        template=template,
        time=lambda moment: local_time(moment, timezone, locale),
        alert_type=lambda code: CATALOG.text(locale, f"type.{code}"),
        locale=locale,
    )
    return written(notice.detail_msg, notice.detail, writer)


def render(session: Session, row: Notification, channel: ContactChannel, *, timezone: str) -> Note:
    """The notification for an alert notice (`row.message`) in `channel`'s language."""
    notice = AlertNotice.model_validate_json(row.message)
    return alert_note(notice, session.get_one(Site, notice.site_id), channel.locale, timezone)


def alert_note(notice: AlertNotice, site: Site, locale: str, timezone: str) -> Note:
    def say(key: str, **values: object) -> str:
        return CATALOG.text(locale, key, **values)

    kind = say(f"type.{notice.type}")
    if notice.notice == "cleared":
        title = say("title.cleared", site=site.name, type=kind)
    else:
        severity = say(f"severity.{notice.severity}")
        title = say("title.raised", severity=severity, site=site.name, type=kind)
    lines = [
        say("bin", bin=notice.bin_id),
        say("site", site=site.name, address=site.address),
        say("started", at=local_time(notice.started_at, timezone, locale)),
    ]
    if notice.cleared_at is not None:
        lasted = duration(notice.duration_s or 0, locale)
        lines.append(
            say("cleared", at=local_time(notice.cleared_at, timezone, locale), duration=lasted)
        )
    if notice.detail:
        lines.append(say("detail", detail=detail(notice, locale, timezone)))
    return Note.of(title, lines)
