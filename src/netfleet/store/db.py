"""Connecting to the database: engines (SQLite tuned on connect), migrations, and `Store`, which
hands out transactions with every repository bound to them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from netfleet.settings import Settings, normalise_database_url
from netfleet.store.api_keys import ApiKeyRepo
from netfleet.store.credentials import CredentialRepo
from netfleet.store.deployments import DeploymentRepo
from netfleet.store.devices import DeviceRepo
from netfleet.store.jobs import JobRepo
from netfleet.store.secrets import SecretBox, open_box
from netfleet.store.telemetry import TelemetryRepo

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every controller that may start at once.
_MIGRATION_LOCK = 0x6E66_6D69  # "nfmi"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for `url` (normalised to aiosqlite/asyncpg). SQLite gets WAL, foreign
    keys and a busy timeout on every connection, and real transactions (see _sqlite_begin)."""
    # Statement parameters (ciphertexts, key hashes) stay out of error messages and logs.
    kwargs.setdefault("hide_parameters", True)
    url = normalise_database_url(url)
    if url.startswith("postgresql"):
        kwargs.setdefault("pool_pre_ping", True)  # survive a database restart
    engine = _create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # sqlite3's legacy mode does not BEGIN before SELECT or DDL, so reads are not repeatable
    # and a failed migration would leave half a schema; _sqlite_begin starts every transaction.
    dbapi_connection.isolation_level = None  # autocommit at the driver: we say BEGIN ourselves
    cursor = dbapi_connection.cursor()
    # WAL: readers do not block the writer, nor the writer the readers.
    cursor.execute("PRAGMA journal_mode=WAL")
    # Off by default in SQLite; our ON DELETE CASCADE / RESTRICT rely on it.
    cursor.execute("PRAGMA foreign_keys=ON")
    # Wait for the write lock instead of failing at once with "database is locked".
    cursor.execute("PRAGMA busy_timeout=5000")
    # With WAL, NORMAL cannot corrupt the database; a power cut may lose the last commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# Execution option naming how SQLite transactions begin: IMMEDIATE unless asked otherwise.
SQLITE_BEGIN = "netfleet_sqlite_begin"


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front (waiting up to busy_timeout). A DEFERRED
    # transaction that reads and then writes fails at once with "database is locked" if
    # another writer committed in between, and busy_timeout cannot help it. Read-only
    # transactions ask for DEFERRED and then never wait for writers (WAL).
    mode = connection.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
    connection.exec_driver_sql(f"BEGIN {mode}")


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration without an alembic.ini (the migrations ship inside the wheel).

    For a new revision: `command.revision(alembic_config(url), "message", autogenerate=True)`.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.attributes["url"] = url
    return config


async def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (alembic upgrade), in one transaction.

    Safe to call at every start, and from several controllers at once on PostgreSQL: an
    advisory lock makes the others wait, then find nothing left to do.
    """
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                         {"key": _MIGRATION_LOCK})
            await connection.run_sync(_upgrade, revision)
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def is_deadlock(exc: BaseException) -> bool:
    """PostgreSQL aborted this transaction to break a deadlock (SQLSTATE 40P01): run it
    again."""
    orig = getattr(exc, "orig", None)
    return isinstance(exc, DBAPIError) and (
        getattr(orig, "sqlstate", None) == "40P01" or "deadlock detected" in str(orig))


@dataclass(frozen=True, slots=True)
class Tx:
    """One transaction and the repositories working inside it."""

    session: AsyncSession
    devices: DeviceRepo
    credentials: CredentialRepo
    api_keys: ApiKeyRepo
    jobs: JobRepo
    telemetry: TelemetryRepo
    deployments: DeploymentRepo


class Store:
    """The database: an engine, a session factory and the secret box."""

    def __init__(self, engine: AsyncEngine, box: SecretBox) -> None:
        self.engine = engine
        self.box = box
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(
            engine.execution_options(**{SQLITE_BEGIN: "DEFERRED"}), expire_on_commit=False)
        # SQLite has one writer at a time. Writers of this process queue here, and the next
        # starts the moment the last commits; left to SQLite's busy handler, a waiting writer
        # sleeps 1, 2, 5, 10 ms ... between tries, which more than doubled a job's latency.
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(create_engine(settings.database_url), open_box(settings))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self, *, readonly: bool = False) -> AsyncIterator[Tx]:
        """Commit when the block ends, roll back if it raises.

        `readonly=True` for transactions that only read (API GETs): on SQLite they then run
        beside a writer instead of queueing for the write lock.
        """
        if readonly or self._write_lock is None:
            async with self._session(readonly) as tx:
                yield tx
            return
        async with self._write_lock, self._session(readonly) as tx:
            yield tx

    @asynccontextmanager
    async def _session(self, readonly: bool) -> AsyncIterator[Tx]:
        sessions = self._read_sessions if readonly else self._sessions
        async with sessions.begin() as session:
            yield Tx(
                session=session,
                devices=DeviceRepo(session, self.box, self.dialect),
                credentials=CredentialRepo(session, self.box),
                api_keys=ApiKeyRepo(session),
                jobs=JobRepo(session, self.dialect),
                telemetry=TelemetryRepo(session, self.dialect),
                deployments=DeploymentRepo(session, self.dialect),
            )

    async def analyze(self) -> None:
        """Refresh PostgreSQL's planner statistics after a bulk load. Autovacuum gets there
        within a minute or so; until then the planner takes the tables for nearly empty and
        lookups by thousands of names run several times slower."""
        if self.dialect == "postgresql":
            async with self.engine.begin() as connection:
                await connection.exec_driver_sql("ANALYZE devices, credential_profiles")

    async def ping(self) -> None:
        """Raise if the database cannot answer `SELECT 1`."""
        async with self.engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")

    async def close(self) -> None:
        await self.engine.dispose()
