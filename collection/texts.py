"""Escalations as people read them ("the community blows the whistle, the squad reports for
duty"): rendered from the `Escalation` message in the channel's language, times in the city's
zone (core/texts.py says why this catalog is here and not in the console's)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.chat_robots import Note
from core.texts import Catalog, local_time
from devices.messages import Escalation
from devices.models import Bin, ContactChannel, Notification, Operator, Site

CATALOG = Catalog(
    {
        "zh_CN": {
            "title.1": "【社区吹哨】{site}：{stream}桶超时未清运",
            "title.2": "【街道报到】{site}：{stream}桶超时未清运",
            "request": "清运单：#{request}（{status}）",
            "bin": "垃圾桶：{bin}",
            "site": "地点：{site}（{address}）",
            "operator": "清运单位：{operator}",
            "created": "发起时间：{at}",
            "due": "清运期限：{at}",
            "stream.recyclable": "可回收物",
            "stream.hazardous": "有害垃圾",
            "stream.kitchen": "厨余垃圾",
            "stream.residual": "其他垃圾",
            "status.open": "待派单",
            "status.dispatched": "已派单",
            "status.acknowledged": "已接单",
        },
        "en": {
            "title.1": "[Community whistle] {site}: {stream} bin not emptied in time",
            "title.2": "[Street squad] {site}: {stream} bin not emptied in time",
            "request": "Request: #{request} ({status})",
            "bin": "Bin: {bin}",
            "site": "Site: {site} ({address})",
            "operator": "Operator: {operator}",
            "created": "Requested: {at}",
            "due": "Due: {at}",
            "stream.recyclable": "recyclable",
            "stream.hazardous": "hazardous",
            "stream.kitchen": "kitchen",
            "stream.residual": "residual",
            "status.open": "open",
            "status.dispatched": "dispatched",
            "status.acknowledged": "acknowledged",
        },
    }
)


def render(session: Session, row: Notification, channel: ContactChannel, *, timezone: str) -> Note:
    """The notification for an escalation (`row.message`) in `channel`'s language."""
    message = Escalation.model_validate_json(row.message)
    site = session.get_one(Site, message.site_id)
    stream = session.get_one(Bin, message.bin_id).stream
    operator = session.get_one(Operator, message.operator_id).name
    locale = channel.locale

    def say(key: str, **values: object) -> str:
        return CATALOG.text(locale, key, **values)

    title = say(f"title.{min(message.level, 2)}", site=site.name, stream=say(f"stream.{stream}"))
    lines = [
        say("request", request=message.request_id, status=say(f"status.{message.status}")),
        say("bin", bin=message.bin_id),
        say("site", site=site.name, address=site.address),
        say("operator", operator=operator),
        say("created", at=local_time(message.created_at, timezone, locale)),
        say("due", at=local_time(message.due_at, timezone, locale)),
    ]
    return Note.of(title, lines)
