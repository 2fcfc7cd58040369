"""The telemetry writer keeps going when a polled device is deleted under it."""

from __future__ import annotations

import contextlib
import time

from netfleet.domain.errors import NotFound
from netfleet.domain.telemetry import Sample
from netfleet.services.telemetry import TelemetryService
from netfleet.store import Store, create_engine
from netfleet.store.records import DeviceSpec
from netfleet.store.secrets import SecretBox


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
