"""Collection requests, their audit trail, the grid's escalation contacts, and a webhook secret
per operator.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "status IN ('open', 'dispatched', 'acknowledged')"


def upgrade() -> None:
    with op.batch_alter_table("operators") as batch:
        batch.add_column(sa.Column("webhook_secret", sa.String(200), nullable=True))

    op.create_table(
        "collection_requests",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("bin_id", sa.String(64), sa.ForeignKey("bins.id"), nullable=False),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("operator_id", sa.String(64), sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("stream", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger_fill_pct", sa.Float(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_fill_pct", sa.Float(), nullable=True),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("webhook_attempts", sa.Integer(), nullable=False),
        sa.Column("webhook_next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("webhook_delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispatch_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'dispatched', 'acknowledged', 'completed', 'verified', "
            "'disputed', 'cancelled')",
            name="ck_collection_requests_status",
        ),
        sa.CheckConstraint(
            "rule IN ('threshold', 'kitchen_daily', 'forecast', 'manual')",
            name="ck_collection_requests_rule",
        ),
    )
    for column in ("bin_id", "site_id", "operator_id", "status", "created_at"):
        op.create_index(f"ix_collection_requests_{column}", "collection_requests", [column])
    op.create_index(
        "uq_collection_requests_open_bin",
        "collection_requests",
        ["bin_id"],
        unique=True,
        sqlite_where=sa.text(_OPEN),
        postgresql_where=sa.text(_OPEN),
    )

    op.create_table(
        "collection_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "request_id", sa.Integer(), sa.ForeignKey("collection_requests.id"), nullable=False
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("escalation_level", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("exported", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('transition', 'escalation')", name="ck_collection_events_kind"
        ),
    )
    op.create_index("ix_collection_events_request_id", "collection_events", ["request_id"])
    op.create_index("ix_collection_events_exported", "collection_events", ["exported"])

    op.create_table(
        "area_contacts",
        sa.Column("area_id", sa.String(64), sa.ForeignKey("areas.id"), primary_key=True),
        sa.Column("mqtt_topic", sa.String(300), nullable=True),
        sa.Column("webhook_url", sa.String(500), nullable=True),
        sa.Column("webhook_secret", sa.String(200), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("area_contacts")
    op.drop_table("collection_events")
    op.drop_table("collection_requests")
    with op.batch_alter_table("operators") as batch:
        batch.drop_column("webhook_secret")
