"""Alerts, their history and deliveries, what the alert rules remember per bin, and the property
manager's contact per site.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = "state IN ('active', 'acknowledged')"
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "site_contacts",
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id"), primary_key=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("mqtt_topic", sa.String(300), nullable=True),
        sa.Column("webhook_url", sa.String(500), nullable=True),
        sa.Column("webhook_secret", sa.String(200), nullable=True),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("bin_id", sa.String(64), sa.ForeignKey("bins.id"), nullable=False),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("last_seen_at", _TIME, nullable=False),
        sa.Column("acknowledged_at", _TIME, nullable=True),
        sa.Column("acknowledged_by", sa.String(100), nullable=True),
        sa.Column("cleared_at", _TIME, nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "state IN ('active', 'acknowledged', 'cleared')", name="ck_alerts_state"
        ),
    )
    for column in ("bin_id", "site_id", "type", "severity", "state", "started_at"):
        op.create_index(f"ix_alerts_{column}", "alerts", [column])
    op.create_index(
        "uq_alerts_live_bin_type",
        "alerts",
        ["bin_id", "type"],
        unique=True,
        sqlite_where=sa.text(_LIVE),
        postgresql_where=sa.text(_LIVE),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.Integer(), sa.ForeignKey("alerts.id"), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("exported", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('raised', 'acknowledged', 'cleared')", name="ck_alert_events_kind"
        ),
    )
    op.create_index("ix_alert_events_alert_id", "alert_events", ["alert_id"])
    op.create_index("ix_alert_events_exported", "alert_events", ["exported"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.Integer(), sa.ForeignKey("alerts.id"), nullable=False),
        sa.Column("notice", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(16), nullable=False),
        sa.Column("recipient_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("target", sa.String(500), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", _TIME, nullable=True),
        sa.Column("delivered_at", _TIME, nullable=True),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("channel IN ('mqtt', 'webhook')", name="ck_alert_deliveries_channel"),
        sa.UniqueConstraint(
            "alert_id", "notice", "recipient", "channel", name="uq_alert_deliveries"
        ),
    )
    op.create_index("ix_alert_deliveries_alert_id", "alert_deliveries", ["alert_id"])
    op.create_index("ix_alert_deliveries_delivered_at", "alert_deliveries", ["delivered_at"])
    op.create_index("ix_alert_deliveries_done", "alert_deliveries", ["done"])
    op.create_table(
        "bin_health",
        sa.Column("bin_id", sa.String(64), sa.ForeignKey("bins.id"), primary_key=True),
        sa.Column("last_seen_at", _TIME, nullable=True),
        sa.Column("last_ts", _TIME, nullable=True),
        sa.Column("last_seq", sa.Integer(), nullable=True),
        sa.Column("last_temp_c", sa.Float(), nullable=True),
        sa.Column("full_since", _TIME, nullable=True),
    )
    op.create_index("ix_bin_health_last_seen_at", "bin_health", ["last_seen_at"])


def downgrade() -> None:
    op.drop_table("bin_health")
    op.drop_table("alert_deliveries")
    op.drop_table("alert_events")
    op.drop_table("alerts")
    op.drop_table("site_contacts")
