"""API keys and MQTT credentials (issue 7).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("site_ids", sa.Text(), nullable=False),
        sa.Column("operator_id", sa.String(64), sa.ForeignKey("operators.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('admin', 'manager', 'operator')", name="ck_api_keys_role"),
    )
    op.create_table(
        "mqtt_credentials",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("bin_id", sa.String(64), sa.ForeignKey("bins.id"), nullable=True),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('bin', 'service')", name="ck_mqtt_credentials_kind"),
    )
    op.create_index("ix_mqtt_credentials_bin_id", "mqtt_credentials", ["bin_id"])


def downgrade() -> None:
    op.drop_index("ix_mqtt_credentials_bin_id", "mqtt_credentials")
    op.drop_table("mqtt_credentials")
    op.drop_table("api_keys")
