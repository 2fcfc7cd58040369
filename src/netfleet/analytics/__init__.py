"""Analytics on telemetry aggregates: pure functions, no I/O (the store computes the inputs)."""

from netfleet.analytics.bottlenecks import (
    RULES,
    Aggregate,
    Bottleneck,
    DeviceValues,
    Method,
    MetricScore,
    Rule,
    detect,
)

__all__ = ["RULES", "Aggregate", "Bottleneck", "DeviceValues", "Method", "MetricScore", "Rule",
           "detect"]
