"""The crew role (issue 16): keys and users of role `crew` scoped to an operator's vehicle
(`vehicle_id`), the crew's taps on the stops of its route (`crew_taps`, keyed by the phone's
own id so a repeated tap is one action), and `report` events on a request (a crew could not
empty the bin, and why).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROLES = "role IN ('admin', 'manager', 'grid', 'operator', 'crew')"
_ROLES_BEFORE = "role IN ('admin', 'manager', 'grid', 'operator')"
_KINDS = "kind IN ('transition', 'escalation', 'report')"
_KINDS_BEFORE = "kind IN ('transition', 'escalation')"


def upgrade() -> None:
    for table in ("api_keys", "users"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column(
                    "vehicle_id",
                    sa.String(64),
                    sa.ForeignKey("vehicles.id", name=f"fk_{table}_vehicle_id"),
                    nullable=True,
                )
            )
            batch.drop_constraint(f"ck_{table}_role", type_="check")
            batch.create_check_constraint(f"ck_{table}_role", _ROLES)
    with op.batch_alter_table("collection_events") as batch:
        batch.drop_constraint("ck_collection_events_kind", type_="check")
        batch.create_check_constraint("ck_collection_events_kind", _KINDS)
    op.create_table(
        "crew_taps",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("stop_id", sa.Integer(), sa.ForeignKey("route_stops.id"), nullable=False),
        sa.Column("vehicle_id", sa.String(64), sa.ForeignKey("vehicles.id"), nullable=False),
        sa.Column(
            "request_id", sa.Integer(), sa.ForeignKey("collection_requests.id"), nullable=True
        ),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("photo", sa.String(200), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("refusal", sa.Text(), nullable=True),
        sa.CheckConstraint("action IN ('emptied', 'not_emptied')", name="ck_crew_taps_action"),
        sa.CheckConstraint(
            "reason IS NULL OR reason IN ('blocked', 'bin_damaged', 'contaminated_refused', "
            "'no_access')",
            name="ck_crew_taps_reason",
        ),
    )
    op.create_index("ix_crew_taps_stop_id", "crew_taps", ["stop_id"])


def downgrade() -> None:
    op.drop_index("ix_crew_taps_stop_id", "crew_taps")
    op.drop_table("crew_taps")
    op.execute("DELETE FROM collection_events WHERE kind = 'report'")
    with op.batch_alter_table("collection_events") as batch:
        batch.drop_constraint("ck_collection_events_kind", type_="check")
        batch.create_check_constraint("ck_collection_events_kind", _KINDS_BEFORE)
    # Said, not left to ON DELETE CASCADE: SQLite migrates with its foreign keys off (env.py).
    op.execute(
        "DELETE FROM console_sessions WHERE username IN"
        " (SELECT username FROM users WHERE role = 'crew')"
    )
    for table in ("users", "api_keys"):
        op.execute(f"DELETE FROM {table} WHERE role = 'crew'")
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"ck_{table}_role", type_="check")
            batch.create_check_constraint(f"ck_{table}_role", _ROLES_BEFORE)
            batch.drop_constraint(f"fk_{table}_vehicle_id", type_="foreignkey")
            batch.drop_column("vehicle_id")
