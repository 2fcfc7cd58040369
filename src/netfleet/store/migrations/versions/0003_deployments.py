"""Deployments: deployments, their nodes (lifecycle state, generations) and the audit log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NODE_STATES = "state IN ('pending', 'provisioning', 'configuring', 'running', 'failed')"


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _big() -> sa.types.TypeEngine[Any]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("config_template", sa.Text(), nullable=True),
        sa.Column("vars", _json(), nullable=False),
        sa.Column("telemetry_profile", sa.String(64), nullable=True),
        sa.Column("options", _json(), nullable=False),
        sa.Column("target_node_count", sa.Integer(), nullable=False),
        sa.Column("target_generation", sa.Integer(), nullable=False),
        sa.Column("remediate", sa.Boolean(), nullable=False),
        sa.Column("deleting", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("target_node_count BETWEEN 0 AND 10000",
                           name="ck_deployments_target_node_count"),
        sa.CheckConstraint("target_generation >= 1", name="ck_deployments_target_generation"),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
    )
    op.create_index("ix_deployments_created_at_id", "deployments", ["created_at", "id"])
    op.create_table(
        "deployment_nodes",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("deployment_id", sa.String(36), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=True),
        sa.Column("ip_address", sa.String(64), nullable=True),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("target_generation", sa.Integer(), nullable=False),
        sa.Column("observed_generation", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("drift", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_transition_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(NODE_STATES, name="ck_deployment_nodes_state"),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"],
                                name="fk_deployment_nodes_deployment_id_deployments",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"],
                                name="fk_deployment_nodes_device_id_devices",
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_nodes"),
    )
    op.create_index("ix_deployment_nodes_deployment_id_ordinal", "deployment_nodes",
                    ["deployment_id", "ordinal"], unique=True)
    op.create_index("ix_deployment_nodes_deployment_id_state", "deployment_nodes",
                    ["deployment_id", "state"])
    op.create_index("ix_deployment_nodes_device_id", "deployment_nodes", ["device_id"])
    op.create_table(
        "deployment_events",
        sa.Column("id", _big(), nullable=False),
        sa.Column("deployment_id", sa.String(36), nullable=False),
        sa.Column("node_id", sa.String(36), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_events"),
    )
    op.create_index("ix_deployment_events_deployment_id_id", "deployment_events",
                    ["deployment_id", "id"])


def downgrade() -> None:
    op.drop_table("deployment_events")
    op.drop_table("deployment_nodes")
    op.drop_table("deployments")
