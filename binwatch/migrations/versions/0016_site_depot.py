"""A site's depot (`sites.depot_id`, nullable): the depot of its operator whose district the site
is in, as the fleet file's `depot` names it; its jobs are planned from that depot. Sites from
before name none and are planned from the nearest depot, as they were.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.add_column(
            sa.Column(
                "depot_id",
                sa.String(64),
                sa.ForeignKey("depots.id", name="fk_sites_depot_id"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.drop_constraint("fk_sites_depot_id", type_="foreignkey")
        batch.drop_column("depot_id")
