"""Notifications to people: the contacts' channels (WeCom and DingTalk group robots, e-mail),
the outbox of messages to them (`notifications`), and their delivery.

Alerts and escalations queue a row per channel of each contact concerned, in the transaction
that raised the alert or made the escalation, holding the structured message (the alert notice
or escalation JSON). The alerter and the collector send their own rows: each renders a row in
its channel's language with its domain's catalog (alerts/texts.py, collection/texts.py) and
hands the attempt to the webhook lanes (core/webhook_lanes.py), one lane per destination (the
robot service's host, the SMTP server), so a dead receiver delays only its own messages. The
lane records the outcome and retries follow `core.webhooks.retry_delay` like a webhook's: an
errcode that says "busy" or a 4xx SMTP reply is tried again, another failure is final and the
row's `error` says why. This lives below the domains because both use it and neither may import
the other."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session, sessionmaker

from core.chat_robots import Note, RobotSender
from core.mail import MailSender
from core.settings import Settings
from core.ticker import TickingService
from core.webhook_lanes import WebhookLanes, lane_of
from core.webhooks import Outcome, record_attempt
from devices.models import ContactChannel, Notification

log = logging.getLogger(__name__)

Render = Callable[[Session, Notification, ContactChannel], Note]
"""A domain's renderer: the row's message as text in the channel's language."""


def channels_of(session: Session, owner: str, owner_id: str) -> list[ContactChannel]:
    """A contact's channels (`owner`: site or area), in a stable order."""
    query = select(ContactChannel).where(
        ContactChannel.owner == owner, ContactChannel.owner_id == owner_id
    )
    return list(session.scalars(query.order_by(ContactChannel.id)))


def queue(
    session: Session,
    *,
    owner: str,
    owner_id: str,
    source: str,
    subject: str,
    message: str,
    now: datetime,
) -> list[str]:
    """Queue `message` for each channel of the contact (the caller commits); the kinds queued.
    `subject` names the message (`alert 12 raised`): one row per channel and subject."""
    channels = channels_of(session, owner, owner_id)
    for channel in channels:
        session.add(
            Notification(
                channel_id=channel.id,
                source=source,
                subject=subject,
                message=message,
                created_at=now,
                attempts=0,
                done=False,
            )
        )
    return [channel.kind for channel in channels]


class Queued(NamedTuple):
    """A message for each channel of one contact (`queue`'s arguments but the source)."""

    owner: str
    owner_id: str
    subject: str
    message: str
    now: datetime


def queue_many(session: Session, messages: Iterable[Queued], *, source: str) -> None:
    """`queue` for many messages of one source in one executemany, each contact's channels
    looked up once (the caller commits)."""
    channels: dict[tuple[str, str], list[int]] = {}
    rows: list[dict[str, Any]] = []
    for owner, owner_id, subject, message, now in messages:
        ids = channels.get((owner, owner_id))
        if ids is None:
            ids = channels[(owner, owner_id)] = [
                channel.id for channel in channels_of(session, owner, owner_id)
            ]
        rows.extend(
            {
                "channel_id": channel_id,
                "source": source,
                "subject": subject,
                "message": message,
                "created_at": now,
                "attempts": 0,
                "done": False,
            }
            for channel_id in ids
        )
    if rows:
        table: Table = Notification.__table__  # type: ignore[assignment]
        session.execute(insert(table), rows)


def addresses(channel: ContactChannel) -> list[str]:
    return [a.strip() for a in (channel.addresses or "").split(",") if a.strip()]


class Notifier:
    """Sends one service's due notifications through the lanes it shares with webhooks."""

    def __init__(self, settings: Settings, lanes: WebhookLanes, *, attempts: int) -> None:
        self.lanes = lanes
        self.robots = RobotSender(lanes.sender)
        self.mail = MailSender(settings.mail)
        self.attempts = attempts

    def deliver(
        self,
        service: TickingService,
        sessions: sessionmaker[Session],
        now: datetime,
        *,
        source: str,
        render: Render,
    ) -> None:
        """Queue an attempt for every due row of `source`; each row on its own (one that cannot
        be rendered is logged and counted by `service`, the others go on)."""
        with sessions() as session:
            due = select(Notification).where(
                Notification.source == source,
                Notification.done.is_(False),
                Notification.next_at.is_(None) | (Notification.next_at <= now),
            )
            for row in session.scalars(due.order_by(Notification.id)):
                key = ("notification", row.id)
                if self.lanes.busy(key):
                    continue
                with service.item("notify", f"notification {row.id}", session):
                    channel = session.get_one(ContactChannel, row.channel_id)
                    lane, attempt = self._attempt(channel, render(session, row, channel))
                    done = partial(self._done, service, sessions, row.id, now)
                    self.lanes.submit_attempt(key, lane, attempt, done=done)

    def _attempt(self, channel: ContactChannel, note: Note) -> tuple[str, Callable[[], Outcome]]:
        if channel.kind == "email":
            send = partial(self.mail.send, addresses(channel), note.title, note.plain)
            return self.mail.lane, send
        url = channel.robot_url or ""
        if channel.kind == "wecom":
            return lane_of(url), partial(self.robots.wecom, url, note)
        return lane_of(url), partial(self.robots.dingtalk, url, channel.robot_secret or "", note)

    def _done(
        self,
        service: TickingService,
        sessions: sessionmaker[Session],
        row_id: int,
        now: datetime,
        outcome: Outcome,
    ) -> None:
        """Record an attempt (in its lane's thread). The error names no secret: the robots'
        and the mail sender's errors are built without them."""
        with service.item("notify", f"notification {row_id}"), sessions() as session:
            row = session.get_one(Notification, row_id)
            if record_attempt(row, now, outcome.error, outcome.retryable, limit=self.attempts):
                log.warning(
                    "notification %d (%s, channel %d) gave up after %d attempt(s): %s",
                    row.id,
                    row.subject,
                    row.channel_id,
                    row.attempts,
                    outcome.error,
                )
            session.commit()
