"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Integer, MetaData, inspect, text

from netfleet.store import alembic_config, create_engine, migrate
from netfleet.store.db import MIGRATIONS
from netfleet.store.models import Base


async def _diff(url: str, metadata: MetaData) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            def compare(sync: Connection) -> list[Any]:
                context = MigrationContext.configure(sync, opts={"compare_type": True})
                return list(compare_metadata(context, metadata))

            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


async def test_migrated_schema_matches_the_models(db_url: str) -> None:
    assert await _diff(db_url, Base.metadata) == []


async def test_the_comparison_would_notice_a_model_change(db_url: str) -> None:
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["devices"].append_column(Column("rack", Integer))
    diff = await _diff(db_url, changed)
    assert [(d[0], d[3].name) for d in diff] == [("add_column", "rack")]


async def test_migrate_is_safe_to_run_at_every_start(db_url: str) -> None:
    await migrate(db_url)
    await migrate(db_url)
    assert await _diff(db_url, Base.metadata) == []


async def test_a_fresh_sqlite_file_gets_every_table(fresh_sqlite_url: str) -> None:
    await migrate(fresh_sqlite_url)
    engine = create_engine(fresh_sqlite_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            version = (await connection.execute(text("SELECT version_num FROM alembic_version"))
                       ).scalar_one()
    finally:
        await engine.dispose()
    assert tables == {*Base.metadata.tables, "alembic_version"}
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head() \
        == f"{len(list(MIGRATIONS.glob('versions/0*.py'))):04d}"  # every migration applied


@pytest.mark.parametrize("pragma, expected", [("journal_mode", "wal"), ("foreign_keys", 1)])
async def test_sqlite_connections_use_wal_and_enforce_foreign_keys(
        sqlite_url: str, pragma: str, expected: object) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with engine.connect() as connection:
            value = (await connection.exec_driver_sql(f"PRAGMA {pragma}")).scalar_one()
    finally:
        await engine.dispose()
    assert value == expected



def test_alembic_commands_work_standalone_both_ways(fresh_sqlite_url: str) -> None:
    """What a developer runs to write the next migration: env.py connects by itself."""
    config = alembic_config(fresh_sqlite_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    assert asyncio.run(_diff(fresh_sqlite_url, Base.metadata)) == []
