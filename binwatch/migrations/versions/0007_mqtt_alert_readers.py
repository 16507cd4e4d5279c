"""MQTT accounts of people who read alerts: a manager's account is scoped to its sites
(`site_ids`), an admin's reads the whole city's (security/mqtt_auth.py writes their ACL).

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHECK = "ck_mqtt_credentials_kind"


def upgrade() -> None:
    with op.batch_alter_table("mqtt_credentials") as batch:
        batch.add_column(sa.Column("site_ids", sa.Text(), nullable=False, server_default=""))
        batch.drop_constraint(_CHECK, type_="check")
        batch.create_check_constraint(_CHECK, "kind IN ('bin', 'service', 'manager', 'admin')")


def downgrade() -> None:
    op.execute("DELETE FROM mqtt_credentials WHERE kind IN ('manager', 'admin')")
    with op.batch_alter_table("mqtt_credentials") as batch:
        batch.drop_constraint(_CHECK, type_="check")
        batch.create_check_constraint(_CHECK, "kind IN ('bin', 'service')")
        batch.drop_column("site_ids")
