"""The registry: the city's grid of areas, operator companies, pilot sites, their bins, and the
dead letters ingest could not store.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "areas",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("parent_id", sa.String(64), sa.ForeignKey("areas.id"), nullable=True),
        sa.CheckConstraint(
            "kind IN ('city', 'district', 'street', 'community')", name="ck_areas_kind"
        ),
    )
    op.create_index("ix_areas_parent_id", "areas", ["parent_id"])

    op.create_table(
        "operators",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("webhook_url", sa.String(500), nullable=True),
    )

    op.create_table(
        "sites",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("site_type", sa.String(16), nullable=False),
        sa.Column("community_id", sa.String(64), sa.ForeignKey("areas.id"), nullable=False),
        sa.Column("operator_id", sa.String(64), sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("address", sa.String(300), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
        sa.CheckConstraint("site_type IN ('agency', 'school', 'compound')", name="ck_sites_type"),
    )
    op.create_index("ix_sites_community_id", "sites", ["community_id"])
    op.create_index("ix_sites_operator_id", "sites", ["operator_id"])

    op.create_table(
        "bins",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("stream", sa.String(16), nullable=False),
        sa.Column("capacity_l", sa.Integer(), nullable=False),
        sa.Column("threshold_pct", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "stream IN ('recyclable', 'hazardous', 'kitchen', 'residual')", name="ck_bins_stream"
        ),
        sa.CheckConstraint("threshold_pct > 0 AND threshold_pct <= 100", name="ck_bins_threshold"),
        sa.CheckConstraint("capacity_l > 0", name="ck_bins_capacity"),
    )
    op.create_index("ix_bins_site_id", "bins", ["site_id"])

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("topic", sa.String(500), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("payload_size", sa.Integer(), nullable=False),
    )
    op.create_index("ix_dead_letters_received_at", "dead_letters", ["received_at"])
    op.create_index("ix_dead_letters_reason", "dead_letters", ["reason"])


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("bins")
    op.drop_table("sites")
    op.drop_table("operators")
    op.drop_table("areas")
