"""API keys and roles through the REST API: who may read, who may change the inventory, and
that a key is shown once and stops working the moment it is revoked."""

from __future__ import annotations

import httpx

from tests.api.conftest import ServerThread
from tests.api.helpers import add_device, invalid, problem

DEVICE = {"name": "r1", "host": "192.0.2.1", "platform": "cisco_ios"}


def test_roles_decide_who_reads_and_who_changes_the_inventory(api: ServerThread) -> None:
    with api.client("admin") as admin:
        add_device(admin, "r0")
    for role in ("viewer", "operator"):
        with api.client(role) as client:
            assert client.get("/devices").status_code == 200
            assert client.get("/devices/r0").status_code == 200
            denied = problem(client.post("/devices", json=DEVICE), 403)
            assert "admin" in denied["detail"] and role in denied["detail"]
            problem(client.patch("/devices/r0", json={"site": "x"}), 403)
            problem(client.delete("/devices/r0"), 403)
            problem(client.post("/devices/import",
                                files={"file": ("a.csv", b"name,host,platform\n")}), 403)
            problem(client.get("/keys"), 403)
            problem(client.post("/keys", json={"name": "x", "role": "admin"}), 403)
    anonymous = problem(httpx.get(api.url + "/api/v1/devices"), 401)
    assert "X-API-Key" in anonymous["detail"]
    problem(httpx.post(api.url + "/api/v1/devices", json=DEVICE), 401)
    problem(httpx.get(api.url + "/api/v1/devices", headers={"X-API-Key": "nf_not-a-key"}), 401)
    with api.client("admin") as admin:
        assert [d["name"] for d in admin.get("/devices").json()["devices"]] == ["r0"]


def test_a_key_is_shown_once_works_and_stops_when_revoked(api: ServerThread) -> None:
    with api.client("admin") as admin:
        created = admin.post("/keys", json={"name": "ci-pipeline", "role": "operator"})
        assert created.status_code == 201, created.text
        key = created.json()
        token = key["token"]
        assert (key["name"], key["role"], key["revoked"]) == ("ci-pipeline", "operator", False)
        assert token.startswith(key["prefix"])
        assert created.headers["Location"] == f"/api/v1/keys/{key['id']}"

        listing = admin.get("/keys")
        assert token not in listing.text and "token" not in listing.text
        assert "ci-pipeline" in [k["name"] for k in listing.json()]

        ci = httpx.Client(base_url=api.url + "/api/v1", headers={"X-API-Key": token})
        with ci:
            assert ci.get("/devices").status_code == 200
            problem(ci.post("/devices", json=DEVICE), 403)  # operator, not admin
            revoked = admin.delete(f"/keys/{key['id']}")
            assert revoked.status_code == 200 and revoked.json()["revoked"]
            assert revoked.json()["revoked_at"]
            assert "revoked" in problem(ci.get("/devices"), 401)["detail"]
        listed = {k["id"]: k for k in admin.get("/keys").json()}
        assert listed[key["id"]]["revoked"] and listed[key["id"]]["last_used_at"]
        assert admin.delete(f"/keys/{key['id']}").status_code == 200  # idempotent
        problem(admin.delete("/keys/999999"), 404)


def test_bad_key_requests_name_the_field(api: ServerThread) -> None:
    with api.client("admin") as admin:
        assert "role" in invalid(admin.post("/keys", json={"name": "x", "role": "root"}))["field"]
        assert "name" in invalid(admin.post("/keys", json={"name": "", "role": "viewer"}))["field"]
        assert "role" in invalid(admin.post("/keys", json={"name": "x"}))["field"]
        problem(admin.delete("/keys/not-a-number"), 422)
        admin_key = admin.post("/keys", json={"name": "second admin", "role": "admin"}).json()
    with httpx.Client(base_url=api.url + "/api/v1",
                      headers={"X-API-Key": admin_key["token"]}) as second:
        assert second.post("/devices", json=DEVICE).status_code == 201
