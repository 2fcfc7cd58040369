"""`netfleet up` with NETFLEET_EMBEDDED=memory: one process runs work the way a cluster does
(the memory backend's partition streams, an agent and a recorder in the process), with the
same API answers as the direct path."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import ServerThread, register
from tests.api.test_jobs import submit, wait
from tests.api.test_telemetry import fast_default, until
from tests.conftest import RunningSim


@pytest.fixture
def embedded(tmp_path: Path) -> Any:
    server = ServerThread(f"sqlite:///{tmp_path / 'embedded.db'}", tmp_path / "secret.key",
                          embedded="memory", device_queue=2, lease_ttl=2.0)
    try:
        yield server
    finally:
        server.close()


def test_work_runs_through_the_in_process_agent_in_order(
        embedded: ServerThread, sim: RunningSim) -> None:
    cluster = embedded.services.cluster
    assert cluster is not None and cluster.agent is not None  # the stream path, not direct
    agent = cluster.agent
    until(lambda: len(agent.owned) == embedded.services.settings.partitions,
          what="the embedded agent owning every partition")
    with embedded.client("operator") as operator, embedded.client("admin") as admin:
        [device] = register(admin, sim, "cisco_ios")
        changes = [submit(operator, {"kind": "config", "device": device.name,
                                     "lines": ["interface Loopback5", f" description step-{i}"]})
                   ["id"] for i in range(3)]
        done = [wait(operator, job) for job in changes]
        assert [d["status"] for d in done] == ["succeeded"] * 3
        ran = [d["results"][0] for d in done]
        for before, after in itertools.pairwise(ran):
            assert after["started_at"] >= before["finished_at"]  # in submission order
        assert sim.run(lambda: device.running.interfaces["Loopback5"].description) == "step-2"
        assert agent.stats.tasks >= 3

        read = wait(operator, submit(operator, {"kind": "command", "device": device.name,
                                                "commands": ["show version"]})["id"])
        assert read["status"] == "succeeded"
        assert "Cisco IOS" in read["results"][0]["outputs"][0]["output"]


def test_full_queues_answer_429_and_samples_are_recorded(
        embedded: ServerThread, sim: RunningSim) -> None:
    with embedded.client("operator") as operator, embedded.client("admin") as admin:
        [device] = register(admin, sim, "cisco_ios", tags=["polled"])
        sim.set_faults(device, command_delay=0.5)
        body = {"kind": "config", "device": device.name, "lines": ["vlan 90"]}
        accepted = [submit(operator, body)["id"] for _ in range(3)]  # 1 running, 2 waiting
        refused = operator.post("/jobs", json=body)
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        assert all(wait(operator, job)["status"] == "succeeded" for job in accepted)
        sim.set_faults(device, command_delay=0.0)
        assert operator.post("/jobs", json=body).status_code == 202  # room again

        fast_default(admin, "cisco_ios", ["tag=polled"])

        def stored() -> list[dict[str, Any]]:
            points: list[dict[str, Any]] = operator.get("/telemetry", params={
                "device": device.name, "metric": "cpu_percent"}).json()["points"]
            return points

        until(lambda: len(stored()) >= 2, what="samples polled by the agent, recorded")
        newest = operator.get("/telemetry/latest", params={
            "device": device.name, "metric": "cpu_percent"}).json()["latest"]
        assert [(r["device"], r["stale"]) for r in newest] == [(device.name, False)]
        metrics = httpx.get(embedded.url + "/metrics").text
        assert "netfleet_observations_recorded_total" in metrics
        ready = httpx.get(embedded.url + "/ready").json()
        assert ready["backend"]["kind"] == "memory" and ready["backend"]["agents"] == 1
        assert ready["status"] == "healthy", ready["problems"]
