"""Store fixtures: every test that takes `store` runs on SQLite and on the real PostgreSQL.

Each backend's database is created and migrated once per session; each test starts empty.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import delete

from netfleet.store import SecretBox, Store, create_engine
from netfleet.store.models import Base


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
