"""Bottleneck detection on hand-made peer groups: both methods, orientation, floors, order."""

from __future__ import annotations

import math
import re

import pytest

from netfleet.analytics import DeviceValues, Method, detect
from netfleet.domain.errors import InvalidInput


def healthy(count: int, start: int = 0) -> list[DeviceValues]:
    """Peers that differ a little from one another, as real ones do."""
    return [DeviceValues(f"sw-{i:02d}", {"latency_ms": 2.0 + 0.05 * (i % 7),
                                         "throughput_bps": 1e9 * (1.0 + 0.02 * (i % 5)),
                                         "error_rate": 0.0001 * (1 + i % 3)})
            for i in range(start, start + count)]


def device(name: str, **values: float) -> DeviceValues:
    base = {"latency_ms": 2.1, "throughput_bps": 1.04e9, "error_rate": 0.0002}
    return DeviceValues(name, base | values)


@pytest.mark.parametrize("method", list(Method))
def test_a_slow_device_is_flagged_with_latency_as_the_reason(method: Method) -> None:
    found = detect([*healthy(12), device("slow", latency_ms=20.0)], method)

    assert [b.device for b in found] == ["slow"]
    assert found[0].reason.startswith("latency ")
    assert found[0].reason.endswith("σ above peers")
    assert found[0].metrics["latency_ms"].z >= 2


@pytest.mark.parametrize("method", list(Method))
def test_low_throughput_is_flagged_as_below_peers(method: Method) -> None:
    found = detect([*healthy(12), device("starved", throughput_bps=1e8)], method)

    assert [b.device for b in found] == ["starved"]
    assert re.fullmatch(r"throughput [\d.]+σ below peers", found[0].reason)
    assert found[0].metrics["throughput_bps"].z >= 2


@pytest.mark.parametrize("method", list(Method))
def test_high_throughput_and_low_latency_are_not_bottlenecks(method: Method) -> None:
    found = detect([*healthy(12), device("busy", throughput_bps=5e9),
                    device("near", latency_ms=0.2)], method)

    assert found == []


REASON = re.compile(r"(latency|throughput|error rate) ([\d.]+)σ (above|below) peers")


def test_every_bad_metric_is_in_the_reason_the_worst_first() -> None:
    found = detect([*healthy(12), device("bad", latency_ms=6.0, throughput_bps=1e8,
                                         error_rate=0.5)])

    parts = [REASON.fullmatch(p) for p in found[0].reason.split("; ")]
    assert all(parts)
    named = {m[1]: (float(m[2]), m[3]) for m in parts if m}
    assert {k: side for k, (_, side) in named.items()} == {
        "latency": "above", "throughput": "below", "error rate": "above"}
    zs = [float(m[2]) for m in parts if m]
    assert zs == sorted(zs, reverse=True)
    assert named["latency"][0] == pytest.approx(found[0].metrics["latency_ms"].z, abs=0.05)


def test_the_score_weighs_the_worse_side_of_each_metric_only() -> None:
    # Fast and busy (negative z on both) must not offset its error rate.
    found = detect([*healthy(12), device("odd", latency_ms=0.5, throughput_bps=5e9,
                                         error_rate=0.01)])

    (odd,) = found
    z = {m: s.z for m, s in odd.metrics.items()}
    assert z["latency_ms"] < 0 and z["throughput_bps"] < 0
    assert odd.score == pytest.approx(0.2 * z["error_rate"])
    assert odd.reason.startswith("error rate ")


def test_robust_finds_every_degraded_device_when_a_fifth_are_and_zscore_is_masked() -> None:
    degraded = [device(f"bad-{i}", latency_ms=ms) for i, ms in enumerate((10, 12, 14, 16))]
    fleet = healthy(16) + degraded

    robust = {b.device for b in detect(fleet, Method.ROBUST)}
    classic = {b.device for b in detect(fleet, Method.ZSCORE)}

    assert robust == {d.device for d in degraded}
    # The four pull the mean up and the deviation out, so the milder ones look normal.
    assert classic < robust
    assert "bad-0" not in classic


def test_errors_among_error_free_peers_are_flagged_and_float_noise_is_not() -> None:
    clean = [DeviceValues(f"sw-{i}", {"latency_ms": 2.0, "throughput_bps": 1e9,
                                      "error_rate": 0.0}) for i in range(10)]
    fleet = [*clean, DeviceValues("crc", {"latency_ms": 2.0, "throughput_bps": 1e9,
                                          "error_rate": 0.05}),
             DeviceValues("noise", {"latency_ms": 2.0 + 1e-12, "throughput_bps": 1e9 - 1e-3,
                                    "error_rate": 1e-12})]

    for method in Method:
        found = detect(fleet, method)
        assert [b.device for b in found] == ["crc"]
        assert found[0].reason.startswith("error rate ")
        assert all(math.isfinite(s.z) for s in found[0].metrics.values())


def test_a_metric_with_fewer_than_min_peers_devices_is_not_judged() -> None:
    fleet = [DeviceValues(f"sw-{i}", {"latency_ms": 2.0 + 0.1 * i}) for i in range(8)]
    fleet[0] = DeviceValues("sw-0", {"latency_ms": 2.0, "error_rate": 0.0})
    fleet[1] = DeviceValues("sw-1", {"latency_ms": 2.1, "error_rate": 0.0})
    fleet.append(DeviceValues("lossy", {"latency_ms": 2.3, "error_rate": 40.0}))

    assert detect(fleet, min_peers=5) == []  # three devices report errors: no judgement
    assert [b.device for b in detect(fleet, min_peers=3)] == ["lossy"]


def test_a_fleet_smaller_than_min_peers_has_no_bottlenecks() -> None:
    fleet = [*healthy(3), device("slow", latency_ms=50.0)]

    assert detect(fleet) == []
    assert [b.device for b in detect(fleet, min_peers=4)] == ["slow"]


def test_flagged_devices_come_most_deviant_first() -> None:
    fleet = [device("a", latency_ms=8.0), *healthy(20), device("b", latency_ms=30.0),
             device("c", latency_ms=15.0)]

    found = detect(fleet)

    assert [b.device for b in found] == ["b", "c", "a"]
    assert [b.score for b in found] == sorted((b.score for b in found), reverse=True)


def test_a_higher_threshold_flags_fewer() -> None:
    fleet = [*healthy(20), device("a", latency_ms=4.0), device("b", latency_ms=30.0)]

    assert {b.device for b in detect(fleet, threshold=2)} == {"a", "b"}
    assert {b.device for b in detect(fleet, threshold=50)} == {"b"}


def test_values_that_are_not_numbers_are_not_judged() -> None:
    fleet = [*healthy(10), device("broken", latency_ms=math.nan, error_rate=math.inf)]

    assert detect(fleet) == []


def test_method_names_are_accepted_as_strings_and_wrong_input_is_refused() -> None:
    fleet = [*healthy(10), device("slow", latency_ms=20.0)]

    assert [b.device for b in detect(fleet, "zscore")] == ["slow"]
    with pytest.raises(InvalidInput, match="unknown method"):
        detect(fleet, "median")
    with pytest.raises(InvalidInput, match="threshold"):
        detect(fleet, threshold=0)
    with pytest.raises(InvalidInput, match="min_peers"):
        detect(fleet, min_peers=1)
