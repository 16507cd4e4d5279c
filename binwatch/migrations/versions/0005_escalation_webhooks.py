"""Delivery state of an escalation's webhook on its audit event, so a failed POST to an area's
contact is retried with backoff like an operator's dispatch webhook.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("collection_events") as batch:
        batch.add_column(
            sa.Column("webhook_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("webhook_next_at", _TIME, nullable=True))
        batch.add_column(sa.Column("webhook_delivered_at", _TIME, nullable=True))
        batch.create_index("ix_collection_events_webhook_next_at", ["webhook_next_at"])


def downgrade() -> None:
    with op.batch_alter_table("collection_events") as batch:
        batch.drop_index("ix_collection_events_webhook_next_at")
        batch.drop_column("webhook_delivered_at")
        batch.drop_column("webhook_next_at")
        batch.drop_column("webhook_attempts")
