"""The tables, as SQLAlchemy declarative classes. Only store/ sees these; repos return records.

Every change here needs a migration in store/migrations/versions/ (a test compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out on every database. SQLite keeps no zone, so values are
    stored as naive UTC there and given their zone back on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: netfleet stores aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL: it can be indexed and has containment (`tags @> '["core"]'`).
JSONType = JSON().with_variant(JSONB(), "postgresql")
# For nullable JSON columns: Python None is SQL NULL, not the JSON value null.
JSONOrNull = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# 64-bit ids for tables that grow with use; SQLite only auto-increments INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Deterministic constraint names, so migrations can name what they alter or drop.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(), dict[str, Any]: JSONType, list[str]: JSONType,
        list[dict[str, Any]]: JSONType}


class CredentialProfileRow(Base):
    __tablename__ = "credential_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    username: Mapped[str] = mapped_column(String(255))
    # Fernet tokens (store/secrets.py), never plaintext.
    password_enc: Mapped[str | None] = mapped_column(Text)
    enable_secret_enc: Mapped[str | None] = mapped_column(Text)
    ssh_key_enc: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DeviceRow(Base):
    __tablename__ = "devices"
    __table_args__ = (
        # Selectors filter on platform and site; both have few distinct values, so these help
        # mostly at fleet sizes where a scan starts to show (tens of thousands).
        Index(None, "platform"),
        Index(None, "site"),
        # Postgres does not index foreign keys itself; without this, deleting a profile scans
        # every device to check that none still uses it.
        Index(None, "credential_profile_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Unique index doubles as the index for get-by-name, name globs (prefix LIKE/GLOB) and
    # keyset pagination (ORDER BY name).
    name: Mapped[str] = mapped_column(String(255), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    platform: Mapped[str] = mapped_column(String(64))
    driver: Mapped[str | None] = mapped_column(String(64))  # None: the platform's default
    site: Mapped[str | None] = mapped_column(String(255))
    tags: Mapped[list[str]] = mapped_column(default=list)
    vars: Mapped[dict[str, Any]] = mapped_column(default=dict)
    credential_profile_id: Mapped[int | None] = mapped_column(
        ForeignKey("credential_profiles.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DeviceFactsRow(Base):
    """The current facts of a device: one row per device, replaced on every collection."""

    __tablename__ = "device_facts"

    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str | None] = mapped_column(String(255))
    serial: Mapped[str | None] = mapped_column(String(255))
    os_version: Mapped[str | None] = mapped_column(String(255))
    uptime_seconds: Mapped[int | None] = mapped_column(BigInteger)
    hostname: Mapped[str | None] = mapped_column(String(255))
    collected_at: Mapped[datetime]


class DeviceFactsHistoryRow(Base):
    """One row per changed fact (field, old, new, at)."""

    __tablename__ = "device_facts_history"
    __table_args__ = (
        # The only query: a device's history, newest first. Also serves the cascade on delete.
        Index(None, "device_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    field: Mapped[str] = mapped_column(String(32))
    old: Mapped[str | None] = mapped_column(Text)
    new: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("role IN ('viewer', 'operator', 'admin')", name="role"),
        # verify(token) looks the key up by its prefix, then compares hashes in constant time.
        Index(None, "prefix"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64))  # sha256 hex of the whole token
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


# Listing jobs shows top-level jobs only (parent_id IS NULL). A bulk job over 10,000 devices
# has 10,000 children created in the same instant, so a plain created_at index would make
# "newest 50 jobs" step over them; partial indexes hold only the rows the listing can return.
_TOP_LEVEL = text("parent_id IS NULL")


class JobRow(Base):
    """A job as submitted (parent_id NULL), or one device's part of it (a child)."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint("kind IN ('command', 'config', 'facts')", name="kind"),
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out')",
            name="status"),
        # GET /jobs, newest first.
        Index("ix_jobs_top_created_at", "created_at",
              postgresql_where=_TOP_LEVEL, sqlite_where=_TOP_LEVEL),
        # GET /jobs?status=running, newest first.
        Index("ix_jobs_top_status_created_at", "status", "created_at",
              postgresql_where=_TOP_LEVEL, sqlite_where=_TOP_LEVEL),
        # A job's children: GET /jobs/{id}, cancel, and the cascade when a job is deleted.
        Index(None, "parent_id"),
        # SET NULL on device delete would otherwise scan every job.
        Index(None, "device_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # uuid4, made by the client
    kind: Mapped[str] = mapped_column(String(16))
    # Children keep {} and run their parent's spec.
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    selector: Mapped[dict[str, Any] | None] = mapped_column(JSONOrNull)
    status: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    requested_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Counters kept up to date as children finish, so progress and completion are one row
    # read (and one atomic UPDATE) rather than a count over thousands of children.
    total: Mapped[int] = mapped_column(Integer, default=0)
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)


class JobResultRow(Base):
    """The outcome on one device: one row per child job, updated in place across attempts."""

    __tablename__ = "job_results"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out')",
            name="status"),
        # "What ran on this device?": filter job listings by device name. By name, not id,
        # so a device's history outlives the device.
        Index(None, "device_name"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Unique: a result belongs to exactly one child job, and this is how results of a job are
    # found (jobs.parent_id -> children -> results).
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    device_name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    diff: Mapped[str | None] = mapped_column(Text)  # a config dry run: running vs. wanted
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    session_reused: Mapped[bool] = mapped_column(Boolean, default=False)
    attempt: Mapped[int] = mapped_column(Integer, default=0)


# -- telemetry ---------------------------------------------------------------------------------
# Samples are the one table that grows without bound (thousands of devices × tens of series ×
# one row per poll), so they are kept narrow: a series id, an integer time and a float. What a
# series is (device, metric, labels) is said once, in telemetry_series.


class TelemetryProfileRow(Base):
    """A polling profile (the declarative YAML, as JSON) and the devices it applies to."""

    __tablename__ = "telemetry_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    body: Mapped[dict[str, Any]] = mapped_column()  # domain.telemetry.Profile, validated
    where: Mapped[list[str]] = mapped_column(default=list)  # selector terms; [] = no device
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TelemetrySeriesRow(Base):
    """One time series: a device, a metric and a label set ('' for a device-level metric,
    else `name=value` pairs sorted by name and joined by ','). Unique on the three: the writer
    finds or creates a series id by them, and "this device's metrics" is a prefix of it."""

    __tablename__ = "telemetry_series"
    __table_args__ = (
        Index("uq_telemetry_series_device_metric_labels", "device_id", "metric", "labels",
              unique=True),
        # "Every device's latency" (bottlenecks, Prometheus): device-level series of a metric.
        Index(None, "metric", "labels"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(64))
    labels: Mapped[str] = mapped_column(String(512), default="")
    unit: Mapped[str] = mapped_column(String(16), default="")


class TelemetrySampleRow(Base):
    """A raw sample. The primary key (series, time) is the index both queries use: one
    series over a range is one range scan of it, and "every series in a window" is a range
    scan per series picked by telemetry_series. Time is integer epoch milliseconds: half the
    size of a timestamp on SQLite (which stores text) and cheap to bucket for downsampling.
    The index on ts alone serves retention (delete everything older than N days)."""

    __tablename__ = "telemetry_samples"
    # WITHOUT ROWID on SQLite: the table is stored in primary-key order (no separate rowid
    # b-tree), so a series' range is contiguous on disk and each row is smaller.
    __table_args__ = (Index(None, "ts"), {"sqlite_with_rowid": False})

    series_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("telemetry_series.id", ondelete="CASCADE"), primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class TelemetryRollupRow(Base):
    """One-minute rollups (min, avg, max, count) of raw samples, kept longer than the raw."""

    __tablename__ = "telemetry_rollups_1m"
    __table_args__ = (Index(None, "ts"), {"sqlite_with_rowid": False})

    series_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("telemetry_series.id", ondelete="CASCADE"), primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # the minute's start, ms
    min: Mapped[float] = mapped_column(Float)
    avg: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)


_NODE_STATES = "'pending', 'provisioning', 'configuring', 'running', 'failed'"


class DeploymentRow(Base):
    """A deployment: what to bring up (N nodes from a provider), the config every node gets
    (a Jinja2 template and its vars) and the generation of that config. `deleting`: a DELETE
    was accepted and its planner is deprovisioning the nodes; the row goes when they are gone."""

    __tablename__ = "deployments"
    __table_args__ = (
        CheckConstraint("target_node_count BETWEEN 0 AND 10000", name="target_node_count"),
        CheckConstraint("target_generation >= 1", name="target_generation"),
        # GET /deployments pages in creation order.
        Index(None, "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # uuid4
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(String(64))  # built in, or a plugin's name
    config_template: Mapped[str | None] = mapped_column(Text)
    vars: Mapped[dict[str, Any]] = mapped_column(default=dict)
    telemetry_profile: Mapped[str | None] = mapped_column(String(64))
    # Provider options (inventory: the selector of the devices to adopt; simulator: platform).
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    target_node_count: Mapped[int] = mapped_column(Integer)
    target_generation: Mapped[int] = mapped_column(Integer, default=1)
    remediate: Mapped[bool] = mapped_column(Boolean, default=False)
    deleting: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DeploymentNodeRow(Base):
    """One node of a deployment: where it is in its lifecycle, the device it became, and the
    config generation it should run (target) and last applied (observed)."""

    __tablename__ = "deployment_nodes"
    __table_args__ = (
        CheckConstraint(f"state IN ({_NODE_STATES})", name="state"),
        # A deployment's nodes in order (GET …/nodes, the planner), and the cascade on delete.
        Index(None, "deployment_id", "ordinal", unique=True),
        # Counts per state for GET /deployments/{id}.
        Index(None, "deployment_id", "state"),
        Index(None, "device_id"),  # SET NULL when the device is deleted
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # uuid4
    deployment_id: Mapped[str] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)  # 0.. in creation order; names the node
    state: Mapped[str] = mapped_column(String(16), default="pending")
    hostname: Mapped[str | None] = mapped_column(String(255))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    target_generation: Mapped[int] = mapped_column(Integer, default=1)
    observed_generation: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # of the current step
    reason: Mapped[str | None] = mapped_column(Text)  # why it failed, or the last retry's cause
    drift: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_transition_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeploymentEventRow(Base):
    """The audit log: every deployment create/update/delete and every node transition. No
    foreign key on purpose: a deleted deployment's events (its deletion among them) stay."""

    __tablename__ = "deployment_events"
    __table_args__ = (
        # GET /deployments/{id}/events, in order; the id orders events of the same instant.
        Index(None, "deployment_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    deployment_id: Mapped[str] = mapped_column(String(36))
    node_id: Mapped[str | None] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(default=utcnow)
