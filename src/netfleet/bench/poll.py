"""`netfleet bench poll`: polling, ingest and the bottleneck query, against a simulator in its
own process (so the CPU and memory figures are the polling process's own).

(a) device-polls per CPU-second of this process (parse and storage included), with the
    platform's light `-cpu` profile on every device, measured once every session is open;
    then, as the baseline in the same run, the SSH library alone doing the same exchange on
    the same number of sessions at the same rate (write the command, read to the prompt: no
    netfleet code), which is the floor any poller built on asyncssh pays on this machine;
(b) resident memory per polled device (RSS growth from before polling to steady state);
(c) sample ingest rate into SQLite and PostgreSQL through the telemetry writer's own path;
(d) the bottleneck aggregate query over 10,000 devices and a 10-minute window.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncssh
import httpx

from netfleet import runtime
from netfleet.bench.sim import _free_port, simulator
from netfleet.bootstrap import build_services
from netfleet.domain.ports import Target
from netfleet.domain.selectors import Selector
from netfleet.domain.telemetry import Sample
from netfleet.drivers.asyncssh import ENCRYPTION_ALGS, TERM_SIZE
from netfleet.engine import Limits
from netfleet.engine.profiles import builtin_profiles
from netfleet.services.inventory import import_file
from netfleet.services.telemetry import TelemetryService
from netfleet.settings import load_settings
from netfleet.store import Store, create_engine, migrate
from netfleet.store.aggregates import window_aggregates
from netfleet.store.records import DeviceSpec
from netfleet.store.secrets import SecretBox


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _polling(devices: int, interval: float, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fleet = work / "fleet.yaml"
        args = ["--devices", str(devices), "--port", str(_free_port()), "--base-ip",
                "127.6.0.1", "--degraded", "0", "--platform", "cisco_ios", "--out", str(fleet)]
        async with simulator(args, wait_devices=devices):
            settings = load_settings(database_url=f"sqlite:///{work / 'poll.db'}",
                                     secret_key_file=work / "secret.key")
            services = await build_services(settings, Limits(global_concurrency=1024,
                                                             idle_timeout=3600))
            try:
                await import_file(services.store, fleet)
                telemetry, engine = services.telemetry, services.engine
                rss_before = _rss_bytes()
                profile = builtin_profiles()["cisco_ios-cpu"].model_copy(
                    update={"interval": interval})
                await telemetry.put_profile(profile, ["platform=cisco_ios"])
                # Warm up: every device logged in and polled at least twice.
                deadline = time.monotonic() + 300
                while engine.poll_stats.ok < 2 * devices and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.5)
                rss_after = _rss_bytes()
                stats = engine.poll_stats
                ok0, failed0, over0 = stats.ok, stats.failed, stats.overruns
                busy0 = stats.seconds
                cpu0, wall0 = time.process_time(), time.perf_counter()
                await asyncio.sleep(seconds)
                cpu = time.process_time() - cpu0
                wall = time.perf_counter() - wall0
                polls = stats.ok - ok0
                result = {
                    "devices": devices, "profile": "cisco_ios-cpu", "interval_s": interval,
                    "measured_s": round(wall, 1), "polls": polls,
                    "failed": stats.failed - failed0, "overruns": stats.overruns - over0,
                    "mean_poll_ms": round((stats.seconds - busy0) / max(1, polls) * 1000, 1),
                    "polls_per_second": round(polls / wall, 1),
                    "process_cpu_s": round(cpu, 2),
                    "cpu_utilisation": round(cpu / wall, 2),
                    "device_polls_per_cpu_second": round(polls / cpu, 1) if cpu else None,
                    "samples_written": telemetry.stats.written,
                    "samples_dropped": telemetry.stats.dropped,
                    "open_sessions": engine.open_sessions,
                    "rss_per_polled_device_kib": round(
                        (rss_after - rss_before) / devices / 1024, 1),
                }
                targets = [await services.jobs.resolve(name) for name in sorted(engine.actors)]
            finally:
                await services.close()
            floor = await _ssh_floor(targets, profile.commands[0].command, interval, seconds)
    floor["netfleet_share_of_floor"] = round(
        result["device_polls_per_cpu_second"] / floor["exchanges_per_cpu_second"], 2)
    result["ssh_library_floor"] = floor
    return result


async def _ssh_floor(targets: list[Target], command: str, interval: float,
                     seconds: float) -> dict[str, Any]:
    """The baseline: asyncssh on its own, one shell per device, `command` every `interval`
    seconds at a fixed phase per device, output read up to the prompt and thrown away."""
    line = command.encode() + b"\n"
    procs: list[asyncssh.SSHClientProcess[bytes]] = []
    conns: list[asyncssh.SSHClientConnection] = []
    gate = asyncio.Semaphore(64)

    async def until(proc: asyncssh.SSHClientProcess[bytes], ends: tuple[bytes, ...]) -> bytes:
        buf = b""
        while not buf.rstrip().endswith(ends):
            data = await proc.stdout.read(65536)
            if not data:
                raise EOFError("the simulator closed the shell")
            buf += data
        return buf

    async def open_shell(t: Target) -> None:
        async with gate:
            conn = await asyncssh.connect(t.host, t.port, username=t.username,
                                          password=t.password, known_hosts=None,
                                          agent_path=None, config=None,
                                          encryption_algs=ENCRYPTION_ALGS)
            conns.append(conn)
            proc = await conn.create_process(term_type="vt100", term_size=TERM_SIZE,
                                             encoding=None)
            if (await until(proc, (b">", b"#"))).rstrip().endswith(b">"):
                proc.stdin.write(b"enable\n")
                await until(proc, (b":",))
                proc.stdin.write((t.enable_secret or "").encode() + b"\n")
                await until(proc, (b"#",))
            proc.stdin.write(b"terminal length 0\n")
            await until(proc, (b"#",))
            procs.append(proc)

    count = 0

    async def poll(index: int, proc: asyncssh.SSHClientProcess[bytes]) -> None:
        nonlocal count
        tick = time.time() + index / len(targets) * interval
        while True:
            await asyncio.sleep(max(0.0, tick - time.time()))
            proc.stdin.write(line)
            await until(proc, (b"#",))
            count += 1
            tick += interval
            if tick < time.time():
                tick += (time.time() - tick) // interval * interval + interval

    try:
        await asyncio.gather(*(open_shell(t) for t in targets))
        pollers = [asyncio.create_task(poll(i, p)) for i, p in enumerate(procs)]
        await asyncio.sleep(2 * interval)  # every shell through a first round
        count0, cpu0, wall0 = count, time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu, wall, done = time.process_time() - cpu0, time.perf_counter() - wall0, count - count0
        for task in pollers:
            task.cancel()
        await asyncio.gather(*pollers, return_exceptions=True)
    finally:
        for conn in conns:
            conn.close()
        await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)
    return {"sessions": len(procs), "exchanges": done,
            "exchanges_per_second": round(done / wall, 1),
            "cpu_utilisation": round(cpu / wall, 2),
            "exchanges_per_cpu_second": round(done / cpu, 1) if cpu else None}


async def _ingest(url: str, samples: int, batch: int = 20_000) -> dict[str, Any]:
    """The writer's path (series lookup cached, bulk INSERT) with samples of 1,000 devices."""
    await migrate(url)
    store = Store(create_engine(url), SecretBox.generate())
    try:
        async with store.transaction() as tx:
            await tx.devices.upsert_many([DeviceSpec(f"bench-{i:05d}", "192.0.2.1", "cisco_ios")
                                          for i in range(1000)])
        service = TelemetryService(store)
        service.FLUSH_BATCH = batch
        now = time.time() - 3600
        metrics = ("cpu_percent", "latency_ms", "throughput_bps", "error_rate", "memory")
        rows = [Sample(f"bench-{i % 1000:05d}", metrics[(i // 1000) % len(metrics)],
                       float(i), now + i // 5000)
                for i in range(samples)]
        # Series ids created once (as the writer does on the first poll of a device).
        await service._write(rows[:5000])
        rest = rows[5000:]
        t0 = time.perf_counter()
        for start in range(0, len(rest), batch):
            await service._write(rest[start:start + batch])
        seconds = time.perf_counter() - t0
        return {"samples": len(rest), "batch": batch, "seconds": round(seconds, 2),
                "samples_per_second": round(len(rest) / seconds)}
    finally:
        await store.close()


async def _bottleneck_query(url: str, devices: int, window_minutes: int = 10,
                            step_s: int = 30) -> dict[str, Any]:
    await migrate(url)
    store = Store(create_engine(url), SecretBox.generate())
    try:
        async with store.transaction() as tx:
            await tx.devices.upsert_many([DeviceSpec(f"q-{i:05d}", "192.0.2.1", "cisco_ios")
                                          for i in range(devices)])
        service = TelemetryService(store)
        end = time.time()
        start = end - window_minutes * 60
        points = int(window_minutes * 60 / step_s)
        batch: list[Sample] = []
        for i in range(devices):
            for k in range(points):
                ts = start + k * step_s
                batch += [Sample(f"q-{i:05d}", "latency_ms", 10.0 + (i % 7), ts),
                          Sample(f"q-{i:05d}", "throughput_bps", 1e9 - (i % 11) * 1e6, ts),
                          Sample(f"q-{i:05d}", "error_rate", 0.01 * (i % 3), ts)]
            if len(batch) >= 50_000:
                await service._write(batch)
                batch = []
        if batch:
            await service._write(batch)
        if store.dialect == "postgresql":
            await store.analyze()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            async with store.transaction(readonly=True) as tx:
                found = await window_aggregates(tx.session, store.dialect, Selector(),
                                                int(start * 1000), int(end * 1000) + 1)
            times.append(time.perf_counter() - t0)
        return {"devices": devices, "window_minutes": window_minutes,
                "samples_in_window": devices * points * 3, "devices_found": len(found),
                "query_seconds_median": round(statistics.median(times), 3),
                "query_seconds_max": round(max(times), 3)}
    finally:
        await store.close()


async def _pg_database(admin_url: str) -> tuple[str, Any]:
    name = f"netfleet_bench_{secrets.token_hex(4)}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')

    async def drop() -> None:
        async with engine.connect() as connection:
            await connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await engine.dispose()

    return f"{admin_url.rsplit('/', 1)[0]}/{name}", drop


async def run(devices: int = 2000, interval: float = 2.0, seconds: float = 20.0,
              ingest_samples: int = 200_000, query_devices: int = 10_000,
              postgres_admin_url: str | None = "postgresql://postgres@127.0.0.1:5432/test"
              ) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "poll", "event_loop": runtime.loop_name()}
    result["polling"] = await _polling(devices, interval, seconds)
    with tempfile.TemporaryDirectory() as tmp:
        result["ingest_sqlite"] = await _ingest(f"sqlite:///{tmp}/ingest.db", ingest_samples)
        result["bottleneck_query_sqlite"] = await _bottleneck_query(
            f"sqlite:///{tmp}/query.db", query_devices)
    if postgres_admin_url:
        try:
            url, drop = await _pg_database(postgres_admin_url)
        except (OSError, httpx.HTTPError, Exception) as exc:  # no server: say so, go on
            result["postgresql"] = f"skipped: {type(exc).__name__}: {exc}"
        else:
            try:
                result["ingest_postgresql"] = await _ingest(url, ingest_samples)
                result["bottleneck_query_postgresql"] = await _bottleneck_query(
                    url, query_devices)
            finally:
                await drop()
    result["targets"] = {"device_polls_per_cpu_second": 3000, "rss_per_polled_device_kib": 64,
                         "samples_per_second": 50_000, "bottleneck_query_seconds": 1.0}
    return result
