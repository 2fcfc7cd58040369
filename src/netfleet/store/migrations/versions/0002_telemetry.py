"""Telemetry: polling profiles, series, raw samples and one-minute rollups.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _big() -> sa.types.TypeEngine[Any]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "telemetry_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("body", _json(), nullable=False),
        sa.Column("where", _json(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_telemetry_profiles"),
        sa.UniqueConstraint("name", name="uq_telemetry_profiles_name"),
    )
    op.create_table(
        "telemetry_series",
        sa.Column("id", _big(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("labels", sa.String(512), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"],
                                name="fk_telemetry_series_device_id_devices",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_telemetry_series"),
    )
    op.create_index("uq_telemetry_series_device_metric_labels", "telemetry_series",
                    ["device_id", "metric", "labels"], unique=True)
    op.create_index("ix_telemetry_series_metric_labels", "telemetry_series",
                    ["metric", "labels"])
    op.create_table(
        "telemetry_samples",
        sa.Column("series_id", _big(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["series_id"], ["telemetry_series.id"],
                                name="fk_telemetry_samples_series_id_telemetry_series",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("series_id", "ts", name="pk_telemetry_samples"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_telemetry_samples_ts", "telemetry_samples", ["ts"])
    op.create_table(
        "telemetry_rollups_1m",
        sa.Column("series_id", _big(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("avg", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["series_id"], ["telemetry_series.id"],
                                name="fk_telemetry_rollups_1m_series_id_telemetry_series",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("series_id", "ts", name="pk_telemetry_rollups_1m"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_telemetry_rollups_1m_ts", "telemetry_rollups_1m", ["ts"])


def downgrade() -> None:
    op.drop_table("telemetry_rollups_1m")
    op.drop_table("telemetry_samples")
    op.drop_table("telemetry_series")
    op.drop_table("telemetry_profiles")
