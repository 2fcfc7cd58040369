"""Bottleneck detection: which devices are markedly worse than their peers over a window, and
by how much on each metric. Pure: it works on per-device means that the store computes in SQL.

Each judged metric becomes a z-score oriented so that positive is worse (latency and error
rate above the peers, throughput below them):

    z = (value - baseline) / spread        for metrics where higher is worse
    z = (baseline - value) / spread        for metrics where lower is worse

A device is flagged when any z reaches the threshold. Its score weighs the positive parts,
0.4·z_latency + 0.4·z_throughput + 0.2·z_error_rate, and flagged devices come most deviant first.

Two ways to get the baseline and spread of the peers (every device given is a peer; narrow
them with a selector, e.g. one site or platform, for a like-for-like comparison):

- `zscore`, the classic rule: mean and population standard deviation. Outliers pull the mean
  towards them and inflate the deviation, so when many devices are degraded at once they hide
  each other (with a fifth of the fleet equally bad, their z cannot exceed 2).
- `robust`, the default: median and MAD × 1.4826 (the MAD scaled to equal the standard
  deviation on normal data). Both ignore up to half the devices being outliers.

The spread is never taken as smaller than a floor (see `Rule.floor` and RELATIVE_FLOOR), so
that near-identical peers (a spread of 0, e.g. no errors anywhere) make neither float noise
a bottleneck nor real trouble a division by zero.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from netfleet.domain.errors import InvalidInput

# The MAD of normally distributed data times this is its standard deviation, so a robust z
# reads on the same scale as a classic one.
MAD_TO_SIGMA = 1.4826

# A spread is at least this fraction of the baseline: at threshold 2, peers that all sit at
# 10 ms make 11 ms unremarkable, however tightly they agree (the device must be 10% off).
RELATIVE_FLOOR = 0.05


class Method(StrEnum):
    ROBUST = "robust"
    ZSCORE = "zscore"


@dataclass(frozen=True, slots=True)
class Rule:
    """How one metric is judged."""

    metric: str
    label: str  # in reasons: "latency 4.2σ above peers"
    higher_is_worse: bool
    weight: float
    # The smallest spread, in the metric's unit: the least difference from the peers that is
    # real rather than measurement noise is `threshold × floor`.
    floor: float


RULES: tuple[Rule, ...] = (
    Rule("latency_ms", "latency", higher_is_worse=True, weight=0.4, floor=0.1),
    Rule("throughput_bps", "throughput", higher_is_worse=False, weight=0.4, floor=1e6),
    # Percent. 0.001 is one error in 100,000 packets: at threshold 2 a device needs two more
    # per 100,000 than its peers. Healthy links sit far below that (~1 in a million), so
    # their scatter is not taken for trouble, while a link that really drops frames (1 in
    # 10,000 or worse) stands out by an order of magnitude even among error-free peers.
    Rule("error_rate", "error rate", higher_is_worse=True, weight=0.2, floor=0.001),
)


class Aggregate(Protocol):
    """One device's means over the window, by metric (store.aggregates.DeviceAggregate is
    one). A metric it has no value for is not judged for it."""

    @property
    def device(self) -> str: ...

    @property
    def values(self) -> Mapping[str, float]: ...


@dataclass(frozen=True, slots=True)
class DeviceValues:
    """A plain Aggregate, for callers that do not read from the store."""

    device: str
    values: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MetricScore:
    metric: str
    value: float
    baseline: float  # the peers' median (robust) or mean (zscore)
    spread: float  # the peers' scaled MAD or standard deviation, after the floor
    z: float  # oriented: positive is worse


@dataclass(frozen=True, slots=True)
class Bottleneck:
    device: str
    score: float
    metrics: dict[str, MetricScore]  # every metric judged for this device
    reason: str  # "latency 4.2σ above peers; throughput 3.1σ below peers"


@dataclass(frozen=True, slots=True)
class _Peers:
    baseline: float
    spread: float


def detect(aggregates: Sequence[Aggregate], method: Method | str = Method.ROBUST,
           threshold: float = 2.0, min_peers: int = 5) -> list[Bottleneck]:
    """The devices with a metric at least `threshold` (oriented) z away from their peers,
    highest score first.

    A metric is judged only when at least `min_peers` devices have a finite value for it:
    with fewer, neither a mean nor a median says what normal is, so the metric is skipped for
    everyone (and a fleet smaller than `min_peers` gets no bottlenecks at all).
    """
    method = _method(method)
    if not threshold > 0:
        raise InvalidInput(f"threshold {threshold} is not positive", field="threshold",
                           fix="use a threshold above 0 (2 is the usual)")
    if min_peers < 2:
        raise InvalidInput(f"min_peers {min_peers} is below 2", field="min_peers",
                           fix="compare with at least 2 devices (5 or more is sensible)")
    peers: dict[str, _Peers] = {}
    for rule in RULES:
        values = [v for v in (_value(a, rule.metric) for a in aggregates) if v is not None]
        if len(values) >= min_peers:
            peers[rule.metric] = _peers(values, method, rule)
    flagged = [b for a in aggregates if (b := _judge(a, peers, threshold)) is not None]
    return sorted(flagged, key=lambda b: (-b.score, b.device))


def _method(method: Method | str) -> Method:
    try:
        return Method(method)
    except ValueError:
        raise InvalidInput(f"unknown method {method!r}", field="method",
                           fix=f"use one of {', '.join(m.value for m in Method)}") from None


def _value(aggregate: Aggregate, metric: str) -> float | None:
    """The device's value of `metric`, if it has a usable one (NaN or infinity is none)."""
    value = aggregate.values.get(metric)
    return value if value is not None and math.isfinite(value) else None


def _peers(values: Sequence[float], method: Method, rule: Rule) -> _Peers:
    if method is Method.ROBUST:
        baseline = statistics.median(values)
        spread = MAD_TO_SIGMA * statistics.median(abs(v - baseline) for v in values)
    else:
        baseline = statistics.fmean(values)
        spread = statistics.pstdev(values, baseline)
    return _Peers(baseline, max(spread, RELATIVE_FLOOR * abs(baseline), rule.floor))


def _judge(aggregate: Aggregate, peers: Mapping[str, _Peers],
           threshold: float) -> Bottleneck | None:
    scores: dict[str, MetricScore] = {}
    worst: list[tuple[float, str]] = []
    total = 0.0
    for rule in RULES:
        group = peers.get(rule.metric)
        value = _value(aggregate, rule.metric)
        if group is None or value is None:
            continue
        delta = value - group.baseline if rule.higher_is_worse else group.baseline - value
        z = delta / group.spread
        scores[rule.metric] = MetricScore(rule.metric, value, group.baseline, group.spread, z)
        total += rule.weight * max(z, 0.0)
        if z >= threshold:
            side = "above" if rule.higher_is_worse else "below"
            worst.append((z, f"{rule.label} {z:.1f}σ {side} peers"))
    if not worst:
        return None
    reason = "; ".join(text for _, text in sorted(worst, key=lambda w: -w[0]))
    return Bottleneck(aggregate.device, total, scores, reason)
