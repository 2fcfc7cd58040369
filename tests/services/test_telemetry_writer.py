"""The telemetry writer and what it knows now: a deleted device, a database that goes away and
comes back (bounded buffer, oldest dropped, retried), and staleness in `latest`."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable

import pytest

from netfleet.domain.errors import NotFound
from netfleet.domain.selectors import Selector
from netfleet.domain.telemetry import Sample
from netfleet.engine.engine import PollOutcome
from netfleet.services.telemetry import TelemetryService
from netfleet.store import Store, create_engine, migrate
from netfleet.store.records import CredentialSpec, DeviceSpec
from netfleet.store.secrets import SecretBox
from tests.conftest import PG_ADMIN, _admin

PROFILE = "cisco_ios-cpu"  # built in; polls every 60 s


async def test_samples_of_a_deleted_device_do_not_block_the_others(postgresql_url: str) -> None:
    store = Store(create_engine(postgresql_url), SecretBox.generate())
    try:
        async with store.transaction() as tx:
            await tx.devices.upsert_many([DeviceSpec("w-a", "192.0.2.1", "cisco_ios"),
                                          DeviceSpec("w-b", "192.0.2.2", "cisco_ios")])
        writer = TelemetryService(store)
        now = time.time()
        assert await writer._write([Sample("w-a", "cpu_percent", 1.0, now),
                                    Sample("w-b", "cpu_percent", 2.0, now)]) == 2
        async with store.transaction() as tx:
            await tx.devices.delete("w-a")  # its series go with it; the writer's ids are stale
        assert await writer._write([Sample("w-a", "cpu_percent", 3.0, now + 1),
                                    Sample("w-b", "cpu_percent", 4.0, now + 1)]) == 1
        async with store.transaction(readonly=True) as tx:
            points = await tx.telemetry.query(selector=None, metric="cpu_percent",
                                              start_ms=int(now * 1000),
                                              end_ms=int(now * 1000) + 5000)
        assert sorted((p.device, p.value) for p in points) == [("w-b", 2.0), ("w-b", 4.0)]
    finally:
        async with store.transaction() as tx:
            for name in ("w-a", "w-b"):
                with contextlib.suppress(NotFound):
                    await tx.devices.delete(name)
        await store.close()


class Database:
    """A PostgreSQL database of our own, which the test can take offline and bring back."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"

    async def down(self) -> None:
        """New connections are refused and the open ones are cut, as in a database restart."""
        await _admin(f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS false')
        await _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     f"WHERE datname = '{self.name}'")

    async def up(self) -> None:
        await _admin(f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS true')


@pytest.fixture
async def database() -> AsyncIterator[Database]:
    db = Database(f"netfleet_test_{secrets.token_hex(6)}")
    await _admin(f'CREATE DATABASE "{db.name}"')
    try:
        await migrate(db.url)
        yield db
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')


@pytest.fixture
async def store(database: Database) -> AsyncIterator[Store]:
    store = Store(create_engine(database.url), SecretBox.generate())
    try:
        yield store
    finally:
        await store.close()


async def polled_device(store: Store, name: str) -> None:
    """A device with credentials, for the built-in CPU profile to be assigned to."""
    async with store.transaction() as tx:
        await tx.credentials.create(CredentialSpec("lab", "admin", password="lab-pw"))
        await tx.devices.upsert_many([DeviceSpec(name, "192.0.2.1", "cisco_ios",
                                                 credentials="lab")])


def cpu(device: str, value: float, ts: float) -> PollOutcome:
    return PollOutcome(device, PROFILE, [Sample(device, "cpu_percent", value, ts, (), "%")])


async def until(condition: Callable[[], bool], timeout: float = 20) -> None:
    """For the writer's counters, which no event announces."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_database_outage_keeps_the_newest_samples_and_writes_them_when_it_is_back(
        database: Database, store: Store) -> None:
    await polled_device(store, "bp-1")
    service = TelemetryService(store)
    service.MAX_BUFFER = 50
    await service.start()
    try:
        await service.assign(PROFILE, where=["name=bp-1"])
        await database.down()
        t0 = time.time() - 300
        for i in range(120):  # two minutes of polls while nothing can be written
            service.on_poll(cpu("bp-1", float(i), t0 + i))
        assert service.buffered == 50
        assert service.stats.dropped == 70
        assert service.pressure() == 1.0  # what slows the engine's polls down

        # The writer keeps trying (with backoff) and loses nothing it kept.
        await until(lambda: service.stats.failures >= 2)
        assert service.buffered == 50
        assert service.stats.written == 0

        await database.up()
        await until(lambda: service.stats.written == 50)
        assert service.buffered == 0
        assert service.stats.dropped == 70
        assert service.pressure() == 0.0
    finally:
        await service.close()
    async with store.transaction(readonly=True) as tx:
        points = await tx.telemetry.query(selector=None, metric="cpu_percent",
                                          start_ms=int(t0 * 1000),
                                          end_ms=int((t0 + 200) * 1000), limit=1000)
    assert sorted(p.value for p in points) == [float(i) for i in range(70, 120)]


async def test_a_sample_the_database_refuses_is_set_aside_and_the_rest_are_written(
        store: Store) -> None:
    await polled_device(store, "bad-1")
    service = TelemetryService(store)
    t0 = time.time() - 60
    good = [Sample("bad-1", "cpu_percent", float(i), t0 + i, (), "%") for i in range(40)]
    # PostgreSQL stores no NUL in text: a label parsed from garbled CLI output can hold one.
    bad = Sample("bad-1", "if_in_bps", 1.0, t0, (("interface", "Gi1/0/1\x00"),), "bit/s")
    service.on_poll(PollOutcome("bad-1", PROFILE, [*good[:20], bad, *good[20:]]))
    assert await service.flush() == 40
    assert service.buffered == 0  # nothing left behind to block the next batches
    assert service.stats.rejected == 1
    service.on_poll(cpu("bad-1", 99.0, t0 + 50.5))
    assert await service.flush() == 1
    async with store.transaction(readonly=True) as tx:
        points = await tx.telemetry.query(selector=None, metric=None, start_ms=int(t0 * 1000),
                                          end_ms=int((t0 + 60) * 1000), limit=1000)
    assert sorted(p.value for p in points) == [*(float(i) for i in range(40)), 99.0]


async def test_latest_marks_a_device_stale_after_a_failed_poll_or_none_for_long(
        store: Store) -> None:
    await polled_device(store, "st-1")
    service = TelemetryService(store)
    await service.ensure_builtin()
    await service.assign(PROFILE, where=["name=st-1"])  # interval 60 s

    async def latest(now: float | None = None) -> tuple[float, bool, str | None]:
        [one] = await service.latest(where=["name=st-1"], now=now)
        return one.value, one.stale, one.reason

    service.on_poll(cpu("st-1", 12.0, time.time()))
    assert await latest() == (12.0, False, None)
    service.on_poll(PollOutcome("st-1", PROFILE, [], "auth", "st-1 refused the credentials"))
    # The last value is still shown, marked stale with the reason.
    assert await latest() == (12.0, True, "auth: st-1 refused the credentials")
    service.on_poll(cpu("st-1", 15.0, time.time()))
    assert await latest() == (15.0, False, None)

    assert await latest(now=time.time() + 120) == (15.0, False, None)  # within 2.5 intervals
    assert await latest(now=time.time() + 200) == (15.0, True, "no poll for 200s")


async def test_samples_of_a_device_assigned_since_the_last_apply_are_stored(
        store: Store) -> None:
    """In a cluster another controller assigns the profile; agents poll at once, and this
    controller's recorder gets the samples before its own `apply` has seen the device."""
    await polled_device(store, "new-1")
    service = TelemetryService(store)
    await service.ensure_builtin()
    assert await service.apply() == 0  # nothing assigned yet: the service knows no device
    await TelemetryService(store).assign(PROFILE, where=["name=new-1"])  # another controller
    t0 = time.time()
    service.on_poll(cpu("new-1", 42.0, t0))
    assert await service.flush() == 1
    async with store.transaction(readonly=True) as tx:
        points = await tx.telemetry.query(selector=None, metric="cpu_percent",
                                          start_ms=int(t0 * 1000) - 1,
                                          end_ms=int(t0 * 1000) + 1000)
    assert [(p.device, p.value) for p in points] == [("new-1", 42.0)]


async def test_maintenance_rolls_up_whole_minutes_and_drops_what_is_past_retention(
        sqlite_url: str) -> None:
    store = Store(create_engine(sqlite_url), SecretBox.generate())
    try:
        async with store.transaction() as tx:
            await tx.devices.upsert_many([DeviceSpec("m-a", "192.0.2.1", "cisco_ios")])
        service = TelemetryService(store, retention_days=1, rollup_retention_days=2)
        now = 1_800_000_000.0 - 1_800_000_000.0 % 60  # on a minute boundary
        old = now - 1.5 * 86400  # past raw retention, within rollup retention
        samples = [Sample("m-a", "cpu_percent", float(v), old + 10 * v) for v in range(6)]
        samples += [Sample("m-a", "cpu_percent", 50.0 + v, now - 120 + 10 * v)
                    for v in range(6)]
        assert await service._write(samples) == 12
        done = await service.maintain(now_ms=int(now * 1000))
        assert done["dropped"] >= 6  # ours: 6 raw samples a day and a half old (+ others')
        async with store.transaction(readonly=True) as tx:
            mine = Selector.parse(["name=m-a"])  # the database is shared with other tests
            raw = await tx.telemetry.query(selector=mine, metric="cpu_percent", start_ms=0,
                                           end_ms=int(now * 1000) + 1)
            rolled = await tx.telemetry.rollups("cpu_percent", 0, int(now * 1000) + 1,
                                                selector=mine)
        assert sorted(p.value for p in raw) == [50.0 + v for v in range(6)]
        # The last five minutes are rolled up: the recent minute, average of 50..55.
        assert [(p.ts, p.value, p.min, p.max, p.count) for p in rolled] == [
            (int((now - 120) * 1000), 52.5, 50.0, 55.0, 6)]
    finally:
        async with store.transaction() as tx:
            with contextlib.suppress(NotFound):
                await tx.devices.delete("m-a")
        await store.close()


async def test_controllers_starting_together_on_a_new_database_both_store_the_builtins() -> None:
    name = f"netfleet_test_race_{secrets.token_hex(4)}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    stores = []
    try:
        await migrate(url)
        stores = [Store(create_engine(url), SecretBox.generate()) for _ in range(4)]
        await asyncio.gather(*(TelemetryService(s).ensure_builtin() for s in stores))
        async with stores[0].transaction(readonly=True) as tx:
            names = sorted(p.name for p in await tx.telemetry.profiles())
        assert PROFILE in names and len(names) == len(set(names))
    finally:
        for store in stores:
            await store.close()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
