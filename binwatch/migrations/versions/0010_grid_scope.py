"""Grid officials' API keys (role `grid`, scoped to an area) and the audit trail of the
console's accounts (`user_events`).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHECK = "ck_api_keys_role"


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column(
                "area_id",
                sa.String(64),
                sa.ForeignKey("areas.id", name="fk_api_keys_area_id"),
                nullable=True,
            )
        )
        batch.drop_constraint(_CHECK, type_="check")
        batch.create_check_constraint(_CHECK, "role IN ('admin', 'manager', 'grid', 'operator')")
    op.create_table(
        "user_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "action IN ('created', 'scope_changed', 'disabled', 'password_reset')",
            name="ck_user_events_action",
        ),
    )
    op.create_index("ix_user_events_username", "user_events", ["username"])


def downgrade() -> None:
    op.drop_index("ix_user_events_username", "user_events")
    op.drop_table("user_events")
    op.execute("DELETE FROM api_keys WHERE role = 'grid'")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint(_CHECK, type_="check")
        batch.create_check_constraint(_CHECK, "role IN ('admin', 'manager', 'operator')")
        batch.drop_constraint("fk_api_keys_area_id", type_="foreignkey")
        batch.drop_column("area_id")
