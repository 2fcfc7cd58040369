"""netfleet's configuration: one `Settings`, read from `NETFLEET_*` environment variables.

Use `load_settings()`: a bad value becomes an `InvalidInput` that names the variable and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from netfleet.domain.errors import InvalidInput

ENV_PREFIX = "NETFLEET_"
MAX_PARTITIONS = 4096

# The fix shown when pydantic itself rejects a value (wrong type), before our validators run.
_FIXES = {
    "database_url": "use sqlite:///./netfleet.db or postgresql://user:password@host:5432/netfleet",
    "secret_key": "generate one with: python -c 'from cryptography.fernet import Fernet; "
                  "print(Fernet.generate_key().decode())'",
    "secret_key_file": "give a file path, e.g. ./.netfleet/secret.key",
    "redis_url": "use redis://host:6379/0, or unset it for the in-process backend",
    "partitions": f"use a whole number from 1 to {MAX_PARTITIONS}, e.g. 64",
    "host": "use an address to listen on, e.g. 127.0.0.1 or 0.0.0.0",
    "port": "use a TCP port from 1 to 65535, e.g. 8000",
}


class _BadValue(ValueError):
    """Raised by validators: the message says what is wrong, `fix` what to do."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True,
                                      extra="ignore")

    # URLs may carry a password: keep them out of repr() and so out of logs.
    database_url: str = Field("sqlite+aiosqlite:///./netfleet.db", repr=False)
    secret_key: SecretStr | None = None
    secret_key_file: Path = Path("./.netfleet/secret.key")
    redis_url: str | None = Field(None, repr=False)
    # Without Redis: `memory` runs work as a cluster does (memory backend, an agent and a
    # recorder in this process); `direct` hands it to the engine straight away (opt-out).
    embedded: Literal["memory", "direct"] = "memory"
    # Engine limits (see docs/jobs.md).
    max_concurrency: int = Field(512, ge=1, le=100_000)
    sessions_per_device: int = Field(2, ge=1, le=16)
    device_queue: int = Field(1000, ge=1, le=1_000_000)
    max_pending: int = Field(100_000, ge=1, le=10_000_000)
    idle_session_timeout: float = Field(300.0, gt=0, le=86_400)
    # Signs webhook deliveries (HMAC-SHA256); unset: derived from the secret key.
    webhook_secret: SecretStr | None = None
    # Telemetry: retention, and bottleneck alerts (a webhook when one appears or clears).
    retention_days: float = Field(7.0, gt=0)
    rollup_retention_days: float = Field(90.0, gt=0)
    alert_webhook: str | None = None
    alert_window: float = Field(600.0, ge=10, description="seconds")
    alert_interval: float = Field(60.0, ge=1, description="seconds")
    alert_method: Literal["robust", "zscore"] = "robust"
    alert_threshold: float = Field(2.0, gt=0)
    # Deployments (see docs/deployments.md).
    simulator_url: str | None = Field(None, description="control API of `netfleet sim`")
    deploy_workers: int = Field(200, ge=1, le=10_000, description="nodes in flight per deployment")
    deploy_attempts: int = Field(3, ge=1, le=20, description="tries of a step before failed")
    deploy_stuck_after: float = Field(300.0, gt=0, description="seconds without progress")
    drift_interval: float = Field(300.0, gt=0, description="seconds between drift checks")
    partitions: int = 64  # fixed by the first process of a cluster; later ones adopt it
    lease_ttl: float = Field(10.0, ge=1, le=600, description="seconds a partition lease lasts")
    host: str = "127.0.0.1"
    port: int = 8000

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        try:
            return normalise_database_url(value)
        except InvalidInput as exc:
            raise _BadValue(exc.message, exc.fix) from None

    @field_validator("secret_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                Fernet(value.get_secret_value().encode())
            except ValueError:
                raise _BadValue("is not a Fernet key (32 url-safe base64-encoded bytes)",
                                _FIXES["secret_key"]) from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise _BadValue(f"{value!r} is not a Redis URL", _FIXES["redis_url"])
        return value

    @field_validator("partitions")
    @classmethod
    def _partitions(cls, value: int) -> int:
        if not 1 <= value <= MAX_PARTITIONS:
            raise _BadValue(f"{value} is out of range", _FIXES["partitions"])
        return value

    @field_validator("port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise _BadValue(f"{value} is not a TCP port", _FIXES["port"])
        return value


def normalise_database_url(value: str) -> str:
    """`sqlite:///x.db` -> `sqlite+aiosqlite:///x.db`; `postgresql://…` -> `postgresql+asyncpg://…`.

    Only the async drivers netfleet ships with are used, whatever driver the URL names.
    Raises InvalidInput naming NETFLEET_DATABASE_URL.
    """
    def bad(message: str, fix: str = _FIXES["database_url"]) -> InvalidInput:
        return InvalidInput(message, field=f"{ENV_PREFIX}DATABASE_URL", fix=fix)

    try:
        url = make_url(value)
    except ArgumentError:
        raise bad(f"{value!r} is not a database URL") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database in (None, "", ":memory:"):
            raise bad("an in-memory SQLite database is not supported (every connection would "
                      "see its own empty database)", "name a file, e.g. sqlite:///./netfleet.db")
        url = url.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+asyncpg")
    else:
        raise bad(f"database {backend!r} is not supported")
    return url.render_as_string(hide_password=False)


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (plus `overrides`); a bad value raises InvalidInput naming it."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else ""
        variable = f"{ENV_PREFIX}{name.upper()}"
        cause = error.get("ctx", {}).get("error")
        fix = cause.fix if isinstance(cause, _BadValue) else _FIXES.get(name, "")
        reason = str(cause) if isinstance(cause, _BadValue) else error["msg"]
        raise InvalidInput(f"{variable}: {reason}; {fix}", field=variable, fix=fix) from None
