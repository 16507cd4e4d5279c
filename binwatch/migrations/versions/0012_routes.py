"""The operator's side of the fleet (depots, vehicles, crews) and the planned routes of the day
(route_plans, route_stops).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "depots",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("operator_id", sa.String(64), sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
    )
    op.create_index("ix_depots_operator_id", "depots", ["operator_id"])
    op.create_table(
        "vehicles",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("operator_id", sa.String(64), sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("depot_id", sa.String(64), sa.ForeignKey("depots.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("streams", sa.JSON(), nullable=False),
        sa.Column("capacity_l", sa.Integer(), nullable=True),
        sa.Column("capacity_kg", sa.Integer(), nullable=True),
        sa.Column("shift_start", sa.String(5), nullable=False),
        sa.Column("shift_end", sa.String(5), nullable=False),
        sa.Column("breaks", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "capacity_l IS NOT NULL OR capacity_kg IS NOT NULL", name="ck_vehicles_capacity"
        ),
    )
    op.create_index("ix_vehicles_operator_id", "vehicles", ["operator_id"])
    op.create_index("ix_vehicles_depot_id", "vehicles", ["depot_id"])
    op.create_table(
        "crews",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("operator_id", sa.String(64), sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("vehicle_id", sa.String(64), sa.ForeignKey("vehicles.id"), nullable=True),
    )
    op.create_index("ix_crews_operator_id", "crews", ["operator_id"])
    op.create_index("ix_crews_vehicle_id", "crews", ["vehicle_id"])
    op.create_table(
        "route_plans",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("operator_id", sa.String(64), sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("solver_ms", sa.Integer(), nullable=False),
        sa.Column("unassigned", sa.JSON(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("publish_error", sa.Text(), nullable=True),
        sa.Column("webhook_attempts", sa.Integer(), nullable=False),
        sa.Column("webhook_next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("webhook_delivered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_route_plans_operator_id", "route_plans", ["operator_id"])
    op.create_index(
        "uq_route_plans_version", "route_plans", ["operator_id", "day", "version"], unique=True
    )
    op.create_table(
        "route_stops",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("plan_id", sa.Integer(), sa.ForeignKey("route_plans.id"), nullable=False),
        sa.Column("vehicle_id", sa.String(64), sa.ForeignKey("vehicles.id"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("trip", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column(
            "request_id", sa.Integer(), sa.ForeignKey("collection_requests.id"), nullable=True
        ),
        sa.Column("bin_id", sa.String(64), nullable=True),
        sa.Column("site_id", sa.String(64), nullable=True),
        sa.Column("stream", sa.String(16), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
        sa.Column("arrival_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("departure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("distance_m", sa.Float(), nullable=False),
        sa.Column("load_l", sa.Float(), nullable=False),
        sa.Column("load_kg", sa.Float(), nullable=False),
        sa.Column("volume_l", sa.Float(), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('start', 'job', 'break', 'unload', 'end')", name="ck_route_stops_kind"
        ),
    )
    op.create_index(
        "ix_route_stops_plan_vehicle", "route_stops", ["plan_id", "vehicle_id", "position"]
    )


def downgrade() -> None:
    op.drop_index("ix_route_stops_plan_vehicle", "route_stops")
    op.drop_table("route_stops")
    op.drop_index("uq_route_plans_version", "route_plans")
    op.drop_index("ix_route_plans_operator_id", "route_plans")
    op.drop_table("route_plans")
    op.drop_index("ix_crews_vehicle_id", "crews")
    op.drop_index("ix_crews_operator_id", "crews")
    op.drop_table("crews")
    op.drop_index("ix_vehicles_depot_id", "vehicles")
    op.drop_index("ix_vehicles_operator_id", "vehicles")
    op.drop_table("vehicles")
    op.drop_index("ix_depots_operator_id", "depots")
    op.drop_table("depots")
