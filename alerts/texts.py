"""Alert notices as people read them: rendered from the notice (`AlertNotice`) in the channel's
language (Chinese unless the contact says English), times in the city's zone (core/texts.py
says why this catalog is here and not in the console's)."""

from __future__ import annotations

from datetime import timedelta

from babel.dates import format_timedelta
from sqlalchemy.orm import Session

from alerts.messages import AlertNotice
from core.chat_robots import Note
from core.texts import Catalog, local_time
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
        lasted = timedelta(seconds=notice.duration_s or 0)
        duration = format_timedelta(lasted, locale=locale, threshold=2)
        lines.append(
            say("cleared", at=local_time(notice.cleared_at, timezone, locale), duration=duration)
        )
    if notice.detail:
        lines.append(say("detail", detail=notice.detail))
    return Note.of(title, lines)
