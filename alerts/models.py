"""The alert tables: alerts with their history and deliveries, what the rules remember per bin,
and the property manager's contact per site (the grid's contacts are collection's
`area_contacts`, reused)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from devices.models import Base, UtcDateTime

ALERT_STATES = ("active", "acknowledged", "cleared")
LIVE_STATES = ("active", "acknowledged")
"""An alert in one of these still describes a condition that lasts; at most one per (bin, type)."""
_LIVE_SQL = f"state IN {LIVE_STATES!r}"
NOTICES = ("raised", "acknowledged", "cleared")
CHANNELS = ("mqtt", "webhook")


class SiteContact(Base):
    """Where a site's property manager hears of its alerts."""

    __tablename__ = "site_contacts"

    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    mqtt_topic: Mapped[str | None] = mapped_column(String(300))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    webhook_secret: Mapped[str | None] = mapped_column(String(200))


class Alert(Base):
    """One condition at one bin, from raised to cleared."""

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint(f"state IN {ALERT_STATES!r}", name="ck_alerts_state"),
        # "Raised once while the condition lasts" is this index, not memory: ingest workers and
        # the alerter may race to raise the same alert and exactly one wins.
        Index(
            "uq_alerts_live_bin_type",
            "bin_id",
            "type",
            unique=True,
            sqlite_where=text(_LIVE_SQL),
            postgresql_where=text(_LIVE_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bin_id: Mapped[str] = mapped_column(ForeignKey("bins.id"), index=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    type: Mapped[str] = mapped_column(String(32), index=True)
    severity: Mapped[str] = mapped_column(String(16), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    detail: Mapped[str] = mapped_column(Text)
    # The detail as a message id and its arguments (core/reasons.py), so people read it in their
    # language; None for an alert raised before, whose `detail` is all there is.
    detail_msg: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    cleared_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    duration_s: Mapped[float | None] = mapped_column(Float)

    events: Mapped[list[AlertEvent]] = relationship(
        back_populates="alert", order_by="AlertEvent.id"
    )


class AlertEvent(Base):
    """The history: one row per lifecycle change, never changed after (`exported` only says
    InfluxDB has a copy)."""

    __tablename__ = "alert_events"
    __table_args__ = (CheckConstraint(f"kind IN {NOTICES!r}", name="ck_alert_events_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text, default="")
    # A note the alerter wrote, as a message and its arguments (core/reasons.py); None for a
    # person's own note and for events from before.
    note_msg: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    exported: Mapped[bool] = mapped_column(Boolean, default=False, index=True)

    alert: Mapped[Alert] = relationship(back_populates="events")


class AlertDelivery(Base):
    """One notice (raised, cleared) to one recipient over one channel: an outbox row the
    alerter sends and retries, so each is delivered once however often it ticks."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        CheckConstraint(f"channel IN {CHANNELS!r}", name="ck_alert_deliveries_channel"),
        UniqueConstraint("alert_id", "notice", "recipient", "channel", name="uq_alert_deliveries"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    notice: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(16))
    recipient_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(8))
    target: Mapped[str] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    done: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    error: Mapped[str | None] = mapped_column(Text)


class BinHealth(Base):
    """What the rules remember of a bin (`alerts.rules.Memory`) and when it was last heard.
    `gap_seqs` are the seqs an open gap waits for (a JSON list, NULL when none is open),
    `gap_since` when it opened: the alerter finds the gaps past their grace by it."""

    __tablename__ = "bin_health"

    bin_id: Mapped[str] = mapped_column(ForeignKey("bins.id"), primary_key=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    last_ts: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_seq: Mapped[int | None] = mapped_column(Integer)
    last_temp_c: Mapped[float | None] = mapped_column(Float)
    full_since: Mapped[datetime | None] = mapped_column(UtcDateTime())
    gap_seqs: Mapped[list[int] | None] = mapped_column(JSON(none_as_null=True))
    gap_since: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
