"""The store fixtures of tests/store, so aggregate tests run on SQLite and PostgreSQL too."""

from __future__ import annotations

from tests.store.conftest import box, db_url, store

__all__ = ["box", "db_url", "store"]
