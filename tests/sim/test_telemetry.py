"""The telemetry model: deterministic, smooth, and consistent between counters and rates."""

from __future__ import annotations

import statistics

from netfleet.sim.telemetry import Degradation, DeviceTelemetry, degradation_for

T0 = 1_800_000_000.0


def tel(index: int = 3, degradation: Degradation | None = None) -> DeviceTelemetry:
    return DeviceTelemetry(seed=11, index=index, boot=T0 - 86_400 * 30, degradation=degradation)


def test_same_seed_device_and_time_give_the_same_metrics() -> None:
    assert tel().counters(0, 0, T0) == tel().counters(0, 0, T0)
    assert tel().cpu_percent(T0) == tel().cpu_percent(T0)
    assert tel(3).counters(0, 0, T0) != tel(4).counters(0, 0, T0)


def test_counters_only_grow_and_rates_match_counter_differences() -> None:
    t = tel()
    previous = t.counters(1, 0, T0)
    for step in range(1, 200):
        now = t.counters(1, 0, T0 + step * 7.3)
        assert now.octets >= previous.octets and now.packets >= previous.packets
        assert now.errors >= previous.errors
        previous = now
    later = t.counters(1, 0, T0 + 300)
    earlier = t.counters(1, 0, T0)
    bits_per_second = (later.octets - earlier.octets) * 8 / 300
    assert abs(later.bps - bits_per_second) <= 0.001 * bits_per_second + 8


def test_gauges_stay_in_range_and_vary() -> None:
    t = tel()
    cpus = [t.cpu_percent(T0 + 60 * i) for i in range(200)]
    mems = [t.memory_percent(T0 + 600 * i) for i in range(200)]
    assert all(1 <= c <= 99 for c in cpus) and statistics.pstdev(cpus) > 0.5
    assert all(5 <= m <= 97 for m in mems) and statistics.pstdev(mems) > 0.1


def test_degraded_devices_are_slower_emptier_and_noisier() -> None:
    bad = Degradation(latency_factor=5, throughput_factor=0.3, error_factor=100)
    healthy, degraded = tel(), tel(degradation=bad)
    assert degraded.base_rtt_ms() == healthy.base_rtt_ms() * 5
    assert degraded.counters(0, 0, T0).bps < healthy.counters(0, 0, T0).bps
    assert degraded.error_ratio(0) > 50 * healthy.error_ratio(0)
    assert min(degraded.rtt_samples(T0, 1, 20)) > max(healthy.rtt_samples(T0, 1, 20))


def test_degraded_fraction_is_close_to_what_was_asked() -> None:
    flagged = sum(degradation_for(5, i, 0.1) is not None for i in range(5000))
    assert 400 <= flagged <= 600
    assert all(degradation_for(5, i, 0.0) is None for i in range(500))
