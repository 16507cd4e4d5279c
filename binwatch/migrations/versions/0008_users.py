"""The console's people: user accounts (argon2 password hashes, a role and its scope, a locale)
and their server-side sessions (issue 15).

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("site_ids", sa.Text(), nullable=False),
        sa.Column("area_id", sa.String(64), sa.ForeignKey("areas.id"), nullable=True),
        sa.Column("operator_id", sa.String(64), sa.ForeignKey("operators.id"), nullable=True),
        sa.Column("locale", sa.String(8), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "role IN ('admin', 'manager', 'grid', 'operator')", name="ck_users_role"
        ),
        sa.CheckConstraint("locale IN ('zh_CN', 'en')", name="ck_users_locale"),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column(
            "username",
            sa.String(64),
            sa.ForeignKey("users.username", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_console_sessions_username", "console_sessions", ["username"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_username", "console_sessions")
    op.drop_table("console_sessions")
    op.drop_table("users")
