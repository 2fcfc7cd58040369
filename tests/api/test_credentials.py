"""Credentials profiles through the REST API: secrets go in, and never come out — not in any
response body, not in the logs — while devices log in with them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from netfleet.sim.fleet import write_inventory
from tests.api.conftest import ServerThread
from tests.api.helpers import add_device, invalid, problem, upload
from tests.conftest import RunningSim

SECRETS = {"password": "pw-Tr0ub4dor&3", "enable_secret": "en-correct-horse",
           "ssh_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
                      "-----END OPENSSH PRIVATE KEY-----\n"}


class Recorder:
    """Every response body a client received, raw."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        self.bodies.append(response.text)


def recording_client(api: ServerThread, role: str) -> tuple[httpx.Client, Recorder]:
    recorder = Recorder()
    client = httpx.Client(base_url=api.url + "/api/v1", headers={"X-API-Key": api.key(role)},
                          event_hooks={"response": [recorder]}, timeout=60)
    return client, recorder


def assert_no_secret(texts: list[str], secrets: list[str]) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret leaked: {text[:300]}"


def test_profile_crud_tells_which_secrets_are_set_and_never_what(api: ServerThread) -> None:
    admin, seen = recording_client(api, "admin")
    with admin:
        created = admin.post("/credentials", json={"name": "lab", "username": "netops",
                                                   **SECRETS})
        assert created.status_code == 201, created.text
        assert created.headers["Location"] == "/api/v1/credentials/lab"
        profile = created.json()
        assert set(profile) == {"name", "username", "has_password", "has_enable_secret",
                                "has_ssh_key", "created_at", "updated_at"}
        assert profile["has_password"] and profile["has_enable_secret"] and \
            profile["has_ssh_key"]
        assert [p["name"] for p in admin.get("/credentials").json()] == ["lab"]
        assert admin.get("/credentials/lab").json()["username"] == "netops"

        patched = admin.patch("/credentials/lab", json={"username": "ops2",
                                                        "enable_secret": None}).json()
        assert (patched["username"], patched["has_password"], patched["has_enable_secret"]) \
            == ("ops2", True, False)
        assert invalid(admin.patch("/credentials/lab",
                                   json={"username": None}))["field"] == "username"
        assert invalid(admin.post("/credentials", json={"name": "x", "username": "u",
                                                        "password": ""}))["field"] == "password"
        assert invalid(admin.post("/credentials", json={"name": "x", "username": "u",
                                                        "password": 1234}))["field"] == "password"
        problem(admin.post("/credentials", json={"name": "lab", "username": "u"}), 409)

        add_device(admin, "r1", credentials="lab")
        assert "used by 1 device" in problem(admin.delete("/credentials/lab"), 409)["detail"]
        assert admin.get("/devices/r1").json()["credentials"] == "lab"
        assert admin.delete("/devices/r1").status_code == 204
        assert admin.delete("/credentials/lab").status_code == 204
        problem(admin.get("/credentials/lab"), 404)
        problem(admin.patch("/credentials/lab", json={"password": "x1"}), 404)
    assert len(seen.bodies) >= 14
    assert_no_secret(seen.bodies, [*SECRETS.values(), "1234"])


def test_viewers_see_profiles_but_only_admins_change_them(api: ServerThread) -> None:
    with api.client("admin") as admin:
        assert admin.post("/credentials", json={"name": "lab", "username": "u",
                                                "password": "p1"}).status_code == 201
    for role in ("viewer", "operator"):
        with api.client(role) as client:
            assert client.get("/credentials").status_code == 200
            assert client.get("/credentials/lab").status_code == 200
            problem(client.post("/credentials", json={"name": "x", "username": "u"}), 403)
            problem(client.patch("/credentials/lab", json={"password": "p2"}), 403)
            problem(client.delete("/credentials/lab"), 403)
    problem(httpx.get(api.url + "/api/v1/credentials"), 401)


def test_a_changed_password_is_used_by_the_next_job(api: ServerThread, sim: RunningSim) -> None:
    """Logins are cached and sessions stay open between jobs; changing a profile must leave
    neither a stale login nor a session still logged in with the old secrets."""
    with api.client("admin") as admin:
        [device] = sim.add(1, "arista_eos")
        profile = "eos-creds"
        assert admin.post("/credentials", json={
            "name": profile, "username": device.username, "password": "wrong-password",
            "enable_secret": device.enable_secret}).status_code == 201
        add_device(admin, device.name, host=device.address, port=sim.port,
                   platform="arista_eos", credentials=profile)

        def run() -> dict[str, Any]:
            job = admin.post("/jobs", json={"kind": "command", "device": device.name,
                                            "commands": ["show clock"]}).json()
            result: dict[str, Any] = admin.get(f"/jobs/{job['id']}",
                                               params={"wait": 60}).json()["results"][0]
            return result

        failed = run()
        assert (failed["status"], failed["category"]) == ("failed", "auth")
        admin.patch(f"/credentials/{profile}", json={"password": device.password})
        fixed = run()
        assert fixed["status"] == "succeeded", fixed
        assert run()["session_reused"]  # the session stays open between jobs ...
        admin.patch(f"/credentials/{profile}", json={"password": "rotated-wrongly"})
        rotated = run()  # ... until its login changes: the next job logs in with the new one
        assert (rotated["status"], rotated["category"]) == ("failed", "auth"), rotated
        admin.patch(f"/credentials/{profile}", json={"password": device.password})
        again = run()
        assert again["status"] == "succeeded" and not again["session_reused"], again


def test_secrets_stay_out_of_responses_and_logs(
        api: ServerThread, sim: RunningSim, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    devices = sim.add(2, "cisco_ios")
    fleet = tmp_path / "fleet.yaml"
    secrets_file = write_inventory(fleet, devices, sim.port)
    secrets = [s for d in devices for s in (d.password, d.enable_secret) if s]
    admin, seen = recording_client(api, "admin")
    with admin:
        imported = upload(admin, fleet.name, fleet.read_text(),
                          (secrets_file.name, secrets_file.read_text()))
        assert imported.status_code == 200, imported.text
        # A secret in a bad import is not echoed back in the problem either.
        text = secrets_file.read_text()
        for broken in (text.replace("username:", "user_name:"),
                       text.replace(f"password: {devices[0].password}",
                                    f'password: "{devices[0].password}')):
            problem(upload(admin, fleet.name, fleet.read_text(), (secrets_file.name, broken)),
                    422)
        job = admin.post("/jobs", json={"kind": "command", "where": ["name=*"],
                                        "commands": ["show running-config"]}).json()
        done = admin.get(f"/jobs/{job['id']}", params={"wait": 60}).json()
        assert done["status"] == "succeeded", done
        for d in devices:
            admin.get(f"/devices/{d.name}")
            admin.get(f"/credentials/{d.name}")
        admin.get("/credentials")
        admin.patch(f"/credentials/{devices[0].name}", json={"password": devices[0].password})
    assert_no_secret(seen.bodies, secrets)
    logged = capfd.readouterr()
    assert_no_secret([caplog.text, logged.out, logged.err], secrets)
