"""The device inventory through the REST API, on SQLite and PostgreSQL: CRUD, selectors,
paging, and imports of the simulator's fleet file and of CSV — all or nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from netfleet.client import Client
from netfleet.sim.fleet import write_inventory
from tests.api.conftest import ServerThread, register
from tests.api.helpers import add_device, invalid, names, problem, upload
from tests.conftest import RunningSim


def test_device_crud_round_trip(api: ServerThread) -> None:
    with api.client("admin") as admin:
        assert admin.post("/credentials", json={"name": "lab", "username": "netops",
                                                "password": "s3cret"}).status_code == 201
        created = admin.post("/devices", json={
            "name": "core-1", "host": "192.0.2.1", "port": 2222, "platform": "arista_eos",
            "site": "lab1", "tags": ["core", "lab"], "vars": {"asn": 65001},
            "credentials": "lab"})
        assert created.status_code == 201, created.text
        assert created.headers["Location"] == "/api/v1/devices/core-1"
        device = created.json()
        assert (device["port"], device["tags"], device["vars"], device["credentials"],
                device["driver"], device["facts"]) == (2222, ["core", "lab"], {"asn": 65001},
                                                       "lab", None, None)

        shown = admin.get("/devices/core-1").json()
        assert shown["facts_history"] == [] and shown["site"] == "lab1"

        patched = admin.patch("/devices/core-1", json={"tags": ["edge"], "site": None,
                                                       "vars": {"asn": 65002}}).json()
        assert (patched["tags"], patched["site"], patched["vars"], patched["host"]) == (
            ["edge"], None, {"asn": 65002}, "192.0.2.1")  # fields left out are kept
        renamed = admin.patch("/devices/core-1", json={"name": "core-2"})
        assert renamed.status_code == 200 and renamed.json()["credentials"] == "lab"
        problem(admin.get("/devices/core-1"), 404)

        assert admin.delete("/devices/core-2").status_code == 204
        gone = problem(admin.get("/devices/core-2"), 404)
        assert "core-2" in gone["detail"]
        problem(admin.delete("/devices/core-2"), 404)
        assert names(admin) == []


def test_a_name_is_taken_once(api: ServerThread) -> None:
    with api.client("admin") as admin:
        add_device(admin, "r1")
        add_device(admin, "r2")
        assert "r1" in problem(admin.post("/devices", json={
            "name": "r1", "host": "192.0.2.2", "platform": "cisco_ios"}), 409)["detail"]
        problem(admin.patch("/devices/r2", json={"name": "r1"}), 409)
        assert names(admin) == ["r1", "r2"]


def test_bad_fields_are_422_naming_the_field_and_the_fix(api: ServerThread) -> None:
    good = {"name": "r1", "host": "192.0.2.1", "platform": "cisco_ios"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"host": "not a host"}, "host"), ({"port": 70000}, "port"),
        ({"platform": "Cisco IOS"}, "platform"), ({"tags": ["a b"]}, "tags"),
        ({"credentials": "no-such-profile"}, "credentials"), ({"name": "a/b"}, "name"),
        ({"colour": "red"}, "colour"), ({"port": "ssh"}, "port")]
    with api.client("admin") as admin:
        for change, field in cases:
            error = invalid(admin.post("/devices", json={**good, **change}))
            assert error["field"] == field, (change, error)
        assert invalid(admin.post("/devices", json={"name": "r1"}))["field"] == "host"
        add_device(admin, "r1")
        assert invalid(admin.patch("/devices/r1", json={"host": None}))["field"] == "host"
        assert invalid(admin.patch("/devices/r1", json={"port": 0}))["field"] == "port"
        assert admin.get("/devices/r1").json()["port"] == 22
        assert names(admin) == ["r1"]


def test_selectors_by_glob_name_tag_platform_and_site(api: ServerThread) -> None:
    with api.client("admin") as admin:
        add_device(admin, "ios-001", site="lab1", tags=["core", "lab"])
        add_device(admin, "ios-002", site="lab2", tags=["edge"])
        add_device(admin, "eos-001", platform="arista_eos", site="lab1", tags=["core"])
        add_device(admin, "eos-002", platform="arista_eos", site="lab2")
        add_device(admin, "junos-001", platform="juniper_junos", site="lab1",
                   tags=["core", "edge"])
    with api.client("viewer") as viewer:
        assert names(viewer, "name=ios-*") == ["ios-001", "ios-002"]
        assert names(viewer, "name=*-001") == ["eos-001", "ios-001", "junos-001"]
        assert names(viewer, "name=?os-00?") == ["eos-001", "eos-002", "ios-001", "ios-002"]
        assert names(viewer, "name=eos-002", "name=ios-001") == ["eos-002", "ios-001"]
        assert names(viewer, "tag=core") == ["eos-001", "ios-001", "junos-001"]
        assert names(viewer, "tag=core", "tag=edge") == ["junos-001"]
        assert names(viewer, "platform=arista_eos") == ["eos-001", "eos-002"]
        assert names(viewer, "site=lab1", "tag=core", "name=*os-*") == [
            "eos-001", "ios-001", "junos-001"]
        assert names(viewer, "site=lab2", "platform=cisco_ios") == ["ios-002"]
        assert names(viewer, "name=ios-00") == []
        assert len(names(viewer)) == 5
        for where in ("colour=red", "tag", "site=lab1 lab2"):
            error = invalid(viewer.get("/devices", params={"where": [where]}))
            assert error["field"] == "where", (where, error)


def test_cursor_paging_walks_every_device_once(api: ServerThread) -> None:
    with api.client("admin") as admin:
        for i in range(23):
            add_device(admin, f"sw-{i:02d}", tags=["even" if i % 2 == 0 else "odd"])
        seen: list[str] = []
        sizes: list[int] = []
        cursor = None
        while True:
            params = {"limit": 10} if cursor is None else {"limit": 10, "after": cursor}
            page = admin.get("/devices", params=params).json()
            sizes.append(len(page["devices"]))
            seen += [d["name"] for d in page["devices"]]
            cursor = page["next"]
            if cursor is None:
                break
        assert sizes == [10, 10, 3]
        assert seen == [f"sw-{i:02d}" for i in range(23)]
        first = admin.get("/devices", params={"where": "tag=even", "limit": 5}).json()
        rest = admin.get("/devices", params={"where": "tag=even", "limit": 100,
                                             "after": first["next"]}).json()
        assert [d["name"] for d in first["devices"] + rest["devices"]] == [
            f"sw-{i:02d}" for i in range(0, 23, 2)]
        assert rest["next"] is None
        for limit in (0, 1001):
            error = invalid(admin.get("/devices", params={"limit": limit}))
            assert error["field"] == "query.limit"


def test_the_simulators_fleet_file_imports_as_is_through_the_sdk(
        api: ServerThread, sim: RunningSim, tmp_path: Path) -> None:
    devices = sim.add(2, "cisco_ios") + sim.add(1, "arista_eos") + sim.add(1, "juniper_junos")
    fleet = tmp_path / "fleet.yaml"
    write_inventory(fleet, devices, sim.port)
    with Client(api.url, api.key("admin")) as nf:
        report = nf.import_inventory(fleet)
        assert report == {"devices": {"created": 4, "updated": 0, "unchanged": 0},
                          "credentials": {"created": 4, "updated": 0, "unchanged": 0}}
        again = nf.import_inventory(fleet)
        assert again["devices"] == {"created": 0, "updated": 0, "unchanged": 4}
        listed = nf.devices(limit=10)["devices"]
        assert [d["name"] for d in listed] == sorted(d.name for d in devices)
        first = nf.device(devices[0].name)
        assert (first["host"], first["port"], first["credentials"], first["vars"]) == (
            devices[0].address, sim.port, devices[0].name,
            {"model": devices[0].model, "serial": devices[0].serial})
        # The imported secrets log in: a job on every device succeeds.
        job = nf.submit({"kind": "command", "where": ["name=*"], "commands": ["show version"]})
        done = nf.job(job.id, wait=60)
    assert done.status == "succeeded" and done.counts["succeeded"] == 4


def test_csv_import_creates_then_updates(api: ServerThread) -> None:
    first = ("name,host,port,platform,site,tags,credentials\n"
             "r1,192.0.2.1,,cisco_ios,lab1,core;lab,\n"
             "r2,192.0.2.2,2222,arista_eos,,edge,\n")
    with api.client("admin") as admin:
        response = upload(admin, "inventory.csv", first)
        assert response.status_code == 200, response.text
        assert response.json()["devices"] == {"created": 2, "updated": 0, "unchanged": 0}
        r1, r2 = admin.get("/devices").json()["devices"]
        assert (r1["port"], r1["tags"], r1["site"]) == (22, ["core", "lab"], "lab1")
        assert (r2["port"], r2["platform"], r2["site"]) == (2222, "arista_eos", None)
        changed = first.replace("r1,192.0.2.1,,cisco_ios,lab1", "r1,192.0.2.1,,cisco_ios,lab9")
        counts = upload(admin, "inventory.csv", changed).json()["devices"]
        assert counts == {"created": 0, "updated": 1, "unchanged": 1}
        assert admin.get("/devices/r1").json()["site"] == "lab9"


def test_a_bad_inventory_imports_nothing_and_names_every_problem(api: ServerThread) -> None:
    inventory = {"devices": [
        {"name": "new-1", "host": "192.0.2.1", "platform": "cisco_ios"},
        {"name": "keep", "host": "192.0.2.2", "platform": "cisco_ios", "site": "moved"},
        {"name": "bad-host", "host": "not a host", "platform": "cisco_ios"},
        {"name": "no-platform", "host": "192.0.2.4"},
    ]}
    with api.client("admin") as admin:
        add_device(admin, "keep", site="lab1")
        body = problem(upload(admin, "fleet.yaml", yaml.safe_dump(inventory)), 422)
        fields = [e["field"] for e in body["errors"]]
        assert fields == ["devices[2].host", "devices[3].platform"]
        assert all(e["fix"] for e in body["errors"])
        assert "nothing was imported" in body["detail"]

        # Problems found against the store (a profile nobody defined) also stop everything.
        inventory["devices"] = inventory["devices"][:2]
        inventory["devices"][1]["credentials"] = "nobody"
        error = invalid(upload(admin, "fleet.yaml", yaml.safe_dump(inventory)))
        assert error["field"] == "devices[1].credentials"

        csv = "name,host,port,platform\nr1,192.0.2.1,22,cisco_ios\nr2,192.0.2.2,ssh,cisco_ios\n"
        assert invalid(upload(admin, "inventory.csv", csv))["field"] == "line 3.port"
        assert invalid(upload(admin, "inventory.txt", csv))["field"] == "file"
        assert invalid(upload(admin, "fleet.yaml", "devices: [\n"))["field"] == "line 2"
        assert invalid(admin.post("/devices/import", json=inventory))["field"] == "file"
        assert invalid(admin.post("/devices/import",
                                  files={"other": ("a.yaml", b"devices: []")}))["field"] == "file"

        assert names(admin) == ["keep"]
        assert admin.get("/devices/keep").json()["site"] == "lab1"
        assert admin.get("/credentials").json() == []


def test_credentials_file_resolves_only_to_the_uploaded_secrets(
        api: ServerThread, sim: RunningSim, tmp_path: Path) -> None:
    devices = sim.add(1, "cisco_ios")
    fleet = tmp_path / "fleet.yaml"
    secrets = write_inventory(fleet, devices, sim.port)
    with api.client("admin") as admin:
        error = invalid(upload(admin, "fleet.yaml", fleet.read_text()))
        assert error["field"] == "credentials_file" and "secrets" in error["fix"]
        # A path in credentials_file never reaches the server's own files.
        escape = fleet.read_text().replace(secrets.name, "../../../../etc/passwd")
        body = problem(upload(admin, "fleet.yaml", escape), 422)
        assert "not uploaded" in body["detail"] and "root:" not in str(body)
        ok = upload(admin, "fleet.yaml", fleet.read_text(), (secrets.name, secrets.read_text()))
        assert ok.status_code == 200, ok.text
        assert names(admin) == [devices[0].name]


def test_facts_and_their_history_show_on_the_device(api: ServerThread, sim: RunningSim) -> None:
    with api.client("admin") as admin:
        [device] = register(admin, sim, "cisco_ios")
        job = admin.post("/jobs", json={"kind": "facts", "device": device.name}).json()
        assert admin.get(f"/jobs/{job['id']}", params={"wait": 60}).json()["status"] == \
            "succeeded"
    with api.client("viewer") as viewer:
        shown = viewer.get(f"/devices/{device.name}").json()
    assert shown["facts"]["serial"] == device.serial
    assert shown["facts"]["collected_at"]
    history = {c["field"]: c for c in shown["facts_history"]}
    assert history["serial"]["old"] is None and history["serial"]["new"] == device.serial
    assert history["os_version"]["new"] == device.os_version
