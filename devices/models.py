"""The registry's tables. The schema itself is created by the Alembic migrations in
`devices/migrations`; these classes must match them (a test compares the two)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


# The largest value of an Integer id column on every backend: PostgreSQL's `integer` is 32-bit
# (SQLite's 64-bit), so an API path id beyond it is refused before it reaches the database.
MAX_ROW_ID = 2**31 - 1


AREA_KINDS = ("city", "district", "street", "community")


class Area(Base):
    """A level of the city's grid: city → district → street → community."""

    __tablename__ = "areas"
    __table_args__ = (CheckConstraint(f"kind IN {AREA_KINDS!r}", name="ck_areas_kind"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("areas.id"), index=True)

    parent: Mapped[Area | None] = relationship(remote_side="Area.id")


class Operator(Base):
    """A sorting-operator company that empties bins at the sites it serves."""

    __tablename__ = "operators"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    webhook_secret: Mapped[str | None] = mapped_column(String(200))


class Site(Base):
    """A pilot site: an agency unit, a school or a residential compound."""

    __tablename__ = "sites"
    __table_args__ = (
        CheckConstraint("site_type IN ('agency', 'school', 'compound')", name="ck_sites_type"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    site_type: Mapped[str] = mapped_column(String(16))
    community_id: Mapped[str] = mapped_column(ForeignKey("areas.id"), index=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), index=True)
    address: Mapped[str] = mapped_column(String(300))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)

    community: Mapped[Area] = relationship()
    operator: Mapped[Operator] = relationship()
    bins: Mapped[list[Bin]] = relationship(back_populates="site", order_by="Bin.id")


class Bin(Base):
    """One bin holding one stream, at a station of a site."""

    __tablename__ = "bins"
    __table_args__ = (
        CheckConstraint(
            "stream IN ('recyclable', 'hazardous', 'kitchen', 'residual')", name="ck_bins_stream"
        ),
        CheckConstraint("threshold_pct > 0 AND threshold_pct <= 100", name="ck_bins_threshold"),
        CheckConstraint("capacity_l > 0", name="ck_bins_capacity"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    station: Mapped[str] = mapped_column(String(64))
    stream: Mapped[str] = mapped_column(String(16))
    capacity_l: Mapped[int] = mapped_column(Integer)
    threshold_pct: Mapped[float] = mapped_column(Float)

    site: Mapped[Site] = relationship(back_populates="bins")


# An MQTT topic may be 65,535 bytes; a dead letter keeps this much of it (PostgreSQL enforces a
# VARCHAR's length, so a longer one would be refused for ever, holding up ingest).
DEAD_LETTER_TOPIC_MAX = 500


class DeadLetter(Base):
    """An MQTT message ingest could not store, kept so an operator can see why and replay it."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    topic: Mapped[str] = mapped_column(String(DEAD_LETTER_TOPIC_MAX))
    reason: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    payload_size: Mapped[int] = mapped_column(Integer)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in and out. SQLite keeps no offset, so a naive value read back is
    UTC by construction (everything is converted before it is stored)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"an aware datetime is required, got {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


REQUEST_STATUSES = (
    "open",
    "dispatched",
    "acknowledged",
    "completed",
    "verified",
    "disputed",
    "cancelled",
)
OPEN_STATUSES = ("open", "dispatched", "acknowledged")
"""A request in one of these still waits for a crew; at most one per bin (a partial index)."""
REQUEST_RULES = ("threshold", "kitchen_daily", "forecast", "manual")
EVENT_KINDS = ("transition", "escalation")
_OPEN_SQL = f"status IN {OPEN_STATUSES!r}"


class CollectionRequest(Base):
    """A request to empty one bin, from the rule that raised it to its verification."""

    __tablename__ = "collection_requests"
    __table_args__ = (
        CheckConstraint(f"status IN {REQUEST_STATUSES!r}", name="ck_collection_requests_status"),
        CheckConstraint(f"rule IN {REQUEST_RULES!r}", name="ck_collection_requests_rule"),
        # The rule "one open request per bin" lives here, not in any process's memory, so any
        # number of ingest workers can race to create it and exactly one wins.
        Index(
            "uq_collection_requests_open_bin",
            "bin_id",
            unique=True,
            sqlite_where=text(_OPEN_SQL),
            postgresql_where=text(_OPEN_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bin_id: Mapped[str] = mapped_column(ForeignKey("bins.id"), index=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), index=True)
    stream: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    trigger_fill_pct: Mapped[float | None] = mapped_column(Float)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    completed_fill_pct: Mapped[float | None] = mapped_column(Float)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_next_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    webhook_delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    dispatch_error: Mapped[str | None] = mapped_column(Text)

    events: Mapped[list[CollectionEvent]] = relationship(
        back_populates="request", order_by="CollectionEvent.id"
    )


class CollectionEvent(Base):
    """The audit trail: one row per transition or escalation, appended in the transaction that
    made it and never changed after (`exported` only says InfluxDB has a copy), except for an
    escalation's webhook: its delivery state (`webhook_*`) and the note's outcome of it follow
    the retries (`webhook_next_at` set: another attempt is due then)."""

    __tablename__ = "collection_events"
    __table_args__ = (
        CheckConstraint(f"kind IN {EVENT_KINDS!r}", name="ck_collection_events_kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("collection_requests.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    escalation_level: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    exported: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    webhook_next_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    webhook_delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    request: Mapped[CollectionRequest] = relationship(back_populates="events")


class AreaContact(Base):
    """Who hears of an overdue request in an area: a community (level 1, "the community blows
    the whistle") or a street's city-management squad (level 2, "the squad reports for duty")."""

    __tablename__ = "area_contacts"

    area_id: Mapped[str] = mapped_column(ForeignKey("areas.id"), primary_key=True)
    mqtt_topic: Mapped[str | None] = mapped_column(String(300))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    webhook_secret: Mapped[str | None] = mapped_column(String(200))


# Registers the alert and security tables on Base (they import Base from here).
from devices import alerts_models, security_models  # noqa: E402, F401
