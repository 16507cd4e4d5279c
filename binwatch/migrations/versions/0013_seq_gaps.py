"""A bin's open seq gap: the seqs it still waits for (`bin_health.gap_seqs`) and since when
(`gap_since`, indexed: the alerter looks for the gaps past their grace).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bin_health") as batch:
        batch.add_column(sa.Column("gap_seqs", sa.JSON(none_as_null=True), nullable=True))
        batch.add_column(sa.Column("gap_since", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_bin_health_gap_since", "bin_health", ["gap_since"])


def downgrade() -> None:
    op.drop_index("ix_bin_health_gap_since", "bin_health")
    with op.batch_alter_table("bin_health") as batch:
        batch.drop_column("gap_since")
        batch.drop_column("gap_seqs")
