"""Per-device window means in SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import insert, select

from netfleet.analytics import detect
from netfleet.domain.errors import InvalidInput
from netfleet.domain.selectors import Selector
from netfleet.store import Store
from netfleet.store.aggregates import DeviceAggregate, window_aggregates
from netfleet.store.models import DeviceRow, TelemetrySampleRow, TelemetrySeriesRow
from netfleet.store.records import DeviceSpec

T0 = 1_767_225_600_000  # epoch ms
START, END = T0, T0 + 600_000  # a ten-minute window


async def add_devices(store: Store, *specs: DeviceSpec) -> None:
    async with store.transaction() as tx:
        await tx.devices.upsert_many(specs)


async def add_series(store: Store, device: str, metric: str, samples: Sequence[tuple[int, float]],
                     labels: str = "") -> None:
    async with store.transaction() as tx:
        device_id = (await tx.session.execute(
            select(DeviceRow.id).where(DeviceRow.name == device))).scalar_one()
        series_id = (await tx.session.execute(
            insert(TelemetrySeriesRow).values(device_id=device_id, metric=metric, labels=labels)
            .returning(TelemetrySeriesRow.id))).scalar_one()
        if samples:
            await tx.session.execute(insert(TelemetrySampleRow), [
                {"series_id": series_id, "ts": ts, "value": v} for ts, v in samples])


async def aggregates(store: Store, selector: Selector | None = None,
                     **kw: Sequence[str]) -> list[DeviceAggregate]:
    async with store.transaction(readonly=True) as tx:
        return await window_aggregates(tx.session, store.dialect, selector, START, END, **kw)


async def test_means_and_counts_cover_the_window_and_nothing_outside_it(store: Store) -> None:
    await add_devices(store, DeviceSpec("ios-1", "192.0.2.1", "cisco_ios", site="lab1"))
    await add_series(store, "ios-1", "latency_ms", [
        (START - 1, 1000.0),  # just before
        (START, 2.0), (START + 10_000, 4.0), (END - 1, 6.0),
        (END, 1000.0),  # the end is not in the window
    ])
    await add_series(store, "ios-1", "throughput_bps",
                     [(START + 5_000, 1e9), (START + 15_000, 3e9)])
    await add_series(store, "ios-1", "error_rate", [(START + 5_000, 0.5)])

    (agg,) = await aggregates(store)

    assert (agg.device, agg.platform, agg.site) == ("ios-1", "cisco_ios", "lab1")
    assert agg.values == pytest.approx({"latency_ms": 4.0, "throughput_bps": 2e9,
                                        "error_rate": 0.5})
    assert agg.count == {"latency_ms": 3, "throughput_bps": 2, "error_rate": 1}


async def test_interface_series_and_other_metrics_are_left_out(store: Store) -> None:
    await add_devices(store, DeviceSpec("ios-1", "192.0.2.1", "cisco_ios"))
    await add_series(store, "ios-1", "throughput_bps", [(START, 10.0)])
    await add_series(store, "ios-1", "throughput_bps", [(START, 9e9)],
                     labels="interface=Gi1/0/1")
    await add_series(store, "ios-1", "cpu_percent", [(START, 50.0)])

    (agg,) = await aggregates(store)
    (cpu,) = await aggregates(store, metrics=["cpu_percent"])

    assert agg.values == {"throughput_bps": 10.0}
    assert cpu.values == {"cpu_percent": 50.0}


async def test_only_devices_the_selector_picks_and_that_have_samples_come_back(
        store: Store) -> None:
    await add_devices(store, DeviceSpec("ios-1", "192.0.2.1", "cisco_ios", site="lab1"),
                      DeviceSpec("ios-2", "192.0.2.2", "cisco_ios", site="lab1", tags=["core"]),
                      DeviceSpec("eos-1", "192.0.2.3", "arista_eos", site="lab2"),
                      DeviceSpec("eos-2", "192.0.2.4", "arista_eos", site="lab1"),
                      DeviceSpec("eos-3", "192.0.2.5", "arista_eos", site="lab1"))
    for name in ("ios-2", "ios-1", "eos-1"):
        await add_series(store, name, "latency_ms", [(START, 1.0)])
    await add_series(store, "eos-2", "latency_ms", [(END + 1, 1.0)])  # only outside
    # eos-3 has no series at all

    everyone = await aggregates(store)
    lab1 = await aggregates(store, Selector(site="lab1"))
    core = await aggregates(store, Selector.parse(["tag=core"]))
    ios = await aggregates(store, Selector.parse(["name=ios-*"]))

    assert [a.device for a in everyone] == ["eos-1", "ios-1", "ios-2"]
    assert [a.device for a in lab1] == ["ios-1", "ios-2"]
    assert [a.device for a in core] == ["ios-2"]
    assert [a.device for a in ios] == ["ios-1", "ios-2"]


async def test_the_aggregates_feed_bottleneck_detection(store: Store) -> None:
    names = [f"sw-{i}" for i in range(8)]
    await add_devices(store, *(DeviceSpec(n, f"192.0.2.{i + 1}", "cisco_ios")
                               for i, n in enumerate(names)))
    for i, name in enumerate(names):
        rtt = 40.0 if name == "sw-5" else 2.0 + 0.1 * i
        await add_series(store, name, "latency_ms",
                         [(START + k * 10_000, rtt + 0.01 * k) for k in range(6)])

    found = detect(await aggregates(store))

    assert [b.device for b in found] == ["sw-5"]
    assert found[0].reason.startswith("latency ")


async def test_an_empty_window_is_refused(store: Store) -> None:
    async with store.transaction(readonly=True) as tx:
        with pytest.raises(InvalidInput, match="end"):
            await window_aggregates(tx.session, store.dialect, None, END, START)
