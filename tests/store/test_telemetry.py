"""Telemetry storage on both databases: series, samples, downsampling, rollups, retention."""

from __future__ import annotations

import pytest

from netfleet.domain.errors import Conflict, InvalidInput, NotFound
from netfleet.domain.selectors import Selector
from netfleet.store import Store
from netfleet.store.records import DeviceSpec
from netfleet.store.telemetry import SeriesKey, labels_key

T0 = 29_833_333 * 60_000  # epoch ms (2026-09), on a minute boundary
assert T0 % 60_000 == 0


async def fleet(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.devices.upsert_many([
            DeviceSpec("ios-00001", "192.0.2.1", "cisco_ios", tags=["core"]),
            DeviceSpec("ios-00002", "192.0.2.2", "cisco_ios", tags=["edge"])])


async def series(store: Store, *keys: SeriesKey) -> dict[SeriesKey, int]:
    async with store.transaction() as tx:
        return await tx.telemetry.series_ids(list(keys))


LAT1 = SeriesKey("ios-00001", "latency_ms", unit="ms")
LAT2 = SeriesKey("ios-00002", "latency_ms", unit="ms")
IF1 = SeriesKey("ios-00001", "if_in_bps", labels_key([("interface", "Gi1/0/1")]), "bit/s")


async def test_a_series_is_created_once_and_unknown_devices_are_left_out(store: Store) -> None:
    await fleet(store)
    first = await series(store, LAT1, IF1, SeriesKey("gone", "latency_ms"))
    again = await series(store, IF1, LAT1, LAT2)
    assert set(first) == {LAT1, IF1}
    assert again[LAT1] == first[LAT1] and again[IF1] == first[IF1]
    assert len({*again.values()}) == 3


async def test_samples_come_back_newest_first_filtered_and_never_twice(store: Store) -> None:
    await fleet(store)
    ids = await series(store, LAT1, LAT2, IF1)
    rows = [(ids[LAT1], T0 + i * 10_000, float(i)) for i in range(12)]
    rows += [(ids[LAT2], T0 + i * 10_000, 100.0 + i) for i in range(12)]
    rows += [(ids[IF1], T0, 5e6)]
    async with store.transaction() as tx:
        await tx.telemetry.write(rows)
    async with store.transaction() as tx:
        await tx.telemetry.write(rows[:3])  # a retried batch
    async with store.transaction(readonly=True) as tx:
        latest = await tx.telemetry.query(selector=Selector.parse(["name=ios-00001"]),
                                          metric="latency_ms", start_ms=T0,
                                          end_ms=T0 + 120_000, limit=5)
        window = await tx.telemetry.query(selector=None, metric="latency_ms",
                                          start_ms=T0 + 30_000, end_ms=T0 + 60_000)
        by_label = await tx.telemetry.query(selector=Selector.parse(["tag=core"]), metric=None,
                                            start_ms=T0, end_ms=T0 + 1,
                                            labels="interface=Gi1/0/1")
        everything = await tx.telemetry.query(selector=None, metric=None, start_ms=T0,
                                              end_ms=T0 + 120_000, limit=10_000)
    assert [(p.ts, p.value) for p in latest] == [(T0 + i * 10_000, float(i))
                                                  for i in (11, 10, 9, 8, 7)]
    assert latest[0].unit == "ms" and latest[0].labels == {}
    assert sorted((p.device, p.value) for p in window) == [
        ("ios-00001", 3.0), ("ios-00001", 4.0), ("ios-00001", 5.0),
        ("ios-00002", 103.0), ("ios-00002", 104.0), ("ios-00002", 105.0)]
    assert [(p.metric, p.labels, p.value) for p in by_label] == [
        ("if_in_bps", {"interface": "Gi1/0/1"}, 5e6)]
    assert len(everything) == 25  # nothing stored twice


async def test_a_retried_batch_with_a_new_series_is_stored_in_one_transaction(
        store: Store) -> None:
    # The sample writer's shape: create the batch's missing series, then write its samples, in
    # one transaction. On PostgreSQL the duplicates make COPY fail; that must roll back only
    # its savepoint (it once aborted the transaction, and the batch was retried for ever).
    await fleet(store)
    ids = await series(store, LAT1)
    old = [(ids[LAT1], T0 + i * 10_000, float(i)) for i in range(3)]
    async with store.transaction() as tx:
        await tx.telemetry.write(old)
    async with store.transaction() as tx:
        ids.update(await tx.telemetry.series_ids([LAT2]))
        new = [(ids[LAT2], T0, 7.0)]
        assert await tx.telemetry.write(old + new) == 4
    async with store.transaction(readonly=True) as tx:
        stored = await tx.telemetry.query(selector=None, metric="latency_ms", start_ms=T0,
                                          end_ms=T0 + 60_000, limit=100)
    assert sorted((p.device, p.value) for p in stored) == [
        ("ios-00001", 0.0), ("ios-00001", 1.0), ("ios-00001", 2.0), ("ios-00002", 7.0)]


async def test_step_averages_buckets_in_the_database(store: Store) -> None:
    await fleet(store)
    ids = await series(store, LAT1)
    async with store.transaction() as tx:
        await tx.telemetry.write([(ids[LAT1], T0 + i * 10_000, float(i)) for i in range(12)])
    async with store.transaction(readonly=True) as tx:
        points = await tx.telemetry.query(selector=None, metric="latency_ms", start_ms=T0,
                                          end_ms=T0 + 120_000, step_ms=60_000)
    assert [(p.ts, p.value, p.min, p.max, p.count) for p in points] == [
        (T0 + 60_000, 8.5, 6.0, 11.0, 6), (T0, 2.5, 0.0, 5.0, 6)]


async def test_bad_ranges_and_limits_name_the_field(store: Store) -> None:
    async with store.transaction(readonly=True) as tx:
        for kwargs, field in (({"limit": 0}, "limit"), ({"end_ms": T0}, "end"),
                              ({"step_ms": 10}, "step")):
            args = {"selector": None, "metric": None, "start_ms": T0, "end_ms": T0 + 1000,
                    **kwargs}
            with pytest.raises(InvalidInput) as caught:
                await tx.telemetry.query(**args)  # type: ignore[arg-type]
            assert caught.value.field == field


async def test_rollups_and_retention(store: Store) -> None:
    await fleet(store)
    ids = await series(store, LAT1, LAT2)
    async with store.transaction() as tx:
        await tx.telemetry.write([(ids[k], T0 + i * 10_000, float(i) + (100 if k == LAT2 else 0))
                                  for k in (LAT1, LAT2) for i in range(18)])
    async with store.transaction() as tx:
        # Only whole minutes: the third minute (i = 12..17) is still filling.
        await tx.telemetry.roll_up(T0, T0 + 150_000)
        await tx.telemetry.roll_up(T0, T0 + 150_000)  # twice is the same as once
        rolled = await tx.telemetry.rollups("latency_ms", T0, T0 + 600_000,
                                            selector=Selector.parse(["name=ios-00001"]))
    assert [(p.ts, p.min, p.value, p.max, p.count) for p in rolled] == [
        (T0 + 60_000, 6.0, 8.5, 11.0, 6), (T0, 0.0, 2.5, 5.0, 6)]
    async with store.transaction() as tx:
        gone = await tx.telemetry.drop_older_than(T0 + 60_000, T0 + 60_000)
        left = await tx.telemetry.query(selector=None, metric=None, start_ms=0,
                                        end_ms=T0 + 600_000, limit=10_000)
        rollups_left = await tx.telemetry.rollups("latency_ms", 0, T0 + 600_000)
    assert gone == 2 * 6 + 2  # each series' first minute of raw samples, and its rollup
    assert min(p.ts for p in left) == T0 + 60_000
    assert {p.ts for p in rollups_left} == {T0 + 60_000}


async def test_deleting_a_device_deletes_its_series(store: Store) -> None:
    await fleet(store)
    ids = await series(store, LAT1)
    async with store.transaction() as tx:
        await tx.telemetry.write([(ids[LAT1], T0, 1.0)])
    async with store.transaction() as tx:
        await tx.devices.delete("ios-00001")
    async with store.transaction(readonly=True) as tx:
        assert await tx.telemetry.query(selector=None, metric=None, start_ms=0,
                                        end_ms=T0 + 1) == []


async def test_profiles_crud(store: Store) -> None:
    body = {"name": "p", "platform": "cisco_ios", "commands": []}
    async with store.transaction() as tx:
        await tx.telemetry.put_profile("p", body, ["platform=cisco_ios"], create=True)
        with pytest.raises(Conflict):
            await tx.telemetry.put_profile("p", body, [], create=True)
        with pytest.raises(NotFound):
            await tx.telemetry.put_profile("q", body, [], create=False)
    async with store.transaction() as tx:
        await tx.telemetry.put_profile("p", {**body, "interval": 30}, [], enabled=False)
        [stored] = await tx.telemetry.profiles()
    assert (stored.name, stored.body["interval"], stored.where, stored.enabled) == (
        "p", 30, [], False)
    async with store.transaction() as tx:
        await tx.telemetry.delete_profile("p")
        with pytest.raises(NotFound):
            await tx.telemetry.profile("p")
