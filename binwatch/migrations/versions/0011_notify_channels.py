"""People's channels (WeCom and DingTalk group robots, e-mail) of site and area contacts, and the
outbox of the notifications sent to them (alerts and escalations, rendered in each channel's
language).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "contact_channels",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(8), nullable=False),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("locale", sa.String(8), nullable=False),
        sa.Column("addresses", sa.String(500), nullable=True),
        sa.Column("robot_url", sa.String(500), nullable=True),
        sa.Column("robot_secret", sa.String(200), nullable=True),
        sa.CheckConstraint(
            "kind IN ('wecom', 'dingtalk', 'email')", name="ck_contact_channels_kind"
        ),
        sa.CheckConstraint("owner IN ('site', 'area')", name="ck_contact_channels_owner"),
        sa.CheckConstraint("locale IN ('zh_CN', 'en')", name="ck_contact_channels_locale"),
        sa.UniqueConstraint("owner", "owner_id", "kind", name="uq_contact_channels"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "channel_id",
            sa.Integer(),
            sa.ForeignKey("contact_channels.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(100), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", _TIME, nullable=True),
        sa.Column("delivered_at", _TIME, nullable=True),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("source IN ('alert', 'escalation')", name="ck_notifications_source"),
        sa.UniqueConstraint("channel_id", "subject", name="uq_notifications"),
    )
    op.create_index("ix_notifications_channel_id", "notifications", ["channel_id"])
    op.create_index("ix_notifications_done", "notifications", ["done"])


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("contact_channels")
