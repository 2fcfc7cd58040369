"""`netfleet bench detect` at a small size: it reports quality per method and fraction."""

from __future__ import annotations

from netfleet.bench import detect as bench


async def test_the_benchmark_reports_precision_recall_and_f1_per_method() -> None:
    result = await bench.run(devices=200, fractions=(0.05, 0.2), window_minutes=2)

    assert result["source"] == "simulator model, not polled"
    assert [r["fraction"] for r in result["fractions"]] == [0.05, 0.2]
    for run in result["fractions"]:
        assert run["devices_aggregated"] == 200
        assert run["samples"] == 200 * 3 * 12  # three metrics every 10 s for two minutes
        assert run["truth"] > 0
        for method in ("robust", "zscore"):
            quality = run["methods"][method]
            assert 0 <= quality["precision"] <= 1 and 0 <= quality["recall"] <= 1
            assert 0 <= quality["f1"] <= 1
            assert quality["true_positives"] + quality["false_negatives"] == run["truth"]
    # The simulator's model is deterministic for a seed, so quality is too.
    high = result["fractions"][-1]["methods"]
    assert high["robust"]["f1"] >= 0.95
    assert high["robust"]["f1"] > high["zscore"]["f1"]


async def test_polled_end_to_end_the_pipeline_finds_the_degraded_devices() -> None:
    """Simulator process → SSH polls with the built-in profiles → writer → SQL → detect."""
    result = await bench.run_polled(devices=40, fractions=(0.2,), interval=1.0, polls=4)

    assert result["source"] == "polled over SSH from the simulator"
    [run] = result["fractions"]
    assert run["truth"] > 0 and run["polls_failed"] == 0 and run["samples_written"] > 0
    robust = run["methods"]["robust"]
    assert robust["devices_compared"] == 40
    assert robust["true_positives"] + robust["false_negatives"] == run["truth"]
    assert robust["recall"] == 1.0  # the simulator degrades them plainly
