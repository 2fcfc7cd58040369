"""Turning one poll's parsed command outputs into metric samples, per device (pure, no I/O).

The poller calls `DeviceMetrics.observe` for every poll of every device, so the work a profile
implies (field names lowered, labels ordered, maps lowered) is done once per profile in a
`ProfilePlan` shared by all devices polling it; `observe` then only walks rows and dicts.

Counters
--------
A counter's sample is its per-second rate since the previous observation of the same series
(same metric, same label values): nothing on the first observation. When a counter goes down
the rule is:

1. it wrapped at 2**32 if the previous value fit in 32 bits and the wrapped delta
   (new + 2**32 - old) is under half the 32-bit range (2**31);
2. else it wrapped at 2**64 if the wrapped delta (new + 2**64 - old) is under 2**63;
3. else the counter was reset (device reboot, `clear counters`): no sample, and the new value
   is the baseline for the next round.

"Under half the range" is what makes a wrap distinguishable at all: a counter that advanced by
more than half its range between two polls looks exactly like one that restarted from zero,
and a reset read as a wrap would report a burst of traffic that never happened. A reset of a
32-bit-sized value close to 2**32 still reads as a wrap; nothing in the counter alone tells the
two apart, and the rate it reports is bounded by 2**31 per interval.

A series that is missing from a successful output is forgotten (an interface that was
removed); a failed command (`None`) forgets nothing, so the next rate spans both intervals.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from netfleet.domain.telemetry import DerivedSpec, MetricKind, MetricSpec, Profile, Sample

__all__ = ["DeviceMetrics", "ProfilePlan", "plan_for"]

_WRAP32 = 1 << 32
_WRAP64 = 1 << 64
_PLAUSIBLE32 = 1 << 31
_PLAUSIBLE64 = 1 << 63

Labels = tuple[tuple[str, str], ...]
Number = int | float


class _Metric:
    """One MetricSpec, reduced to what `observe` reads."""

    __slots__ = ("counter", "field", "index", "label_slot", "map", "name", "offset", "scale",
                 "unit")

    def __init__(self, index: int, label_slot: int, spec: MetricSpec) -> None:
        self.index = index  # position among all metrics of the profile, for the derived sums
        self.label_slot = label_slot  # which of its command's label sets; -1: none
        self.name = spec.name
        self.field = spec.field.lower()
        self.unit = spec.unit
        self.counter = spec.kind is MetricKind.COUNTER
        self.scale = spec.scale
        self.offset = spec.offset
        self.map = ({k.strip().lower(): float(v) for k, v in spec.map.items()}
                    if spec.map is not None else None)


class _Command:
    """One command's metrics, and the distinct label sets they use.

    Metrics of one command nearly always share their labels (every per-interface metric is
    labelled by the same interface field), so a row's label values are built once per label
    set, not once per metric.
    """

    __slots__ = ("label_sets", "metrics")

    def __init__(self, metrics: tuple[_Metric, ...],
                 label_sets: tuple[tuple[tuple[str, str], ...], ...]) -> None:
        self.metrics = metrics
        # (label name, lowered field) pairs, sorted by label name: samples' labels come out
        # sorted without sorting per sample.
        self.label_sets = label_sets


class _Derived:
    __slots__ = ("index", "name", "of", "over", "ratio", "scale", "unit")

    def __init__(self, index: int, spec: DerivedSpec, names: Mapping[str, int]) -> None:
        self.index = index
        self.name = spec.name
        self.unit = spec.unit
        self.ratio = spec.op == "ratio"
        self.of = tuple(names[m] for m in spec.of)  # metric indexes
        self.over = tuple(names[m] for m in spec.over)
        self.scale = spec.scale


class ProfilePlan:
    """A profile compiled for `observe`: built once, shared by every device using the profile."""

    __slots__ = ("commands", "derived", "metric_count", "profile")

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        names: dict[str, int] = {}
        commands = []
        for command in profile.commands:
            label_sets: list[tuple[tuple[str, str], ...]] = []
            metrics = []
            for spec in command.metrics:
                slot = -1
                if spec.labels:
                    labels = tuple((label, spec.labels[label].lower())
                                   for label in sorted(spec.labels))
                    if labels not in label_sets:
                        label_sets.append(labels)
                    slot = label_sets.index(labels)
                names[spec.name] = len(names)
                metrics.append(_Metric(names[spec.name], slot, spec))
            commands.append(_Command(tuple(metrics), tuple(label_sets)))
        derived = []
        for derived_spec in profile.derived:
            derived.append(_Derived(len(names), derived_spec, names))
            names[derived_spec.name] = len(names)
        self.commands = tuple(commands)
        self.derived = tuple(derived)
        self.metric_count = len(names)


_PLANS: OrderedDict[int, tuple[Profile, ProfilePlan]] = OrderedDict()
_PLANS_LOCK = threading.Lock()
_PLANS_MAX = 1024


def plan_for(profile: Profile) -> ProfilePlan:
    """The shared plan for this profile object (a bounded cache keyed by identity).

    Profiles are frozen and unhashable (they hold lists), so the cache is keyed by `id` and
    keeps the profile itself to confirm a hit: an id reused by a new object never matches.
    """
    key = id(profile)
    with _PLANS_LOCK:
        hit = _PLANS.get(key)
        if hit is not None and hit[0] is profile:
            _PLANS.move_to_end(key)
            return hit[1]
    plan = ProfilePlan(profile)
    with _PLANS_LOCK:
        _PLANS[key] = (profile, plan)
        while len(_PLANS) > _PLANS_MAX:
            _PLANS.popitem(last=False)
    return plan


def _number(raw: Any) -> Number | None:
    """A finite number from a parsed cell, else None ("N/A", "", "-", a list...).

    Integers stay ints: 64-bit counters exceed a float's 53-bit mantissa, and a wrap or a delta
    between two of them must be exact.
    """
    if isinstance(raw, str):
        try:
            return int(raw)  # int() and float() both ignore surrounding whitespace
        except ValueError:
            pass
        try:
            value = float(raw)
        except ValueError:
            return None
        return value if math.isfinite(value) else None
    if isinstance(raw, int):  # bool included: True/False read as 1/0
        return int(raw)
    if isinstance(raw, float):
        return raw if math.isfinite(raw) else None
    return None


def _increase(old: Number, new: Number) -> Number | None:
    """How much a counter grew from old to new, across a wrap; None when it was reset."""
    delta = new - old
    if delta >= 0:
        return delta
    if old < _WRAP32:
        wrapped = delta + _WRAP32
        if wrapped < _PLAUSIBLE32:
            return wrapped
    wrapped = delta + _WRAP64
    if wrapped < _PLAUSIBLE64:
        return wrapped
    return None


def _lowered(row: dict[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in row.items()}


class DeviceMetrics:
    """One device's metric state for one profile (last counter values per series)."""

    __slots__ = ("_counters", "device", "plan", "profile")

    def __init__(self, device: str, profile: Profile | ProfilePlan) -> None:
        self.device = device
        self.plan = profile if isinstance(profile, ProfilePlan) else plan_for(profile)
        self.profile = self.plan.profile
        # Per command: counter metric index -> labels -> (ts, last raw value).
        self._counters: list[dict[int, dict[Labels, tuple[float, Number]]]] = [
            {m.index: {} for m in command.metrics if m.counter}
            for command in self.plan.commands]

    def observe(self, ts: float, parsed: Sequence[list[dict[str, Any]] | None]) -> list[Sample]:
        """Samples for one poll taken at `ts` (epoch seconds).

        parsed[i]: the parsed rows of profile.commands[i], or None if that command failed (its
        metrics are skipped this round). Gauges come out as read: a text found in `map` (else
        the number the text spells), times `scale`, plus `offset`. Counters come out as
        per-second rates, times `scale`, from the previous observation of the same series; see
        the module docstring for wraps and resets. A series appears at most once per round:
        the first row that yields it wins (tables with Filldown columns repeat device-level
        values on every row). Derived metrics come last, each only when every metric it uses
        produced a sample this round.
        A value that is not a number skips its sample; nothing here raises on device output.
        """
        commands = self.plan.commands
        if len(parsed) != len(commands):
            raise ValueError(f"profile {self.profile.name!r} has {len(commands)} commands; "
                             f"observe got {len(parsed)} outputs")
        samples: list[Sample] = []
        totals: list[float | None] | None = (
            [None] * self.plan.metric_count if self.plan.derived else None)
        for command, rows, state in zip(commands, parsed, self._counters, strict=True):
            if rows is not None:
                self._command(ts, command, rows, state, samples, totals)
        if totals is not None:
            self._derive(ts, totals, samples)
        return samples

    def _command(self, ts: float, command: _Command, rows: list[dict[str, Any]],
                 state: dict[int, dict[Labels, tuple[float, Number]]], samples: list[Sample],
                 totals: list[float | None] | None) -> None:
        device = self.device
        label_sets = command.label_sets
        fresh: dict[int, dict[Labels, tuple[float, Number]]] = {i: {} for i in state}
        unread: list[tuple[int, Labels]] = []  # counters whose row had no number this round
        gauges: set[tuple[int, Labels]] = set()
        for row in rows:
            row_labels = [_labels(row, label_set) for label_set in label_sets]
            for metric in command.metrics:
                raw = row.get(metric.field, _MISSING)
                if raw is _MISSING:
                    raw = _lowered(row).get(metric.field)
                labels: Labels = row_labels[metric.label_slot] if metric.label_slot >= 0 else ()
                value: float | None
                if metric.counter:
                    number = _number(raw)
                    if number is None:
                        unread.append((metric.index, labels))
                        continue
                    series = fresh[metric.index]
                    if labels in series:
                        continue  # the first row wins
                    series[labels] = (ts, number)
                    value = _rate(state[metric.index].get(labels), ts, number, metric.scale)
                else:
                    key = (metric.index, labels)
                    if key in gauges:
                        continue
                    value = _gauge(metric, raw)
                    if value is not None:
                        gauges.add(key)
                if value is None:
                    continue
                samples.append(Sample(device, metric.name, value, ts, labels, metric.unit))
                if totals is not None:
                    total = totals[metric.index]
                    totals[metric.index] = value if total is None else total + value
        for index, labels in unread:
            # Keep the baseline through a bad read, so the next good one still gives a rate.
            last = state[index].get(labels)
            if last is not None:
                fresh[index].setdefault(labels, last)
        # Series missing from this output are dropped: their interface is gone.
        state.update(fresh)

    def _derive(self, ts: float, totals: list[float | None], samples: list[Sample]) -> None:
        for d in self.plan.derived:
            numerator = _sum(totals, d.of)
            if numerator is None:
                continue
            if d.ratio:
                denominator = _sum(totals, d.over)
                if not denominator:  # missing, or 0
                    continue
                value = numerator / denominator * d.scale
            else:
                value = numerator * d.scale
            totals[d.index] = value  # later derived metrics may use this one
            samples.append(Sample(self.device, d.name, value, ts, (), d.unit))


_MISSING: Any = object()


def _labels(row: dict[str, Any], label_set: tuple[tuple[str, str], ...]) -> Labels:
    out = []
    for name, field in label_set:
        raw = row.get(field, _MISSING)
        if raw is _MISSING:
            raw = _lowered(row).get(field)
        out.append((name, raw.strip() if isinstance(raw, str) else _text(raw)))
    return tuple(out)


def _rate(previous: tuple[float, Number] | None, ts: float, value: Number,
          scale: float) -> float | None:
    """The per-second rate since `previous`, scaled; None on the first read, a repeated or
    out-of-order poll, or a reset."""
    if previous is None:
        return None
    last_ts, last = previous
    elapsed = ts - last_ts
    if elapsed <= 0:
        return None
    increase = _increase(last, value)
    if increase is None:
        return None
    return increase / elapsed * scale


def _sum(totals: list[float | None], indexes: tuple[int, ...]) -> float | None:
    total = 0.0
    for i in indexes:
        value = totals[i]
        if value is None:
            return None
        total += value
    return total


def _gauge(metric: _Metric, raw: Any) -> float | None:
    value: float | None = None
    if metric.map is not None and isinstance(raw, str):
        value = metric.map.get(raw.strip().lower())
    if value is None:
        number = _number(raw)
        if number is None:
            return None
        value = float(number)
    return value * metric.scale + metric.offset


def _text(raw: Any) -> str:
    if raw is None:
        return ""
    return raw.strip() if isinstance(raw, str) else str(raw)
