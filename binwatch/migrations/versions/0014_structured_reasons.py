"""Reasons the system writes as data (core/reasons.py): a request's reason, an alert's detail and
the notes the collector and the alerter write on events get a message id and its arguments next
to their English text, so people read them in their own language. Rows from before keep their
text and no message.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("collection_requests", sa.Column("reason_msg", sa.JSON(), nullable=True))
    op.add_column("alerts", sa.Column("detail_msg", sa.JSON(), nullable=True))
    op.add_column("collection_events", sa.Column("note_msg", sa.JSON(), nullable=True))
    op.add_column("alert_events", sa.Column("note_msg", sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in ("alert_events", "collection_events"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("note_msg")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("detail_msg")
    with op.batch_alter_table("collection_requests") as batch:
        batch.drop_column("reason_msg")
