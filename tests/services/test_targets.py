"""Connection targets for the engine: polls of a large fleet must not wait on the database.
Many devices resolved at once share one query; an aged target is used while it is re-read
behind the caller's back (a stampede of refreshes once held polls up for seconds)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from netfleet.bootstrap import Services, build_services
from netfleet.services import jobs as jobs_module
from netfleet.settings import load_settings
from netfleet.store.records import CredentialSpec, CredentialUpdate, DeviceSpec

DEVICES = [f"t-{i:03d}" for i in range(300)]


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'targets.db'}",
                             secret_key_file=tmp_path / "secret.key")
    services = await build_services(settings)
    async with services.store.transaction() as tx:
        await tx.credentials.create(CredentialSpec("lab", "admin", password="old-pw"))
        await tx.devices.upsert_many([DeviceSpec(n, "192.0.2.1", "cisco_ios",
                                                 credentials="lab") for n in DEVICES])
    try:
        yield services
    finally:
        await services.close()


async def test_a_fleet_resolved_at_once_costs_one_query(services: Services) -> None:
    reads: list[int] = []
    jobs = services.jobs
    original = jobs._cache_targets

    async def counted(names: Sequence[str], tx: Any = None, *, force: bool = False) -> None:
        reads.append(len(names))
        await original(names, tx, force=force)

    jobs._cache_targets = counted  # type: ignore[method-assign]
    targets = await asyncio.gather(*(jobs.resolve(n) for n in DEVICES))
    assert [t.name for t in targets] == DEVICES
    assert {t.password for t in targets} == {"old-pw"}
    assert reads == [len(DEVICES)]


async def test_an_aged_target_is_used_at_once_and_re_read_behind_the_caller(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = services.jobs
    await asyncio.gather(*(jobs.resolve(n) for n in DEVICES))
    # Changed behind netfleet's back (another controller, a script on the database): only the
    # age of the cached target bounds how long the old password is used.
    async with services.store.transaction() as tx:
        await tx.credentials.update("lab", CredentialUpdate(password="new-pw"))
    monkeypatch.setattr(jobs_module, "TARGET_TTL", 0.0)

    first = await jobs.resolve(DEVICES[0])
    assert first.password == "old-pw"  # no wait on the database for a target it has

    async def refreshed() -> None:
        while (await jobs.resolve(DEVICES[0])).password != "new-pw":  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.wait_for(refreshed(), 10)
    # The one refresh re-read the others that had aged too.
    assert all(jobs._targets[n][1].password == "new-pw"  # type: ignore[union-attr]
               for n in DEVICES)
