"""Store fixtures: every test that takes `store` runs on SQLite and on the real PostgreSQL.

Each backend's database is created and migrated once per session; each test starts empty.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete

from netfleet.store import SecretBox, Store, create_engine, migrate
from netfleet.store.models import Base

# A role allowed to CREATE DATABASE, and a database to connect to while doing it.
PG_ADMIN = os.environ.get("NETFLEET_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")


async def _admin(sql: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction.
    engine = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.exec_driver_sql(sql)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    name = f"netfleet_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    try:
        asyncio.run(migrate(url))
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'netfleet.db'}"
    asyncio.run(migrate(url))
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The URL of a migrated database, once per backend."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def box() -> SecretBox:
    return SecretBox.generate()


@pytest.fixture
async def store(db_url: str, box: SecretBox) -> AsyncIterator[Store]:
    store = Store(create_engine(db_url), box)
    async with store.transaction() as tx:
        for table in reversed(Base.metadata.sorted_tables):
            await tx.session.execute(delete(table))
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def fresh_sqlite_url(tmp_path: Path) -> str:
    """An SQLite file nobody has migrated yet."""
    return f"sqlite:///{tmp_path / 'fresh.db'}"
