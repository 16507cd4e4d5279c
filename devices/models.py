"""The registry's tables. The schema itself is created by the Alembic migrations in
`binwatch/migrations`; these classes must match them (a test compares the two)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


# The largest value of an Integer id column on every backend: PostgreSQL's `integer` is 32-bit
# (SQLite's 64-bit), so an API path id beyond it is refused before it reaches the database.
MAX_ROW_ID = 2**31 - 1


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
    # Retired: kept for history, its bins no longer expected to report (devices/retirement.py).
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The depot of its operator whose district it is in (the fleet file's `depot`): its jobs are
    # planned from there. None: from the nearest depot (collection/routing.py, `_by_depot`).
    depot_id: Mapped[str | None] = mapped_column(ForeignKey("depots.id"))

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
    # Retired on its own (a retired site retires its bins too; devices/retirement.py).
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # When it, or its site, was last reinstated: silence is counted from then, not from the
    # last reading before it was retired.
    reinstated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

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
    # The bin whose topic it came on ('' for a topic that names none): the cap is per bin.
    bin_id: Mapped[str] = mapped_column(String(64), index=True, server_default="")
    # How many readings (or messages) the letter stands for: a bin's array refused for one
    # reason is one letter, not thousands.
    parts: Mapped[int] = mapped_column(Integer, server_default="1")


class DeadLetterTally(Base):
    """What pruned dead letters were, per bin and reason, once their rows are gone: dead letters
    are kept for a period and up to a cap per bin, and their counts for good."""

    __tablename__ = "dead_letter_tallies"

    bin_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(64), primary_key=True)
    letters: Mapped[int] = mapped_column(Integer)
    parts: Mapped[int] = mapped_column(Integer)
    last_received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AreaContact(Base):
    """Who hears of an overdue request in an area: a community (level 1, "the community blows
    the whistle") or a street's city-management squad (level 2, "the squad reports for duty")."""

    __tablename__ = "area_contacts"

    area_id: Mapped[str] = mapped_column(ForeignKey("areas.id"), primary_key=True)
    mqtt_topic: Mapped[str | None] = mapped_column(String(300))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    webhook_secret: Mapped[str | None] = mapped_column(String(200))


RETIREMENT_ACTIONS = ("retired", "reinstated")
RETIREMENT_TARGETS = ("bin", "site")


class Retirement(Base):
    """The audit trail of retiring and reinstating bins and sites: who, when and why, never
    changed after (the bins' and sites' `retired_at` say what holds now)."""

    __tablename__ = "retirements"
    __table_args__ = (
        CheckConstraint(f"action IN {RETIREMENT_ACTIONS!r}", name="ck_retirements_action"),
        CheckConstraint(f"target IN {RETIREMENT_TARGETS!r}", name="ck_retirements_target"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    action: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(8))
    target_id: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text)


CHANNEL_KINDS = ("wecom", "dingtalk", "email")
CHANNEL_OWNERS = ("site", "area")
LOCALES = ("zh_CN", "en")


class ContactChannel(Base):
    """Where people read of a site's alerts (its property manager) or an area's alerts and
    escalations (a community, a street's squad): a WeCom or DingTalk group robot, or e-mail
    addresses, each with the language its messages are written in. One of each kind per
    contact. `robot_url` (which holds the robot's key) and `robot_secret` are secrets: set
    with `binwatch fleet notify-channel`, never shown by the API or written to a log."""

    __tablename__ = "contact_channels"
    __table_args__ = (
        CheckConstraint(f"kind IN {CHANNEL_KINDS!r}", name="ck_contact_channels_kind"),
        CheckConstraint(f"owner IN {CHANNEL_OWNERS!r}", name="ck_contact_channels_owner"),
        CheckConstraint(f"locale IN {LOCALES!r}", name="ck_contact_channels_locale"),
        UniqueConstraint("owner", "owner_id", "kind", name="uq_contact_channels"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(8))
    owner_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    locale: Mapped[str] = mapped_column(String(8))
    # E-mail: the addresses, comma-separated. Robots: none.
    addresses: Mapped[str | None] = mapped_column(String(500))
    robot_url: Mapped[str | None] = mapped_column(String(500))
    robot_secret: Mapped[str | None] = mapped_column(String(200))


NOTIFICATION_SOURCES = ("alert", "escalation")


class Notification(Base):
    """One message to one channel: an outbox row the alerter (alerts) or the collector
    (escalations) renders in the channel's language and sends, retrying like a webhook, so
    each reaches its channel once however often they tick. `message` is the structured
    message (the alert notice or escalation JSON), rendered only when sent."""

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(f"source IN {NOTIFICATION_SOURCES!r}", name="ck_notifications_source"),
        UniqueConstraint("channel_id", "subject", name="uq_notifications"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("contact_channels.id", ondelete="CASCADE"), index=True
    )
    source: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    done: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    error: Mapped[str | None] = mapped_column(Text)


class Depot(Base):
    """Where an operator's vehicles start and end their day and unload between trips (its yard
    or the transfer station it tips at)."""

    __tablename__ = "depots"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)


class Vehicle(Base):
    """One of an operator's collection vehicles: the streams it may carry (one per load: sorted
    waste stays sorted in transport), what one load holds, and its working hours (local time)."""

    __tablename__ = "vehicles"
    __table_args__ = (
        CheckConstraint(
            "capacity_l IS NOT NULL OR capacity_kg IS NOT NULL", name="ck_vehicles_capacity"
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), index=True)
    depot_id: Mapped[str] = mapped_column(ForeignKey("depots.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    streams: Mapped[list[str]] = mapped_column(JSON)
    capacity_l: Mapped[int | None] = mapped_column(Integer)
    capacity_kg: Mapped[int | None] = mapped_column(Integer)
    shift_start: Mapped[str] = mapped_column(String(5))  # "HH:MM", the city's local time
    shift_end: Mapped[str] = mapped_column(String(5))
    # [{"start": "HH:MM", "end": "HH:MM", "minutes": n}]: a break of n minutes within the window.
    breaks: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class Crew(Base):
    """A crew of an operator, with the vehicle it usually drives. The crew's console login is a
    user of role `crew` naming the vehicle itself (security/scopes.py, api/console/crew.py)."""

    __tablename__ = "crews"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    vehicle_id: Mapped[str | None] = mapped_column(ForeignKey("vehicles.id"), index=True)
