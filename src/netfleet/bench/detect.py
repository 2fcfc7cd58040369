"""`netfleet bench detect`: how well bottleneck detection finds the simulator's degraded devices.

For each degraded fraction: a fleet from the simulator's own model (FleetFactory, the same seed
throughout), each device's latency_ms, throughput_bps and error_rate every 10 s over the window
computed from that model, written to a fresh migrated SQLite database, averaged per device in
SQL (store.aggregates) and judged by both methods against the ground truth (which devices the
model degraded). `zscore` is the baseline measured in the same run.

The samples come from the model, not from polling over SSH (the polling pipeline is built
separately): the JSON says so in "source".
"""

from __future__ import annotations

import asyncio
import ipaddress
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from netfleet.analytics import Method, detect
from netfleet.sim.fleet import FleetFactory
from netfleet.sim.state import Device
from netfleet.sim.telemetry import Counters, Degradation
from netfleet.store import SecretBox, Store, create_engine, migrate
from netfleet.store._sql import chunked
from netfleet.store.aggregates import DEFAULT_METRICS, window_aggregates
from netfleet.store.models import DeviceRow, TelemetrySampleRow, TelemetrySeriesRow
from netfleet.store.records import DeviceSpec

SOURCE = "simulator model, not polled"
STEP_S = 10
UNITS = {"latency_ms": "ms", "throughput_bps": "bit/s", "error_rate": "%"}
# The run's "now", fixed so that every run measures the same minutes of the same fleet.
EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z
# What a latency probe would ping, and how many echoes (the simulated ping's default).
PING_TARGET = int(ipaddress.IPv4Address("10.0.0.1"))
PING_COUNT = 5
TARGET_F1 = 0.95
# Rows per INSERT: three parameters each, under both databases' bound-parameter limits.
_ROWS_PER_INSERT = 5000

Metrics = dict[str, list[float]]


async def run(devices: int = 1000, fractions: Sequence[float] = (0.05, 0.10, 0.20),
              window_minutes: int = 10, seed: int = 1) -> dict[str, Any]:
    """Precision, recall and F1 of both methods per degraded fraction (JSON-able)."""
    if not 1 <= window_minutes <= 60:
        # Simulated devices booted at least an hour before EPOCH; earlier, counters are flat.
        raise ValueError(f"window_minutes {window_minutes} is outside 1..60")
    end = EPOCH
    times = [end - window_minutes * 60 + k * STEP_S for k in range(window_minutes * 60 // STEP_S)]
    # A device's samples depend only on (seed, index, degradation), so a device that is
    # healthy (or equally degraded) at several fractions is computed once.
    cache: dict[tuple[int, Degradation | None], Metrics] = {}
    runs = []
    model_seconds = 0.0
    for fraction in fractions:
        factory = FleetFactory(seed=seed, base_ip="127.16.0.1", degraded=fraction,
                               started=EPOCH)
        fleet = [factory.make(i) for i in range(devices)]
        started = time.perf_counter()
        samples = await asyncio.to_thread(_fleet_samples, fleet, times, cache)
        model_seconds += time.perf_counter() - started
        truth = {d.name for d in fleet if d.degradation is not None}
        with tempfile.TemporaryDirectory() as tmp:
            result = await _measure(f"sqlite:///{Path(tmp) / 'detect.db'}", fleet, samples,
                                    times, truth)
        runs.append({"fraction": fraction, "truth": len(truth), **result})
    robust = [r["methods"]["robust"]["f1"] for r in runs]
    highest = max(runs, key=lambda r: r["fraction"]) if runs else None
    return {
        "benchmark": "detect",
        "source": SOURCE,
        "database": "sqlite",
        "devices": devices,
        "seed": seed,
        "window_minutes": window_minutes,
        "sample_interval_s": STEP_S,
        "metrics": list(DEFAULT_METRICS),
        "threshold": 2.0,
        "min_peers": 5,
        "model_seconds": round(model_seconds, 2),
        "fractions": runs,
        "targets": {
            "robust_f1_min": TARGET_F1,
            "robust_f1_met": bool(robust) and min(robust) >= TARGET_F1,
            "robust_beats_zscore_at_highest_fraction": highest is not None and (
                highest["methods"]["robust"]["f1"] > highest["methods"]["zscore"]["f1"]),
        },
    }


# -- the model's samples ------------------------------------------------------------------

def _fleet_samples(fleet: Sequence[Device], times: Sequence[float],
                   cache: dict[tuple[int, Degradation | None], Metrics]) -> dict[str, Metrics]:
    out = {}
    for device in fleet:
        key = (device.index, device.degradation)
        if key not in cache:
            cache[key] = device_samples(device, times)
        out[device.name] = cache[key]
    return out


def device_samples(device: Device, times: Sequence[float]) -> Metrics:
    """What polling `device` at each of `times` would record, straight from the model that
    renders its `show interfaces` and `ping` (sim/views.py, sim/shell.py).

    Rates come from counter differences between consecutive polls, as a poller makes them:
    throughput is the bits in and out of every running interface per second, error_rate the
    errors per packet (in and out, %) over the interval. latency_ms is the mean RTT of one
    ping of PING_COUNT echoes.
    """
    telemetry = device.telemetry
    links = [(intf.port, direction) for intf in device.running.interfaces.values()
             if intf.physical and not intf.shutdown for direction in (0, 1)]
    previous = [telemetry.counters(port, d, times[0] - STEP_S) for port, d in links]
    out: Metrics = {metric: [] for metric in DEFAULT_METRICS}
    for t in times:
        current = [telemetry.counters(port, d, t) for port, d in links]
        octets, packets, errors = _deltas(previous, current)
        rtts = telemetry.rtt_samples(t, PING_TARGET, PING_COUNT)
        out["latency_ms"].append(statistics.fmean(rtts))
        out["throughput_bps"].append(octets * 8 / STEP_S)
        out["error_rate"].append(100.0 * errors / packets if packets else 0.0)
        previous = current
    return out


def _deltas(before: Sequence[Counters], after: Sequence[Counters]) -> tuple[int, int, int]:
    octets = packets = errors = 0
    for old, new in zip(before, after, strict=True):
        octets += new.octets - old.octets
        packets += new.packets - old.packets
        errors += new.errors - old.errors
    return octets, packets, errors


# -- store, aggregate, judge ----------------------------------------------------------------

async def _measure(url: str, fleet: Sequence[Device], samples: dict[str, Metrics],
                   times: Sequence[float], truth: set[str]) -> dict[str, Any]:
    await migrate(url)
    store = Store(create_engine(url), SecretBox.generate())
    try:
        started = time.perf_counter()
        rows = await _load(store, fleet, samples, times)
        write_seconds = time.perf_counter() - started
        start_ms, end_ms = int(times[0] * 1000), int(times[-1] * 1000) + 1
        query_ms = []
        for _ in range(3):
            async with store.transaction(readonly=True) as tx:
                started = time.perf_counter()
                aggregates = await window_aggregates(tx.session, store.dialect, None,
                                                     start_ms, end_ms)
                query_ms.append((time.perf_counter() - started) * 1000)
    finally:
        await store.close()
    methods = {}
    for method in Method:
        started = time.perf_counter()
        flagged = detect(aggregates, method)
        detect_ms = (time.perf_counter() - started) * 1000
        methods[method.value] = {
            **_quality({b.device for b in flagged}, truth),
            "detect_ms": round(detect_ms, 1),
            "top": {"device": flagged[0].device, "score": round(flagged[0].score, 1),
                    "reason": flagged[0].reason} if flagged else None,
        }
    return {"samples": rows, "write_seconds": round(write_seconds, 2),
            "devices_aggregated": len(aggregates),
            "aggregate_query_ms": round(statistics.median(query_ms), 1),
            "methods": methods}


async def _load(store: Store, fleet: Sequence[Device], samples: dict[str, Metrics],
                times: Sequence[float]) -> int:
    """Devices through the inventory repository, then series and samples as bulk INSERTs."""
    async with store.transaction() as tx:
        await tx.devices.upsert_many([
            DeviceSpec(name=d.name, host=d.address, platform=d.platform.name) for d in fleet])
        ids = dict((await tx.session.execute(select(DeviceRow.name, DeviceRow.id))).all())
        await tx.session.execute(insert(TelemetrySeriesRow), [
            {"device_id": ids[d.name], "metric": m, "labels": "", "unit": UNITS[m]}
            for d in fleet for m in DEFAULT_METRICS])
        series = {(device_id, metric): series_id for series_id, device_id, metric in (
            await tx.session.execute(select(TelemetrySeriesRow.id, TelemetrySeriesRow.device_id,
                                            TelemetrySeriesRow.metric)))}
        # In time order, as the recorder would write them.
        rows = [{"series_id": series[ids[name], metric], "ts": int(t * 1000), "value": value}
                for k, t in enumerate(times)
                for name, metrics in samples.items()
                for metric, value in ((m, metrics[m][k]) for m in DEFAULT_METRICS)]
        for chunk in chunked(rows, _ROWS_PER_INSERT):
            await tx.session.execute(insert(TelemetrySampleRow), chunk)
    return len(rows)


def _quality(flagged: set[str], truth: set[str]) -> dict[str, Any]:
    hits = len(flagged & truth)
    precision = hits / len(flagged) if flagged else float(not truth)
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"flagged": len(flagged), "true_positives": hits,
            "false_positives": len(flagged - truth), "false_negatives": len(truth - flagged),
            "precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3)}


# -- polled: the whole pipeline over SSH ----------------------------------------------------

async def run_polled(devices: int = 300, fractions: Sequence[float] = (0.05, 0.10, 0.20),
                     interval: float = 5.0, polls: int = 8, seed: int = 1) -> dict[str, Any]:
    """The same question answered end to end: a `netfleet sim` process with the degraded
    fraction, netfleet polling it with the built-in `<platform>-default` profiles over SSH,
    samples through the writer into SQLite, `/bottlenecks`' query and both methods, against
    the simulator's `/truth`."""
    # Imported here: the model-only benchmark needs none of the polling machinery.
    import httpx

    from netfleet.bench.sim import _free_port, simulator
    from netfleet.bootstrap import build_services
    from netfleet.engine import Limits
    from netfleet.services.inventory import import_file
    from netfleet.settings import load_settings

    runs: list[dict[str, Any]] = []
    for fraction in fractions:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            fleet = work / "fleet.yaml"
            args = ["--devices", str(devices), "--port", str(_free_port()), "--base-ip",
                    "127.17.0.1", "--degraded", str(fraction), "--seed", str(seed),
                    "--out", str(fleet)]
            async with simulator(args, wait_devices=devices) as sim:
                async with httpx.AsyncClient() as control:
                    truth = set((await control.get(f"{sim.control}/truth")).json()["degraded"])
                services = await build_services(
                    load_settings(database_url=f"sqlite:///{work / 'detect.db'}",
                                  secret_key_file=work / "secret.key"),
                    Limits(global_concurrency=1024, idle_timeout=3600))
                try:
                    await import_file(services.store, fleet)
                    telemetry = services.telemetry
                    started = time.time()
                    for view in await telemetry.profiles():
                        if view.profile.name.endswith("-default"):
                            fast = view.profile.model_copy(update={
                                "name": view.profile.name + "-bench", "interval": interval})
                            await telemetry.put_profile(
                                fast, [f"platform={view.profile.platform}"])
                    await asyncio.sleep(interval * polls)
                    await telemetry.flush()
                    methods = {}
                    for method in Method:
                        found, compared = await telemetry.bottlenecks(
                            window=time.time() - started, method=method.value)
                        methods[method.value] = {
                            **_quality({b.device for b in found}, truth),
                            "devices_compared": compared}
                    stats = services.engine.poll_stats
                    runs.append({"fraction": fraction, "truth": len(truth),
                                 "polls_ok": stats.ok, "polls_failed": stats.failed,
                                 "samples_written": telemetry.stats.written,
                                 "methods": methods})
                finally:
                    await services.close()
    robust = [r["methods"]["robust"]["f1"] for r in runs]
    return {"benchmark": "detect", "source": "polled over SSH from the simulator",
            "devices": devices, "seed": seed, "interval_s": interval, "polls": polls,
            "fractions": runs,
            "targets": {"robust_f1_min": TARGET_F1,
                        "robust_f1_met": bool(robust) and min(robust) >= TARGET_F1}}
