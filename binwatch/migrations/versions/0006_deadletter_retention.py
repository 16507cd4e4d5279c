"""Dead letters are kept for a period and up to a cap per bin: each letter names its bin and how
many readings it stands for, and the counts of pruned letters live on in `dead_letter_tallies`.

Revision ID: 0006
Revises: 0007 (merged into main before this one; the chain is 0005 → 0007 → 0006)
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("bin_id", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("parts", sa.Integer(), nullable=False, server_default="1"))
        batch.create_index("ix_dead_letters_bin_id", ["bin_id"])
    op.create_table(
        "dead_letter_tallies",
        sa.Column("bin_id", sa.String(64), primary_key=True),
        sa.Column("reason", sa.String(64), primary_key=True),
        sa.Column("letters", sa.Integer(), nullable=False),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dead_letter_tallies")
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_index("ix_dead_letters_bin_id")
        batch.drop_column("parts")
        batch.drop_column("bin_id")
