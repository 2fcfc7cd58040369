"""The chaos script at a small size: agents and Redis killed (SIGKILL) under load, and what
docs/cluster.md promises still holds — every accepted job ends, a device's changes run in
the order they were accepted, no sample is stored twice."""

from __future__ import annotations

import json
from typing import Any

import pytest

from netfleet.bench.chaos import Accepted, _check_order, chaos
from tests.conftest import PG_ADMIN


@pytest.mark.timeout(180)  # about 60 s; a job that never ends adds the 60 s settle bound
async def test_killing_agents_and_redis_under_load_loses_no_accepted_job() -> None:
    report = await chaos(devices=12, seconds=25, kills=2, seed=3,
                         postgres_admin_url=PG_ADMIN)
    print(json.dumps(report, indent=2))  # shown when the test fails: checks, traces, logs
    assert "error" not in report, report["error"]
    failed = [name for name, check in report["checks"].items() if not check["passed"]]
    assert not failed, f"checks failed: {failed} (the report is printed above)"
    assert report["passed"]
    assert len(report["kill_log"]) == 4  # two agent kills, two Redis kills
    assert report["submitted"]["accepted"] > 0


def test_the_order_check_finds_changes_at_once_across_a_rerun_between_them() -> None:
    """Change 1 runs 0-10 s; its re-run (1-2 s) sorts between it and change 2 (3-4 s), which
    ran while the first run of change 1 still did: two changes at once on one device."""
    one = Accepted("j1", "config", "r1", 1, 0)
    two = Accepted("j2", "config", "r1", 2, 0)
    details: dict[str, dict[str, Any]] = {
        "j1": {"results": [{"child": "c1", "status": "succeeded", "attempt": 2}]},
        "j2": {"results": [{"child": "c2", "status": "succeeded", "attempt": 1}]}}
    runs: dict[tuple[str, int], tuple[str, float | None, float | None]] = {
        ("c1", 1): ("succeeded", 100.0, 110.0), ("c1", 2): ("succeeded", 101.0, 102.0),
        ("c2", 1): ("succeeded", 103.0, 104.0)}
    found = _check_order([one, two], details, runs, begin=100.0)
    assert not found["passed"]
    assert [v["why"] for v in found["violation_examples"]] == ["two changes at once"]
    assert [j["id"] for j in found["violation_examples"][0]["jobs"]] == ["j1", "j2"]
    # Apart in time, the same runs pass.
    runs[("c1", 1)] = ("succeeded", 99.0, 100.5)
    assert _check_order([one, two], details, runs, begin=100.0)["passed"]
