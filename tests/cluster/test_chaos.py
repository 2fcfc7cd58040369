"""The chaos script at a small size: agents and Redis killed (SIGKILL) under load, and what
docs/cluster.md promises still holds — every accepted job ends, a device's changes run in
the order they were accepted, no sample is stored twice."""

from __future__ import annotations

import json

import pytest

from netfleet.bench.chaos import chaos
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
