"""Jobs through the REST API, against the simulator over real SSH, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import httpx

from netfleet.bootstrap import webhook_secret
from netfleet.services.webhooks import verify
from tests.api.conftest import ServerThread, register
from tests.conftest import RunningSim
from tests.services.test_webhooks import Receiver, serving


def submit(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    assert response.headers["Location"].endswith(response.json()["id"])
    data: dict[str, Any] = response.json()
    return data


def wait(client: httpx.Client, job_id: str) -> dict[str, Any]:
    data: dict[str, Any] = client.get(f"/jobs/{job_id}", params={"wait": 60}).json()
    assert data["status"] not in ("queued", "running"), data
    return data


def test_bulk_command_job_answers_at_once_then_has_per_device_results(
        api: ServerThread, sim: RunningSim) -> None:
    with api.client("operator") as operator, api.client("admin") as admin:
        devices = register(admin, sim, "cisco_ios", 3, tags=["core"])
        devices += register(admin, sim, "arista_eos", 2, tags=["edge"])
        job = submit(operator, {"kind": "command", "where": ["tag=core"],
                                "commands": ["show version", "show clock"]})
        assert job["devices"] == 3 and job["status"] == "queued"
        done = wait(operator, job["id"])
    assert done["status"] == "succeeded" and done["counts"]["succeeded"] == 3
    by_name = {r["device"]: r for r in done["results"]}
    assert set(by_name) == {d.name for d in devices[:3]}
    for device in devices[:3]:
        result = by_name[device.name]
        version, clock = result["outputs"]
        assert device.os_version in version["output"]
        assert version["parsed"][0]["serial"] == [device.serial]
        assert "UTC" in clock["output"]
        assert result["started_at"] and result["finished_at"] and result["attempt"] == 1


def test_config_jobs_apply_in_order_and_reuse_the_session(
        api: ServerThread, sim: RunningSim) -> None:
    with api.client("operator") as operator, api.client("admin") as admin:
        [device] = register(admin, sim, "cisco_ios")
        ids = [submit(operator, {"kind": "config", "device": device.name,
                                 "lines": ["interface GigabitEthernet1/0/5",
                                           f"description change-{i}"]})["id"]
               for i in range(5)]
        results = [wait(operator, i)["results"][0] for i in ids]
    assert [r["status"] for r in results] == ["succeeded"] * 5
    for earlier, later in itertools.pairwise(results):
        assert later["started_at"] >= earlier["finished_at"]
    assert any(r["session_reused"] for r in results[1:])
    assert sim.run(lambda: device.running.interfaces["GigabitEthernet1/0/5"].description) \
        == "change-4"


def test_template_render_dry_run_and_save(api: ServerThread, sim: RunningSim) -> None:
    template = ("interface {{ uplink }}\n description to {{ peer }}\n"
                "{% for v in vlans %}vlan {{ v }}\n{% endfor %}")
    with api.client("operator") as operator, api.client("admin") as admin:
        [device] = register(admin, sim, "cisco_ios")
        body = {"kind": "config", "device": device.name, "template": template,
                "vars": {"uplink": "GigabitEthernet1/0/1", "peer": "core-9", "vlans": [30, 31]}}
        dry = wait(operator, submit(operator, {**body, "dry_run": True})["id"])
        assert dry["status"] == "succeeded"
        assert "+ description to core-9" in dry["results"][0]["diff"]
        assert sim.run(lambda: 30 not in device.running.vlans)  # nothing applied
        applied = wait(operator, submit(operator, {**body, "save": True})["id"])
        assert applied["status"] == "succeeded"
    assert sim.run(lambda: 30 in device.startup.vlans and 31 in device.startup.vlans)


def test_missing_template_variable_is_a_422_naming_it(api: ServerThread,
                                                      sim: RunningSim) -> None:
    with api.client("operator") as operator, api.client("admin") as admin:
        [device] = register(admin, sim, "cisco_ios")
        response = operator.post("/jobs", json={"kind": "config", "device": device.name,
                                                "template": "vlan {{ vlan_id }}"})
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert "vlan_id" in problem["detail"] and problem["errors"][0]["field"] == "template"
        assert operator.get("/jobs").json()["jobs"] == []  # nothing was accepted


def test_device_failures_are_failed_results_not_errors(api: ServerThread,
                                                       sim: RunningSim) -> None:
    with api.client("operator") as operator, api.client("admin") as admin:
        locked, picky = register(admin, sim, "cisco_ios", 2)
        sim.set_faults(locked, auth_fail=True)
        done = wait(operator, submit(operator, {
            "kind": "config", "where": [f"name={locked.name}", f"name={picky.name}"],
            "lines": ["interface GigabitEthernet1/0/1", "frobnicate"]})["id"])
    assert done["status"] == "failed"
    categories = {r["device"]: r["category"] for r in done["results"]}
    assert categories == {locked.name: "auth", picky.name: "rejected"}


def test_facts_job_updates_the_inventory(api: ServerThread, sim: RunningSim) -> None:
    with api.client("operator") as operator, api.client("admin") as admin:
        [device] = register(admin, sim, "cisco_ios")
        wait(operator, submit(operator, {"kind": "facts", "device": device.name})["id"])
        shown = admin.get(f"/devices/{device.name}").json()
    facts = shown["facts"]
    assert (facts["serial"], facts["os_version"], facts["model"]) == (
        device.serial, device.os_version, device.model)


def test_bad_requests_name_the_field(api: ServerThread, sim: RunningSim) -> None:
    with api.client("operator") as operator:
        for body, field in (({"kind": "command", "where": ["tag=x"]}, "commands"),
                            ({"kind": "command", "commands": ["show clock"]}, "device"),
                            ({"kind": "reboot", "device": "x"}, "kind"),
                            ({"kind": "command", "device": "x", "commands": ["show clock"],
                              "timeout": 0}, "timeout"),
                            ({"kind": "command", "where": ["colour=blue"],
                              "commands": ["show clock"]}, "where")):
            response = operator.post("/jobs", json=body)
            assert response.status_code == 422, (body, response.text)
            assert any(field in e["field"] for e in response.json()["errors"]), response.text
        assert operator.get("/jobs/no-such-job").status_code == 404


def test_roles_and_keys(api: ServerThread) -> None:
    with api.client("viewer") as viewer:
        response = viewer.post("/jobs", json={"kind": "command", "device": "x",
                                              "commands": ["show clock"]})
        assert response.status_code == 403
        assert viewer.get("/jobs").status_code == 200
    anonymous = httpx.get(api.url + "/api/v1/jobs")
    assert anonymous.status_code == 401
    wrong = httpx.get(api.url + "/api/v1/jobs", headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401


def test_cancel_stops_queued_devices(api: ServerThread, sim: RunningSim) -> None:
    with api.client("operator") as operator, api.client("admin") as admin:
        [device] = register(admin, sim, "cisco_ios")
        sim.set_faults(device, command_delay=0.3)
        first = submit(operator, {"kind": "config", "device": device.name,
                                  "lines": ["vlan 41", "vlan 42", "vlan 43"]})
        second = submit(operator, {"kind": "config", "device": device.name,
                                   "lines": ["vlan 44"]})
        cancelled = operator.delete(f"/jobs/{second['id']}").json()
        assert cancelled["status"] == "cancelled"
        assert wait(operator, first["id"])["status"] == "succeeded"
    assert sim.run(lambda: 44 not in device.running.vlans)


def test_templates_render_and_parse(api: ServerThread, sim: RunningSim) -> None:
    with api.client("viewer") as viewer:
        rendered = viewer.post("/templates/render", json={
            "template": "hostname {{ name }}\n!\n", "vars": {"name": "edge-1"}}).json()
        assert rendered["lines"] == ["hostname edge-1"]
        missing = viewer.post("/templates/render", json={"template": "{{ nope }}"})
        assert missing.status_code == 422 and "nope" in missing.json()["detail"]
        parsed = viewer.post("/templates/parse", json={
            "output": "GigabitEthernet1/0/1   10.0.0.1  YES manual up  up\n",
            "platform": "cisco_ios", "command": "show ip interface brief"}).json()
        assert parsed["records"][0]["ip_address"] == "10.0.0.1"


def test_secrets_never_leave_the_api(api: ServerThread, sim: RunningSim) -> None:
    with api.client("operator") as operator, api.client("admin") as admin:
        [device] = register(admin, sim, "cisco_ios")
        done = wait(operator, submit(operator, {
            "kind": "command", "device": device.name,
            "commands": ["show running-config"]})["id"])
        bodies = [json.dumps(done), admin.get("/credentials").text,
                  admin.get(f"/devices/{device.name}").text]
    for body in bodies:
        assert device.password not in body and str(device.enable_secret) not in body


async def test_finished_job_calls_its_signed_webhook(api: ServerThread, sim: RunningSim) -> None:
    receiver = Receiver()
    async with serving(receiver) as url:
        with api.client("operator") as operator, api.client("admin") as admin:
            [device] = register(admin, sim, "cisco_ios")
            job = submit(operator, {"kind": "command", "device": device.name,
                                    "commands": ["show clock"], "webhook": url})
            wait(operator, job["id"])
        for _ in range(100):
            if receiver.seen:
                break
            await asyncio.sleep(0.05)
    [(headers, body)] = receiver.seen
    assert verify(webhook_secret(api.services.settings), headers["x-netfleet-timestamp"], body,
                  headers["x-netfleet-signature"])
    event = json.loads(body)
    assert event["event"] == "job.finished"
    assert (event["data"]["id"], event["data"]["status"]) == (job["id"], "succeeded")


def test_full_queues_answer_429_with_retry_after_and_keep_what_was_accepted(
        sim: RunningSim, tmp_path: Path) -> None:
    small = ServerThread(f"sqlite:///{tmp_path / 'small.db'}", tmp_path / "secret.key",
                         device_queue=2)
    try:
        with small.client("operator") as operator, small.client("admin") as admin:
            [device] = register(admin, sim, "cisco_ios")
            sim.set_faults(device, command_delay=0.3)
            body = {"kind": "config", "device": device.name, "lines": ["vlan 90"]}
            accepted = [submit(operator, body)["id"] for _ in range(3)]  # 1 running, 2 queued
            refused = operator.post("/jobs", json=body)
            assert refused.status_code == 429
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert all(wait(operator, j)["status"] == "succeeded" for j in accepted)
            listed = operator.get("/jobs").json()["jobs"]
            assert {j["id"] for j in listed} == set(accepted)
    finally:
        small.close()
