"""Settings: NETFLEET_* variables, URLs normalised to the async drivers, errors that say how."""

from __future__ import annotations

import os

import pytest

from netfleet.domain.errors import InvalidInput
from netfleet.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see the defaults, whatever NETFLEET_* the developer's shell sets."""
    for name in list(os.environ):
        if name.startswith("NETFLEET_"):
            monkeypatch.delenv(name)


def test_defaults_run_embedded_on_sqlite() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite+aiosqlite:///./netfleet.db"
    assert (settings.redis_url, settings.partitions, settings.host, settings.port) == (
        None, 64, "127.0.0.1", 8000)
    assert settings.embedded == "memory"  # without Redis, the cluster's path in one process


@pytest.mark.parametrize("given, used", [
    ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
    ("sqlite:////var/lib/netfleet.db", "sqlite+aiosqlite:////var/lib/netfleet.db"),
    ("postgresql://nf:pw@db:5432/netfleet", "postgresql+asyncpg://nf:pw@db:5432/netfleet"),
    ("postgres://nf@db/netfleet", "postgresql+asyncpg://nf@db/netfleet"),
    ("postgresql+psycopg2://nf@db/netfleet", "postgresql+asyncpg://nf@db/netfleet"),
])
def test_database_urls_are_normalised_to_the_async_drivers(
        monkeypatch: pytest.MonkeyPatch, given: str, used: str) -> None:
    monkeypatch.setenv("NETFLEET_DATABASE_URL", given)
    assert load_settings().database_url == used


def test_the_database_password_stays_out_of_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETFLEET_DATABASE_URL", "postgresql://nf:hunter2@db/netfleet")
    assert "hunter2" not in repr(load_settings())


@pytest.mark.parametrize("variable, value, says, fix", [
    ("NETFLEET_DATABASE_URL", "mysql://db/x", "'mysql' is not supported", "postgresql://"),
    ("NETFLEET_DATABASE_URL", "sqlite://", "in-memory", "sqlite:///./netfleet.db"),
    ("NETFLEET_DATABASE_URL", "netfleet.db", "not a database URL", "sqlite:///"),
    ("NETFLEET_SECRET_KEY", "short", "not a Fernet key", "Fernet.generate_key()"),
    ("NETFLEET_PARTITIONS", "many", "valid integer", "whole number"),
    ("NETFLEET_PARTITIONS", "0", "out of range", "1 to 4096"),
    ("NETFLEET_PORT", "70000", "not a TCP port", "1 to 65535"),
    ("NETFLEET_REDIS_URL", "localhost:6379", "not a Redis URL", "redis://"),
])
def test_bad_values_name_the_variable_and_the_fix(monkeypatch: pytest.MonkeyPatch,
                                                  variable: str, value: str, says: str,
                                                  fix: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidInput) as caught:
        load_settings()
    assert caught.value.field == variable
    assert caught.value.message.startswith(f"{variable}: ")
    assert says in caught.value.message
    assert fix in caught.value.fix


def test_other_netfleet_variables_are_left_to_their_owners(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETFLEET_API_KEY", "nf_something")  # the CLI's, not the server's
    monkeypatch.setenv("NETFLEET_REDIS_URL", "")  # empty means unset
    assert load_settings().redis_url is None
