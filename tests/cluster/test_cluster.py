"""Two controllers and two agents on the machine's Redis and PostgreSQL, driven over HTTP."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from datetime import datetime
from typing import Any

import httpx

from tests.api.conftest import register
from tests.cluster.conftest import LEASE_TTL, Cluster, until
from tests.conftest import RunningSim
from tests.services.test_webhooks import Receiver, serving


def job(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def finished(client: httpx.Client, job_id: str, wait: float = 30) -> dict[str, Any]:
    response = client.get(f"/jobs/{job_id}", params={"wait": wait})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] not in ("queued", "running"), body
    return body


def test_either_controller_takes_a_job_and_either_answers_it(
        cluster: Cluster, sim: RunningSim) -> None:
    with cluster.client(0) as first, cluster.client(1) as second:
        devices = register(first, sim, "cisco_ios", 4)
        listed = second.get("/devices", params={"limit": 1000}).json()["devices"]
        assert {d["name"] for d in listed} >= {d.name for d in devices}
        # Devices land in partitions owned by both agents.
        assert {cluster.owner_of(d.name) for d in devices} <= {"agent-a", "agent-b"}
        job_id = job(second, {"kind": "command", "where": [f"name={d.name}" for d in
                                                            devices[:1]],
                              "commands": ["show version"]})
        done = finished(first, job_id)
        assert done["status"] == "succeeded", done
        [result] = done["results"]
        assert "Cisco IOS" in result["outputs"][0]["output"]
        assert result["attempt"] == 1
        # A job over all four devices, whichever agents own them.
        everyone = job(first, {"kind": "command", "where": ["platform=cisco_ios"],
                               "commands": ["show clock"]})
        done = finished(second, everyone)
        assert done["status"] == "succeeded"
        assert len(done["results"]) >= 4


def test_config_jobs_to_one_device_run_in_submission_order_across_controllers(
        cluster: Cluster, sim: RunningSim) -> None:
    with cluster.client(0) as first, cluster.client(1) as second:
        [device] = register(first, sim, "cisco_ios", 1)
        ids = []
        for i in range(8):
            client = (first, second)[i % 2]
            ids.append(job(client, {"kind": "config", "device": device.name,
                                    "lines": [f"interface Loopback{i}",
                                              f" description order-{i}"]}))
        results = [finished(first, i)["results"][0] for i in ids]
        assert all(r["status"] == "succeeded" for r in results), results
        for before, after in itertools.pairwise(results):
            assert _at(after["started_at"]) >= _at(before["finished_at"]), (before, after)
        running = finished(second, job(second, {"kind": "command", "device": device.name,
                                                "commands": ["show running-config"]}))
        text = running["results"][0]["outputs"][0]["output"]
        assert all(f"description order-{i}" in text for i in range(8))


def test_telemetry_is_polled_by_agents_and_stored_by_controllers(
        cluster: Cluster, sim: RunningSim) -> None:
    with cluster.client(0) as first, cluster.client(1) as second:
        devices = register(first, sim, "arista_eos", 3, tags=["cluster-polled"])
        builtin = first.get("/telemetry/profiles/arista_eos-default").json()["profile"]
        created = second.post("/telemetry/profiles", json={
            "profile": {**builtin, "name": "arista-cluster", "interval": 1.0},
            "where": ["tag=cluster-polled"]})
        assert created.status_code == 201, created.text

        def stored(name: str) -> int:
            points = first.get("/telemetry", params={"device": name,
                                                     "metric": "cpu_percent"}).json()["points"]
            return len(points)

        until(lambda: all(stored(d.name) >= 2 for d in devices), timeout=40,
              what="two stored cpu samples per device, polled by the agents")
        # Either controller knows every device's newest values, whichever recorded them.
        for client in (first, second):
            rows = client.get("/telemetry/latest", params={
                "where": "tag=cluster-polled", "metric": "cpu_percent"}).json()["latest"]
            assert {r["device"] for r in rows} == {d.name for d in devices}, rows
            assert not any(r["stale"] for r in rows)


def test_an_agent_killed_mid_job_hands_its_partitions_over_and_the_job_runs_again(
        cluster: Cluster, sim: RunningSim) -> None:
    with cluster.client(0) as first, cluster.client(1) as second:
        devices = register(first, sim, "cisco_ios", 6)
        victim = cluster.owner_of(devices[0].name)
        assert victim is not None
        slow = devices[0]
        sim.set_faults(slow, command_delay=3.0)
        running_job = job(first, {"kind": "command", "device": slow.name,
                                  "commands": ["show version"], "timeout": 60})
        until(lambda: second.get(f"/jobs/{running_job}").json()["results"][0]["status"]
              == "running", what="the slow job running on its agent")
        mine = [d for d in devices if cluster.owner_of(d.name) == victim]
        cluster.agents[victim].kill()
        killed = time.monotonic()
        # Accepted while the owner is dead: queued in Redis, run by the next owner.
        queued = [job(second, {"kind": "config", "device": d.name,
                               "lines": ["interface Loopback77", " description after-kill"]})
                  for d in mine]
        survivor = next(a for a in cluster.agents if a != victim)
        until(lambda: cluster.owner_of(slow.name) == survivor, timeout=LEASE_TTL + 10,
              what="the dead agent's partition owned again")
        assert time.monotonic() - killed <= LEASE_TTL + 5
        done = finished(second, running_job, wait=60)
        assert done["status"] == "succeeded", done
        assert done["results"][0]["attempt"] == 2  # run again by the new owner
        for job_id in queued:
            assert finished(first, job_id)["status"] == "succeeded"
        # The agent comes back: it takes its share of partitions again.
        sim.set_faults(slow, command_delay=0.0)
        cluster.start_agent(victim)
        until(cluster.ready, timeout=30, what="both agents owning partitions again")


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_every_job_fires_its_webhook_once_whichever_controller_records_it(
        cluster: Cluster, sim: RunningSim) -> None:
    with cluster.client(0) as admin:
        devices = register(admin, sim, "cisco_ios", 8)
    receiver = Receiver()
    async with serving(receiver) as url, httpx.AsyncClient(
            base_url=cluster.controllers[0][1] + "/api/v1", timeout=60,
            headers={"X-API-Key": cluster.token}) as client:
        ids = set()
        for d in devices:  # partitions recorded by both controllers
            response = await client.post("/jobs", json={
                "kind": "command", "device": d.name, "commands": ["show clock"],
                "webhook": url})
            assert response.status_code == 202, response.text
            ids.add(response.json()["id"])
        deadline = time.monotonic() + 30
        while len(receiver.seen) < len(ids) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # a second firing would come within the watch's period
    events = [json.loads(body) for _, body in receiver.seen]
    assert sorted(e["data"]["id"] for e in events) == sorted(ids)
    assert all(e["event"] == "job.finished" and e["data"]["status"] == "succeeded"
               for e in events)


def test_a_deployment_is_planned_by_the_leading_controller_and_converges(
        cluster: Cluster, sim: RunningSim) -> None:
    template = ("interface GigabitEthernet1/0/1\n"
                " description {{ deployment.name }} node {{ node.ordinal }}\n")
    with cluster.client(0) as first, cluster.client(1) as second:
        leaders = [httpx.get(url + "/ready", timeout=10).json()["backend"]["leads_planners"]
                   for _, url in cluster.controllers]
        assert sorted(leaders) == [False, True]  # exactly one controller plans
        made = second.post("/deployments", json={
            "name": "cluster-edge", "target_node_count": 3, "config_template": template})
        assert made.status_code == 201, made.text
        deployment = made.json()["id"]

        def ready() -> dict[str, Any] | None:
            found: dict[str, Any] = first.get(f"/deployments/{deployment}").json()
            return found if found["status"] == "ready" else None

        done = until(ready, timeout=60, what="the deployment ready")
        assert done is not None and done["node_counts"] == {"running": 3}
        nodes = second.get(f"/deployments/{deployment}/nodes").json()
        for node in nodes:  # configured over SSH by the agents
            devices = sim.run(lambda: dict(sim.server.devices))
            text = devices[node["device"]].running.interfaces["GigabitEthernet1/0/1"].description
            assert text == f"cluster-edge node {node['ordinal']}"
