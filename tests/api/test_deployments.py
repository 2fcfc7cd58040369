"""Deployments through the API against the simulator over real SSH, on SQLite and PostgreSQL:
create and converge, failures and retry, updates that coalesce, drift, delete while
provisioning, a planner restart that resumes, bad input, and the root paths."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from netfleet.services.deployments import DeploymentService
from tests.api.conftest import ServerThread
from tests.api.test_telemetry import fast_default, until
from tests.conftest import RunningSim

TEMPLATE = ("interface GigabitEthernet1/0/1\n"
            " description {{ deployment.name }} node {{ node.ordinal }} gen {{ node.generation }}\n"
            "ntp server {{ ntp }}\n")
UPLINK = "GigabitEthernet1/0/1"


@pytest.fixture
def deploy(api: ServerThread, sim: RunningSim) -> Iterator[ServerThread]:
    """The API with the simulator provider pointed at the test simulator's control API."""
    service = api.services.deployments
    provider: Any = service.providers["simulator"]
    saved = provider.url, provider.delay, provider.spread, service.retry_base, service.tick
    api.call(provider.close())
    provider.url = sim.control()
    provider.delay, provider.spread, service.retry_base, service.tick = 0.05, 0.2, 0.1, 0.5
    yield api
    api.call(service.reset())
    api.call(provider.close())
    provider.url, provider.delay, provider.spread, service.retry_base, service.tick = saved


def create(client: httpx.Client, **body: Any) -> dict[str, Any]:
    body = {"name": "edge", "target_node_count": 4, "config_template": TEMPLATE,
            "vars": {"ntp": "192.0.2.123"}, **body}
    response = client.post("/deployments", json=body)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def converged(client: httpx.Client, deployment_id: str, status: str = "ready",
              timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        got: dict[str, Any] = client.get(f"/deployments/{deployment_id}").json()
        return got if got["status"] == status else None

    found: dict[str, Any] = until(check, timeout=timeout,
                                  what=f"deployment {deployment_id} {status}")
    return found


def device_of(sim: RunningSim, name: str) -> Any:
    return sim.run(lambda: sim.server.devices[name])


def ntp_servers(sim: RunningSim, name: str) -> list[str]:
    return list(sim.run(lambda: sim.server.devices[name].running.ntp_servers))


def description(sim: RunningSim, name: str) -> str:
    return str(sim.run(lambda: sim.server.devices[name].running.interfaces[UPLINK].description))


def test_a_deployment_converges_every_node_configured_over_ssh_and_polled(
        deploy: ServerThread, sim: RunningSim) -> None:
    with deploy.client("operator") as operator, deploy.client("admin") as admin:
        fast_default(admin, "cisco_ios", where=[])  # polls nothing until nodes run
        made = create(operator, telemetry_profile="cisco_ios-fast")
        assert made["status"] == "pending" and made["node_counts"] == {"pending": 4}
        assert (made["target_generation"], made["observed_generation"]) == (1, 0)

        done = converged(operator, made["id"])
        assert done["node_counts"] == {"running": 4} and done["current_node_count"] == 4
        assert done["observed_generation"] == 1
        nodes = operator.get(f"/deployments/{made['id']}/nodes").json()
        assert [n["ordinal"] for n in nodes] == [0, 1, 2, 3]
        for node in nodes:
            assert node["ip_address"].startswith("127.") and node["hostname"]
            # Configured for real: the simulated device holds the rendered lines.
            assert description(sim, node["device"]) == f"edge node {node['ordinal']} gen 1"
            assert "192.0.2.123" in ntp_servers(sim, node["device"])

        # Every transition is in the audit log, in order, for every node.
        events = operator.get(f"/deployments/{made['id']}/events", params={"limit": 500}).json()
        assert events[0]["kind"] == "deployment.created"
        for node in nodes:
            steps = [(e["from_state"], e["to_state"]) for e in events
                     if e["node_id"] == node["id"] and e["kind"] == "node.transition"]
            assert steps == [("pending", "provisioning"), ("provisioning", "configuring"),
                             ("configuring", "running")]

        # Running means polled: the nodes' CPU arrives through the deployment's profile.
        def polled() -> list[dict[str, Any]] | None:
            found = operator.get(f"/deployments/{made['id']}/telemetry",
                                 params={"limit": 50}).json()
            return found if {r["node_id"] for r in found} == {n["id"] for n in nodes} else None

        until(polled, timeout=30, what="telemetry from every node")
        # The same deployment at the root path, as the orchestrator API's clients ask.
        root = httpx.get(f"{deploy.url}/deployments/{made['id']}",
                         headers=operator.headers).json()
        assert root["id"] == made["id"] and root["status"] == "ready"


def test_a_node_that_keeps_failing_is_failed_with_the_reason_and_a_retry_recovers_it(
        deploy: ServerThread, sim: RunningSim) -> None:
    with deploy.client("operator") as operator:
        made = create(operator, target_node_count=3,
                      config_template=TEMPLATE + "{% if node.ordinal == 1 %}"
                                                 "ntp server {{ ntp }} prefer{% endif %}\n")
        done = converged(operator, made["id"], status="degraded")
        assert done["node_counts"] == {"running": 2, "failed": 1}
        [bad] = [n for n in operator.get(f"/deployments/{made['id']}/nodes").json()
                 if n["state"] == "failed"]
        assert bad["ordinal"] == 1
        assert "configuring failed 3 times" in bad["reason"] and "rejected" in bad["reason"]
        assert bad["attempts"] == 3

        # Fix the template (a new generation), then retry the failed node.
        fixed = operator.patch(f"/deployments/{made['id']}", json={"config_template": TEMPLATE})
        assert fixed.status_code == 200 and fixed.json()["target_generation"] == 2
        retried = operator.post(f"/deployments/{made['id']}/nodes/{bad['id']}/retry")
        assert retried.status_code == 200 and retried.json()["state"] == "pending"
        again = converged(operator, made["id"])
        assert again["observed_generation"] == 2 and again["node_counts"] == {"running": 3}
        # Retrying a node that is not failed is refused, naming the field.
        refused = operator.post(f"/deployments/{made['id']}/nodes/{bad['id']}/retry")
        assert refused.status_code == 422 and "node_id" in refused.text


def test_rapid_updates_coalesce_and_the_newest_generation_wins_on_every_node(
        deploy: ServerThread, sim: RunningSim) -> None:
    with deploy.client("operator") as operator:
        made = create(operator, target_node_count=3)
        converged(operator, made["id"])
        for i in range(4):
            response = operator.patch(f"/deployments/{made['id']}",
                                      json={"vars": {"ntp": f"192.0.2.{200 + i}"}})
            assert response.status_code == 200
        assert response.json()["target_generation"] == 5
        assert response.json()["status"] == "pending"  # until every node observes 5
        done = converged(operator, made["id"])
        assert done["observed_generation"] == 5
        nodes = operator.get(f"/deployments/{made['id']}/nodes").json()
        events = operator.get(f"/deployments/{made['id']}/events", params={"limit": 500}).json()
        for node in nodes:
            assert description(sim, node["device"]) == f"edge node {node['ordinal']} gen 5"
            applied = [int(e["reason"].split()[2]) for e in events
                       if e["node_id"] == node["id"] and e["kind"] == "node.applied"]
            # Coalesced: fewer applies than updates, never an older generation after a newer.
            assert applied == sorted(applied) and applied[-1] == 5 and len(applied) <= 4


def test_drift_is_found_reported_and_remediated(deploy: ServerThread, sim: RunningSim) -> None:
    with deploy.client("operator") as operator:
        made = create(operator, target_node_count=2, remediate=True)
        converged(operator, made["id"])
        nodes = operator.get(f"/deployments/{made['id']}/nodes").json()
        tampered = nodes[0]

        def tamper() -> None:
            sim.server.devices[tampered["device"]].running.interfaces[UPLINK].description = "x"

        sim.run(tamper)
        service: DeploymentService = deploy.services.deployments
        assert deploy.call(service.check_drift()) == 1
        events = operator.get(f"/deployments/{made['id']}/events", params={"limit": 500}).json()
        [drift] = [e for e in events if e["kind"] == "node.drift"]
        assert drift["node_id"] == tampered["id"] and "description" in drift["reason"]
        # remediate: the planner puts the desired config back.
        until(lambda: description(sim, tampered["device"]) == "edge node 0 gen 1",
              what="the drifted node re-applied")
        node = until(lambda: next(n for n in operator.get(
            f"/deployments/{made['id']}/nodes").json()
            if n["id"] == tampered["id"] and not n["drift"]), what="drift cleared")
        assert node["state"] == "running"
        assert description(sim, nodes[1]["device"]) == "edge node 1 gen 1"  # left alone


def test_deleting_while_provisioning_releases_every_node_and_keeps_the_log(
        deploy: ServerThread, sim: RunningSim) -> None:
    provider: Any = deploy.services.deployments.providers["simulator"]
    provider.delay, provider.spread = 1.0, 1.0  # deleted mid-way through provisioning
    before = set(sim.run(lambda: list(sim.server.devices)))
    with deploy.client("operator") as operator, deploy.client("admin") as admin:
        made = create(operator, target_node_count=6)
        until(lambda: operator.get(f"/deployments/{made['id']}").json()["node_counts"]
              .get("provisioning"), what="nodes provisioning")
        assert operator.delete(f"/deployments/{made['id']}").status_code == 204
        until(lambda: operator.get(f"/deployments/{made['id']}").status_code == 404,
              what="the deployment gone")
        # Every simulated device it made is released, and nothing is left in the inventory.
        assert set(sim.run(lambda: list(sim.server.devices))) == before
        tag = f"deployment-{made['id'][:8]}"
        assert admin.get("/devices", params={"where": f"tag={tag}"}).json()["devices"] == []
        events = operator.get(f"/deployments/{made['id']}/events", params={"limit": 500}).json()
        assert events[0]["kind"] == "deployment.created"
        assert events[-1]["kind"] == "deployment.deleted"  # the log outlives the deployment
        assert operator.get("/deployments/no-such-id/events").status_code == 404


def test_a_restarted_planner_resumes_every_deployment_from_the_database(
        deploy: ServerThread, sim: RunningSim) -> None:
    service: DeploymentService = deploy.services.deployments
    provider: Any = service.providers["simulator"]
    # Provisioning times spread over 5 s, so a reset at the first running node finds the
    # others still under way (all five within a fraction of a second is ~1 in 10^4).
    provider.delay, provider.spread = 0.3, 5.0
    with deploy.client("operator") as operator:
        made = create(operator, target_node_count=5)
        until(lambda: operator.get(f"/deployments/{made['id']}").json()["node_counts"]
              .get("running", 0) >= 1, what="a first node running")
        deploy.call(service.reset())  # the controller stops mid-way …
        mid = operator.get(f"/deployments/{made['id']}").json()
        assert mid["status"] == "pending"
        assert deploy.call(service_start(service)) == 1  # … and comes back
        done = converged(operator, made["id"])
        assert done["node_counts"] == {"running": 5}
        events = operator.get(f"/deployments/{made['id']}/events", params={"limit": 500}).json()
        for node in operator.get(f"/deployments/{made['id']}/nodes").json():
            steps = [e["to_state"] for e in events
                     if e["node_id"] == node["id"] and e["kind"] == "node.transition"]
            assert steps == ["provisioning", "configuring", "running"]  # none twice, none lost


async def service_start(service: DeploymentService) -> int:
    for task in (service._drift, service._telemetry_task):
        if task is not None:
            task.cancel()
    await asyncio.sleep(0)
    return await service.start()


@pytest.mark.parametrize(("body", "field"), [
    ({"target_node_count": 0}, "target_node_count"),
    ({"target_node_count": 10_001}, "target_node_count"),
    ({"name": ""}, "name"),
    ({"provider": "cloud"}, "provider"),
    ({"config_template": "ntp server {{ missing }}"}, "config_template"),
    ({"config_template": "{% if %}"}, "config_template"),
    ({"telemetry_profile": "no-such-profile"}, "telemetry_profile"),
    ({"provider": "inventory"}, "options.where"),
])
def test_bad_input_is_a_422_naming_the_field_and_nothing_is_created(
        deploy: ServerThread, body: dict[str, Any], field: str) -> None:
    with deploy.client("operator") as operator:
        response = operator.post("/deployments", json={
            "name": "edge", "target_node_count": 2, "config_template": TEMPLATE,
            "vars": {"ntp": "192.0.2.1"}, **body})
        assert response.status_code == 422, response.text
        assert field in response.text
        assert operator.get("/deployments").json() == []


def test_a_hung_device_blocks_neither_other_deployments_nor_the_api_and_is_flagged(
        deploy: ServerThread, sim: RunningSim) -> None:
    service: DeploymentService = deploy.services.deployments
    saved = service.stuck_after
    service.stuck_after = 1.0

    def hang(pattern: str | None) -> None:
        sim.server.fleet_faults.hang_pattern = pattern

    sim.run(lambda: hang(r"^ntp server 192\.0\.2\.77$"))  # configuring this never returns
    try:
        with deploy.client("operator") as operator:
            hung = create(operator, name="hung", target_node_count=1,
                          vars={"ntp": "192.0.2.77"})
            until(lambda: operator.get(f"/deployments/{hung['id']}").json()["node_counts"]
                  .get("configuring"), what="the hung node configuring")
            fine = create(operator, name="fine", target_node_count=2)
            converged(operator, fine["id"])  # not held up by the other one

            def flagged() -> dict[str, Any] | None:
                response = httpx.get(f"{deploy.url}/ready")
                body: dict[str, Any] = response.json()
                return body if response.status_code == 503 else None

            ready = until(flagged, what="/ready degraded")
            assert ready["status"] == "degraded"
            assert [s["deployment"] for s in ready["deployments"]["stuck"]] == [hung["id"]]
            metrics = {m.name: m for m in text_string_to_metric_families(
                httpx.get(f"{deploy.url}/metrics").text)}
            assert metrics["netfleet_deployment_planners_stuck"].samples[0].value == 1
            assert metrics["netfleet_node_transitions"].samples[0].value >= 6
    finally:
        sim.run(lambda: hang(None))
        service.stuck_after = saved


def test_scaling_up_adds_nodes_and_scaling_down_releases_the_last_ones(
        deploy: ServerThread, sim: RunningSim) -> None:
    with deploy.client("operator") as operator:
        made = create(operator, target_node_count=2)
        converged(operator, made["id"])
        up = operator.post(f"/deployments/{made['id']}/scale", json={"target_node_count": 4})
        assert up.status_code == 200 and up.json()["target_node_count"] == 4
        converged(operator, made["id"])
        nodes = operator.get(f"/deployments/{made['id']}/nodes").json()
        assert [n["ordinal"] for n in nodes] == [0, 1, 2, 3]
        assert {n["state"] for n in nodes} == {"running"}

        down = operator.patch(f"/deployments/{made['id']}", json={"target_node_count": 1})
        assert down.status_code == 200
        done = until(lambda: (d := operator.get(f"/deployments/{made['id']}").json())
                     ["current_node_count"] == 1 and d, what="scaled down to one node")
        assert done["status"] == "ready"
        [kept] = operator.get(f"/deployments/{made['id']}/nodes").json()
        assert kept["ordinal"] == 0
        released = {n["device"] for n in nodes[1:]}
        assert released.isdisjoint(sim.run(lambda: set(sim.server.devices)))
        events = operator.get(f"/deployments/{made['id']}/events", params={"limit": 500}).json()
        assert sorted(e["node_id"] for e in events if e["kind"] == "node.removed") == sorted(
            n["id"] for n in nodes[1:])
