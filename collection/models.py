"""Collection's tables: the requests to empty a bin and their audit trail. The schema is the
Alembic migrations' (binwatch/migrations); these classes must match them (a test compares them)."""

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
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from devices.models import Base, UtcDateTime

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
EVENT_KINDS = ("transition", "escalation", "report")
"""A `report` is a crew's word on the request that changes nothing (could not empty it, and
why: `note_msg`); the dispatcher decides what comes next."""
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
    # A rule's reason as a message id and its arguments (core/reasons.py), so people read it in
    # their language; None for a person's own words and for requests from before.
    reason_msg: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
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
    # A note the collector wrote, as a message and its arguments (core/reasons.py); None for a
    # person's own note and for events from before.
    note_msg: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    exported: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    webhook_next_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    webhook_delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    request: Mapped[CollectionRequest] = relationship(back_populates="events")


STOP_KINDS = ("start", "job", "break", "unload", "end")


class RoutePlan(Base):
    """One operator's routes for one day, as planned at one moment (`version` counts the
    re-plans of that day; the latest is the plan in force). Published to the operator like a
    dispatch: MQTT first (`published_at`), then its webhook with retries (`webhook_*`)."""

    __tablename__ = "route_plans"
    __table_args__ = (
        Index("uq_route_plans_version", "operator_id", "day", "version", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), index=True)
    day: Mapped[str] = mapped_column(String(10))  # the local date, YYYY-MM-DD
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text)
    solver_ms: Mapped[int] = mapped_column(Integer)
    # [{"job", "bin_id", "request_id", "stream", "reason"}]: what fits no route, and why.
    unassigned: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    publish_error: Mapped[str | None] = mapped_column(Text)
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_next_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    webhook_delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    stops: Mapped[list[RouteStop]] = relationship(
        back_populates="plan", order_by=lambda: [RouteStop.vehicle_id, RouteStop.position]
    )


class RouteStop(Base):
    """A stop of a vehicle's route in a plan, in driving order (`position`)."""

    __tablename__ = "route_stops"
    __table_args__ = (
        CheckConstraint(f"kind IN {STOP_KINDS!r}", name="ck_route_stops_kind"),
        Index("ix_route_stops_plan_vehicle", "plan_id", "vehicle_id", "position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("route_plans.id"))
    vehicle_id: Mapped[str] = mapped_column(ForeignKey("vehicles.id"))
    position: Mapped[int] = mapped_column(Integer)
    trip: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("collection_requests.id"))
    bin_id: Mapped[str | None] = mapped_column(String(64))
    site_id: Mapped[str | None] = mapped_column(String(64))
    stream: Mapped[str | None] = mapped_column(String(16))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    arrival_at: Mapped[datetime] = mapped_column(UtcDateTime())
    departure_at: Mapped[datetime] = mapped_column(UtcDateTime())
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    distance_m: Mapped[float] = mapped_column(Float)  # driven since the route's start
    load_l: Mapped[float] = mapped_column(Float)  # on board after the stop
    load_kg: Mapped[float] = mapped_column(Float)
    volume_l: Mapped[float | None] = mapped_column(Float)  # the bin's own contents (jobs)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    plan: Mapped[RoutePlan] = relationship(back_populates="stops")


TAP_ACTIONS = ("emptied", "not_emptied")
TAP_REASONS = ("blocked", "bin_damaged", "contaminated_refused", "no_access")


class CrewTap(Base):
    """One tap of a crew on a stop of its route (collection/crew.py): the id is the phone's own
    (a UUID made when the tap was made), so a tap sent again after a lost answer, or replayed
    from the phone's offline queue, finds its row and is one action. `outcome` is what the tap
    did (completed the request, recorded the report, or refused: `refusal` says why) and is
    what a repeat answers."""

    __tablename__ = "crew_taps"
    __table_args__ = (
        CheckConstraint(f"action IN {TAP_ACTIONS!r}", name="ck_crew_taps_action"),
        CheckConstraint(f"reason IS NULL OR reason IN {TAP_REASONS!r}", name="ck_crew_taps_reason"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    stop_id: Mapped[int] = mapped_column(ForeignKey("route_stops.id"), index=True)
    vehicle_id: Mapped[str] = mapped_column(ForeignKey("vehicles.id"))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("collection_requests.id"))
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    photo: Mapped[str | None] = mapped_column(String(200))  # its key in the photo store
    at: Mapped[datetime] = mapped_column(UtcDateTime())  # when the server took it
    outcome: Mapped[str] = mapped_column(String(16))
    refusal: Mapped[str | None] = mapped_column(Text)
