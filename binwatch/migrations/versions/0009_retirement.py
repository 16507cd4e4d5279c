"""Bins and sites can be retired (kept for history, no longer expected to report) and
reinstated; `retirements` is the audit trail of who did which, when and why.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.add_column(sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("bins") as batch:
        batch.add_column(sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("reinstated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "retirements",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("target", sa.String(8), nullable=False),
        sa.Column("target_id", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.CheckConstraint("action IN ('retired', 'reinstated')", name="ck_retirements_action"),
        sa.CheckConstraint("target IN ('bin', 'site')", name="ck_retirements_target"),
    )
    op.create_index("ix_retirements_at", "retirements", ["at"])
    op.create_index("ix_retirements_target_id", "retirements", ["target_id"])


def downgrade() -> None:
    op.drop_index("ix_retirements_target_id", "retirements")
    op.drop_index("ix_retirements_at", "retirements")
    op.drop_table("retirements")
    with op.batch_alter_table("bins") as batch:
        batch.drop_column("reinstated_at")
        batch.drop_column("retired_at")
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("retired_at")
