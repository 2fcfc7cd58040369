"""`netfleet bench jobs`: the job path end to end, against a simulator in its own process.

(a) latency of a single-command job through the HTTP API on a warm session (p50, p99);
(b) device-commands per second for a bulk job over N devices (cold: logins included; warm);
(c) the baseline, measured in the same run: the NetPulse-style FIFO worker (Netmiko connect,
    command, disconnect per job, one job at a time), and the ratio of (b) to it.
Each with the simulator's login delay at 0 and at 2 s (real devices take 2-5 s to log in).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml

from netfleet.bench.sim import _free_port, simulator
from netfleet.bootstrap import build_app, build_services
from netfleet.engine import Limits
from netfleet.services.inventory import import_file
from netfleet.settings import load_settings


class Api:
    """netfleet's API in this process (as `netfleet up` runs it) on a fresh SQLite file."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    async def __aenter__(self) -> Api:
        settings = load_settings(database_url=f"sqlite:///{self.workdir / 'bench.db'}",
                                 secret_key_file=self.workdir / "secret.key")
        self.services = await build_services(settings, Limits(global_concurrency=1024))
        port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(build_app(self.services), host="127.0.0.1",
                                                    port=port, log_level="warning",
                                                    lifespan="off"))
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        _, token = await self.services.keys.create("bench", "operator")
        self.token = token
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1",
                                      headers={"X-API-Key": token}, timeout=300)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        self.server.should_exit = True
        await self.task
        await self.services.close()

    async def job(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post("/jobs", json=body)
        response.raise_for_status()
        job_id = response.json()["id"]
        while True:
            done: dict[str, Any] = (await self.http.get(f"/jobs/{job_id}",
                                                        params={"wait": 120})).json()
            if done["status"] not in ("queued", "running"):
                return done


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _latency_client(url: str, key: str, body: dict[str, Any], samples: int) -> list[float]:
    """A user's script: submit, wait for the result, again; milliseconds per job."""
    times = []
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as http:
        for _ in range(samples):
            t0 = time.perf_counter()
            job_id = http.post("/jobs", json=body).raise_for_status().json()["id"]
            done = http.get(f"/jobs/{job_id}", params={"wait": 60}).raise_for_status().json()
            times.append((time.perf_counter() - t0) * 1000)
            if done["status"] != "succeeded":
                raise RuntimeError(f"job {job_id} {done['status']}: {done}")
    return times


async def _latency(api: Api, device: str, samples: int) -> dict[str, Any]:
    """Measured from a client in its own process, as a user's script or the CLI is: a client
    in the server's process would spend the server's event loop on its own work."""
    body = {"kind": "command", "device": device, "commands": ["show clock"]}
    await api.job(body)  # opens the session: what follows is warm
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        times = await asyncio.get_running_loop().run_in_executor(
            pool, _latency_client, str(api.http.base_url), api.token, body, samples)
    return {"samples": samples, "p50_ms": round(statistics.median(times), 2),
            "p99_ms": round(_pct(times, 0.99), 2), "client": "own process"}


async def _bulk(api: Api, devices: int) -> dict[str, Any]:
    body = {"kind": "command", "where": ["name=*"], "commands": ["show clock"],
            "timeout": 300}
    out: dict[str, Any] = {}
    for phase in ("cold", "warm"):
        t0 = time.perf_counter()
        done = await api.job(body)
        seconds = time.perf_counter() - t0
        out[phase] = {"seconds": round(seconds, 2),
                      "device_commands_per_second": round(devices / seconds, 1),
                      "succeeded": done["counts"]["succeeded"]}
    return out


def _netmiko_fifo(targets: list[dict[str, Any]]) -> dict[str, Any]:
    """One worker taking one job at a time: connect, send the command, disconnect."""
    from netmiko import ConnectHandler

    t0 = time.perf_counter()
    for t in targets:
        conn = ConnectHandler(**t)
        conn.send_command("show clock")
        conn.disconnect()
    seconds = time.perf_counter() - t0
    return {"jobs": len(targets), "seconds": round(seconds, 2),
            "device_commands_per_second": round(len(targets) / seconds, 2)}


def _netmiko_targets(fleet: Path, count: int) -> list[dict[str, Any]]:
    data = yaml.safe_load(fleet.read_text())
    secrets = yaml.safe_load((fleet.parent / data["credentials_file"]).read_text())
    out = []
    for d in data["devices"][:count]:
        c = secrets["credentials"][d["credentials"]]
        out.append({"device_type": d["platform"], "host": d["host"], "port": d["port"],
                    "username": c["username"], "password": c["password"],
                    "secret": c.get("enable_secret", ""), "fast_cli": False})
    return out


async def run(devices: int = 1000, samples: int = 200, baseline_jobs: int = 20,
              login_delays: tuple[float, ...] = (0.0, 2.0)) -> dict[str, Any]:
    results: dict[str, Any] = {"benchmark": "jobs", "devices": devices}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fleet = work / "fleet.yaml"
        sim_args = ["--devices", str(devices), "--port", str(_free_port()), "--base-ip",
                    "127.4.0.1", "--degraded", "0", "--platform", "cisco_ios",
                    "--platform", "arista_eos", "--out", str(fleet), "--max-sessions", "64"]
        async with simulator(sim_args, wait_devices=devices) as sim:
            for delay in login_delays:
                async with httpx.AsyncClient() as control:
                    await control.patch(f"{sim.control}/faults", json={"login_delay": delay})
                run_dir = work / f"delay-{delay:g}"
                run_dir.mkdir()
                async with Api(run_dir) as api:
                    await import_file(api.services.store, fleet)
                    first = yaml.safe_load(fleet.read_text())["devices"][0]["name"]
                    latency = await _latency(api, first, samples)
                    bulk = await _bulk(api, devices)
                # A delay of 2 s makes each baseline job take >2 s: fewer jobs say enough.
                count = baseline_jobs if delay == 0 else max(3, baseline_jobs // 4)
                baseline = await asyncio.to_thread(_netmiko_fifo,
                                                   _netmiko_targets(fleet, count))
                results[f"login_delay_{delay:g}s"] = {
                    "single_job_warm": latency,
                    "bulk": bulk,
                    "baseline_netmiko_fifo": baseline,
                    "ratio_warm_bulk_to_baseline": round(
                        bulk["warm"]["device_commands_per_second"]
                        / baseline["device_commands_per_second"], 1),
                    "ratio_cold_bulk_to_baseline": round(
                        bulk["cold"]["device_commands_per_second"]
                        / baseline["device_commands_per_second"], 1),
                }
    results["targets"] = {"p50_ms_warm": 15, "device_commands_per_second": 500,
                          "ratio_to_baseline": 50}
    return results
