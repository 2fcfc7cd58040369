"""Initial schema: inventory, facts, credentials, API keys, jobs and results.

Revision ID: 0001
Revises:
Create Date: 2026-05-01

Written out in full rather than importing netfleet.store.models: a migration must keep
producing the same schema when the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out')"
TOP_LEVEL = sa.text("parent_id IS NULL")


def _json(null: bool = False) -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=null).with_variant(
        postgresql.JSONB(none_as_null=null, astext_type=sa.Text()), "postgresql")


def _at(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _big_id() -> sa.Column[Any]:
    # 64-bit on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY auto-increments.
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "credential_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("password_enc", sa.Text(), nullable=True),
        sa.Column("enable_secret_enc", sa.Text(), nullable=True),
        sa.Column("ssh_key_enc", sa.Text(), nullable=True),
        _at("created_at"),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_credential_profiles"),
        sa.UniqueConstraint("name", name="uq_credential_profiles_name"),
    )

    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(64), nullable=False),
        sa.Column("driver", sa.String(64), nullable=True),
        sa.Column("site", sa.String(255), nullable=True),
        sa.Column("tags", _json(), nullable=False),
        sa.Column("vars", _json(), nullable=False),
        sa.Column("credential_profile_id", sa.Integer(), nullable=True),
        _at("created_at"),
        _at("updated_at"),
        sa.ForeignKeyConstraint(["credential_profile_id"], ["credential_profiles.id"],
                                name="fk_devices_credential_profile_id_credential_profiles",
                                ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        sa.UniqueConstraint("name", name="uq_devices_name"),
    )
    op.create_index("ix_devices_platform", "devices", ["platform"])
    op.create_index("ix_devices_site", "devices", ["site"])
    op.create_index("ix_devices_credential_profile_id", "devices", ["credential_profile_id"])

    op.create_table(
        "device_facts",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("serial", sa.String(255), nullable=True),
        sa.Column("os_version", sa.String(255), nullable=True),
        sa.Column("uptime_seconds", sa.BigInteger(), nullable=True),
        sa.Column("hostname", sa.String(255), nullable=True),
        _at("collected_at"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"],
                                name="fk_device_facts_device_id_devices", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id", name="pk_device_facts"),
    )

    op.create_table(
        "device_facts_history",
        _big_id(),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(32), nullable=False),
        sa.Column("old", sa.Text(), nullable=True),
        sa.Column("new", sa.Text(), nullable=True),
        _at("at"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"],
                                name="fk_device_facts_history_device_id_devices",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_device_facts_history"),
    )
    op.create_index("ix_device_facts_history_device_id_at", "device_facts_history",
                    ["device_id", "at"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        _at("created_at"),
        _at("last_used_at", nullable=True),
        _at("revoked_at", nullable=True),
        sa.CheckConstraint("role IN ('viewer', 'operator', 'admin')", name="ck_api_keys_role"),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
    )
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])

    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("selector", _json(null=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("parent_id", sa.String(36), nullable=True),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("requested_by", sa.String(255), nullable=True),
        _at("created_at"),
        _at("started_at", nullable=True),
        _at("finished_at", nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("cancelled", sa.Integer(), nullable=False),
        sa.CheckConstraint("kind IN ('command', 'config', 'facts')", name="ck_jobs_kind"),
        sa.CheckConstraint(STATUSES, name="ck_jobs_status"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], name="fk_jobs_device_id_devices",
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["parent_id"], ["jobs.id"], name="fk_jobs_parent_id_jobs",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_parent_id", "jobs", ["parent_id"])
    op.create_index("ix_jobs_device_id", "jobs", ["device_id"])
    op.create_index("ix_jobs_top_created_at", "jobs", ["created_at"],
                    postgresql_where=TOP_LEVEL, sqlite_where=TOP_LEVEL)
    op.create_index("ix_jobs_top_status_created_at", "jobs", ["status", "created_at"],
                    postgresql_where=TOP_LEVEL, sqlite_where=TOP_LEVEL)

    op.create_table(
        "job_results",
        _big_id(),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("device_name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("outputs", _json(), nullable=False),
        sa.Column("diff", sa.Text(), nullable=True),
        _at("queued_at"),
        _at("started_at", nullable=True),
        _at("finished_at", nullable=True),
        sa.Column("session_reused", sa.Boolean(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.CheckConstraint(STATUSES, name="ck_job_results_status"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_job_results_job_id_jobs",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_job_results"),
        sa.UniqueConstraint("job_id", name="uq_job_results_job_id"),
    )
    op.create_index("ix_job_results_device_name", "job_results", ["device_name"])


def downgrade() -> None:
    # Tables in reverse order of their foreign keys; indexes go with their tables.
    for table in ("job_results", "jobs", "api_keys", "device_facts_history", "device_facts",
                  "devices", "credential_profiles"):
        op.drop_table(table)
