"""The store: netfleet's source of truth (inventory, credentials, API keys, jobs) in SQLite or
PostgreSQL, behind repositories that return plain records.

    store = Store.from_settings(settings)
    await migrate(settings.database_url)
    async with store.transaction() as tx:
        device = await tx.devices.get("ios-00001")
"""

from __future__ import annotations

from netfleet.store.db import Store, Tx, alembic_config, create_engine, migrate
from netfleet.store.secrets import SecretBox, SecretKeyError, open_box

__all__ = ["SecretBox", "SecretKeyError", "Store", "Tx", "alembic_config", "create_engine",
           "migrate", "open_box"]
