"""Deterministic device metrics: a pure function of (seed, device, time).

Rates are sums of sines around a base, so their integrals (the counters) have a closed form:
counters only grow, and a rate averaged over a window equals the counter difference over it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

_MASK = (1 << 64) - 1
_TAU = 2.0 * math.pi
DAY = 86_400.0


def mix(*parts: int) -> int:
    """A 64-bit hash of integers (splitmix64 folded over the parts): cheap and stable."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = (x ^ (part & _MASK)) & _MASK
        x = (x + 0x9E3779B97F4A7C15) & _MASK
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
        x ^= x >> 31
    return x


def unit(*parts: int) -> float:
    """A uniform number in [0, 1) derived from the parts."""
    return mix(*parts) / 2.0**64


def between(lo: float, hi: float, *parts: int) -> float:
    return lo + (hi - lo) * unit(*parts)


@dataclass(frozen=True, slots=True)
class Degradation:
    """How a degraded device is worse than its peers (ground truth for bottleneck detection)."""

    latency_factor: float
    throughput_factor: float
    error_factor: float

    @property
    def severity(self) -> float:
        """0 (barely) … 1 (badly), averaged over the three symptoms."""
        lat = min(1.0, (self.latency_factor - 1.0) / 9.0)
        thr = min(1.0, (1.0 - self.throughput_factor) / 0.9)
        err = min(1.0, math.log10(self.error_factor) / 3.0)
        return round((lat + thr + err) / 3.0, 3)

    def as_dict(self) -> dict[str, float]:
        return {
            "latency_factor": round(self.latency_factor, 3),
            "throughput_factor": round(self.throughput_factor, 3),
            "error_factor": round(self.error_factor, 3),
            "severity": self.severity,
        }


def degradation_for(seed: int, index: int, fraction: float) -> Degradation | None:
    """Whether device `index` is degraded, and how badly; stable for a (seed, index)."""
    if fraction <= 0 or unit(seed, index, 0xD6) >= fraction:
        return None
    return Degradation(
        latency_factor=between(3.0, 10.0, seed, index, 0xD1),
        throughput_factor=between(0.15, 0.5, seed, index, 0xD2),
        error_factor=between(20.0, 200.0, seed, index, 0xD3),
    )


class _Wave:
    """base · (1 + Σ aᵢ·sin(ωᵢt + φᵢ)); strictly positive because Σ aᵢ < 1."""

    __slots__ = ("amps", "base", "omegas", "phases")

    def __init__(self, base: float, key: tuple[int, ...]) -> None:
        self.base = base
        periods = (DAY, between(600.0, 3600.0, *key, 1), between(15.0, 60.0, *key, 2))
        self.amps = (between(0.2, 0.4, *key, 3), between(0.1, 0.25, *key, 4),
                     between(0.05, 0.15, *key, 5))
        self.omegas = tuple(_TAU / p for p in periods)
        self.phases = tuple(between(0.0, _TAU, *key, 6 + i) for i in range(3))

    def value(self, t: float) -> float:
        s = 1.0
        for a, w, p in zip(self.amps, self.omegas, self.phases, strict=True):
            s += a * math.sin(w * t + p)
        return self.base * s

    def integral(self, t0: float, t1: float) -> float:
        """∫ value dt from t0 to t1, in closed form."""
        total = t1 - t0
        for a, w, p in zip(self.amps, self.omegas, self.phases, strict=True):
            total += a / w * (math.cos(w * t0 + p) - math.cos(w * t1 + p))
        return self.base * total


@lru_cache(maxsize=16_384)
def _cpu_wave(seed: int, index: int) -> _Wave:
    return _Wave(1.0, (seed, index, 0xC1))


@dataclass(frozen=True, slots=True)
class _Link:
    """The fixed parameters of one direction of one interface."""

    wave: _Wave  # octets per second over time
    packet_size: float
    error_ratio: float


@lru_cache(maxsize=65_536)
def _link(seed: int, index: int, port: int, direction: int, speed_bps: int,
          throughput_factor: float, error_factor: float) -> _Link:
    # Cached: deriving the parameters hashes a dozen times, and `show interfaces` on a 48-port
    # switch needs them for 96 links. Bounded, so idle devices cost nothing.
    util = between(0.02, 0.35, seed, index, port, direction, 0xA0) * throughput_factor
    ratio = between(1e-7, 5e-6, seed, index, port, 0xE0)
    if error_factor:
        ratio = max(ratio * error_factor, 2e-4)
    return _Link(
        wave=_Wave(util * speed_bps / 8.0, (seed, index, port, direction)),
        packet_size=between(400.0, 1200.0, seed, index, port, direction, 0xA1),
        error_ratio=ratio,
    )


@dataclass(frozen=True, slots=True)
class Counters:
    """One direction of one interface at one instant."""

    octets: int
    packets: int
    errors: int
    bps: int  # average over the rate window, what "5 minute input rate" shows
    pps: int


class DeviceTelemetry:
    """Every metric of one device. Built on demand; holds only a handful of numbers."""

    __slots__ = ("_seed", "boot", "degradation", "index", "speed_bps")

    RATE_WINDOW = 300.0

    def __init__(self, seed: int, index: int, boot: float, degradation: Degradation | None,
                 speed_bps: int = 1_000_000_000) -> None:
        self._seed = seed
        self.index = index
        self.boot = boot
        self.degradation = degradation
        self.speed_bps = speed_bps

    # -- gauges ----------------------------------------------------------------------------
    def cpu_percent(self, t: float) -> float:
        """CPU busy % at t: a smooth daily and hourly swing plus per-5-second noise."""
        base = between(8.0, 35.0, self._seed, self.index, 0xC0)
        swing = _cpu_wave(self._seed, self.index).value(t) - 1.0
        noise = between(-3.0, 3.0, self._seed, self.index, int(t // 5), 0xC2)
        return min(99.0, max(1.0, base * (1.0 + swing) + noise))

    def cpu_average(self, t: float, window: float) -> float:
        steps = 6
        return sum(self.cpu_percent(t - window * i / steps) for i in range(steps)) / steps

    def memory_percent(self, t: float) -> float:
        base = between(30.0, 60.0, self._seed, self.index, 0x3E)
        drift = 5.0 * math.sin(_TAU * t / DAY + between(0, _TAU, self._seed, self.index, 0x3F))
        return min(97.0, max(5.0, base + drift))

    # -- latency ---------------------------------------------------------------------------
    def base_rtt_ms(self) -> float:
        rtt = between(0.8, 4.0, self._seed, self.index, 0x77)
        if self.degradation is not None:
            rtt *= self.degradation.latency_factor
        return rtt

    def rtt_samples(self, t: float, target: int, count: int) -> list[float]:
        """RTTs (ms) that `ping` reports: base latency, a slow swing and per-probe jitter."""
        base = self.base_rtt_ms() * (1.0 + 0.1 * unit(self._seed, self.index, target, 0x78))
        swing = 1.0 + 0.15 * math.sin(_TAU * t / 1800.0 + unit(self._seed, self.index, 0x79) * 6)
        second = int(t)
        return [base * swing * (1.0 + 0.3 * unit(self._seed, self.index, second, i, 0x7A))
                for i in range(count)]

    # -- interfaces ------------------------------------------------------------------------
    def _link(self, port: int, direction: int) -> _Link:
        throughput = self.degradation.throughput_factor if self.degradation else 1.0
        errors = self.degradation.error_factor if self.degradation else 0.0
        return _link(self._seed, self.index, port, direction, self.speed_bps, throughput,
                     errors)

    def error_ratio(self, port: int) -> float:
        return self._link(port, 0).error_ratio

    def counters(self, port: int, direction: int, t: float) -> Counters:
        """Counters since boot and rates over the last RATE_WINDOW seconds (direction 0=in)."""
        link = self._link(port, direction)
        wave, size = link.wave, link.packet_size
        t = max(t, self.boot + 1.0)
        octets = wave.integral(self.boot, t)
        start = max(self.boot, t - self.RATE_WINDOW)
        window_octets = wave.integral(start, t)
        packets = octets / size
        # Output errors are rarer than input errors (CRC, runts) on real links.
        share = 1.0 if direction == 0 else 0.1
        errors = int(packets * link.error_ratio * share)
        span = t - start
        return Counters(
            octets=int(octets),
            packets=int(packets),
            errors=errors,
            bps=int(window_octets * 8 / span),
            pps=int(window_octets / size / span),
        )
