"""`netfleet up --simulate N`, the one command a new user runs: a real process, driven the way a
user drives it (its printed key, its client file, the CLI), then killed and started again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import free_port

NETFLEET = str(Path(sys.executable).parent / "netfleet")


class Up:
    """`netfleet up` in its own process, in a fresh working directory."""

    def __init__(self, workdir: Path, simulate: int) -> None:
        self.workdir, self.simulate = workdir, simulate
        self.port, self.sim_port, self.control_port = free_port(), free_port(), free_port()
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(workdir / "config"),
                    "NETFLEET_CLIENT_CONFIG": "", "NETFLEET_URL": "", "NETFLEET_API_KEY": ""}
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [NETFLEET, "up", "--simulate", str(self.simulate), "--port", str(self.port),
             "--sim-port", str(self.sim_port), "--sim-base-ip", "127.251.0.1",
             "--sim-control-port", str(self.control_port)],
            cwd=self.workdir, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.communicate()[0]
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("netfleet up did not answer within 60 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGINT) -> str:
        """Stop it (Ctrl-C, or SIGKILL for a crash) and return what it printed."""
        assert self.process is not None
        self.process.send_signal(sig)
        out, _ = self.process.communicate(timeout=60)
        self.process = None
        return out

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([NETFLEET, *args], cwd=self.workdir, env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)

    def http(self) -> httpx.Client:
        saved = yaml.safe_load((self.workdir / ".netfleet" / "client.yaml").read_text())
        return httpx.Client(base_url=saved["url"] + "/api/v1",
                            headers={"X-API-Key": saved["api_key"]}, timeout=60)


@contextmanager
def running(up: Up) -> Iterator[Up]:
    up.start()
    try:
        yield up
    finally:
        if up.process is not None:
            up.stop(signal.SIGKILL)


@contextmanager
def silent_ssh_port() -> Iterator[int]:
    """A port that accepts TCP and never says a word: an SSH login there hangs until the
    connect timeout, so a job on it stays running."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


@pytest.fixture
def up(tmp_path: Path) -> Up:
    return Up(tmp_path, simulate=6)


def test_up_serves_a_simulated_fleet_that_the_cli_can_use(up: Up) -> None:
    with running(up):
        client_file = up.workdir / ".netfleet" / "client.yaml"
        assert client_file.stat().st_mode & 0o777 == 0o600
        listed = up.cli("devices", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        devices = json.loads(listed.stdout)
        assert len(devices) == 6
        ran = up.cli("run", "show version", "--where", "name=*", "--json")
        assert ran.returncode == 0, ran.stderr
        job = json.loads(ran.stdout)
        assert job["status"] == "succeeded" and job["counts"]["succeeded"] == 6
        assert all(r["outputs"][0]["output"] for r in job["results"])
        with up.http() as api:
            profiles = api.get("/telemetry/profiles").json()["profiles"]
        polled = {p["name"]: p["devices"] for p in profiles if p["devices"]}
        assert sum(polled.values()) == 6 and all(n.endswith("-default") for n in polled)
        printed = up.stop()
    assert "Admin API key" in printed and "Simulated 6 devices" in printed
    assert "Polling telemetry from 6 devices" in printed


def test_a_restart_ends_what_a_crash_left_running_and_keeps_the_rest(up: Up) -> None:
    with running(up), up.http() as api, silent_ssh_port() as port:
        assert api.post("/credentials", json={"name": "silent", "username": "u",
                                              "password": "p"}).status_code == 201
        assert api.post("/devices", json={"name": "hung", "host": "127.0.0.1", "port": port,
                                          "platform": "cisco_ios",
                                          "credentials": "silent"}).status_code == 201
        finished = api.post("/jobs", json={"kind": "command", "where": ["name=*-*"],
                                           "commands": ["show version"]}).json()
        done = api.get(f"/jobs/{finished['id']}", params={"wait": 60}).json()
        assert done["status"] == "succeeded", done["results"]
        # Changes run one at a time: the first hangs logging in, the second waits behind it.
        stuck = api.post("/jobs", json={"kind": "config", "device": "hung",
                                        "lines": ["hostname first"]}).json()
        waiting = api.post("/jobs", json={"kind": "config", "device": "hung",
                                          "lines": ["hostname second"]}).json()

        def status(job: dict[str, Any]) -> str:
            return str(api.get(f"/jobs/{job['id']}").json()["results"][0]["status"])

        deadline = time.monotonic() + 10
        while status(stuck) != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (status(stuck), status(waiting)) == ("running", "queued")
        time.sleep(0.3)  # the recorder writes within 50 ms
        up.stop(signal.SIGKILL)

        up.start()
        after = {name: api.get(f"/jobs/{job['id']}").json()
                 for name, job in (("finished", finished), ("stuck", stuck),
                                   ("waiting", waiting))}
    assert after["finished"]["status"] == "succeeded"
    assert after["finished"]["counts"]["succeeded"] == 6
    for name in ("stuck", "waiting"):
        [result] = after[name]["results"]
        assert after[name]["status"] == "failed", after[name]
        assert (result["status"], result["category"]) == ("failed", "interrupted")
    assert "check the device" in after["stuck"]["results"][0]["message"]
    assert "submit the job again" in after["waiting"]["results"][0]["message"]


@contextmanager
def simulator_process(workdir: Path) -> Iterator[str]:
    """`netfleet sim` in its own process, as a lab's devices outlive any controller: its
    control API URL."""
    control = free_port()
    process = subprocess.Popen(
        [NETFLEET, "sim", "--devices", "0", "--port", str(free_port()), "--base-ip",
         "127.252.0.1", "--control-port", str(control)],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{control}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, "netfleet sim exited"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)


def test_a_deployment_converges_on_up_and_a_crash_mid_rollout_resumes_it(up: Up) -> None:
    body = {"name": "lab", "target_node_count": 3, "config_template": "ntp server {{ ntp }}",
            "vars": {"ntp": "192.0.2.9"}}

    def settled(api: httpx.Client, deployment_id: str, generation: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = api.get(f"/deployments/{deployment_id}").json()
            if got["status"] == "ready" and got["observed_generation"] == generation:
                return
            time.sleep(0.2)
        raise AssertionError(f"not ready on generation {generation}: {got}")

    with simulator_process(up.workdir) as control:
        up.simulate = 0
        up.env["NETFLEET_SIMULATOR_URL"] = control
        with running(up), up.http() as api:
            made = api.post("/deployments", json=body)
            assert made.status_code == 201, made.text
            deployment_id = made.json()["id"]
            settled(api, deployment_id, 1)
            ready = httpx.get(f"{up.url}/ready").json()
            assert ready["status"] == "healthy" and ready["deployments"]["active"] == 1
            rollout = api.patch(f"/deployments/{deployment_id}",
                                json={"vars": {"ntp": "192.0.2.10"}})
            assert rollout.json()["target_generation"] == 2
            up.stop(signal.SIGKILL)  # a crash mid-rollout
        with running(up), up.http() as api:
            settled(api, deployment_id, 2)  # picked up from the database and finished
            nodes = api.get(f"/deployments/{deployment_id}/nodes").json()
            assert {n["state"] for n in nodes} == {"running"} and len(nodes) == 3
            ran = api.post("/jobs", json={"kind": "command",
                                          "where": [f"tag=deployment-{deployment_id[:8]}"],
                                          "commands": ["show running-config"]}).json()
            done = api.get(f"/jobs/{ran['id']}", params={"wait": 60}).json()
            assert len(done["results"]) == 3
            assert all("ntp server 192.0.2.10" in r["outputs"][0]["output"]
                       for r in done["results"])
